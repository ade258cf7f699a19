import type { Core } from '../bootstrap';
import type { Config } from '../config';
import type { Host } from '../hosts/host';
import { NodeRuntime, type NodeRuntimeOptions } from '../nodes/runtime';
import type { RegisteredPlugin } from '../plugin/registry';
import { Reconciler, type ReconcilerOptions } from '../reconciler/reconciler';
import { protocolOfPluginName, type ProtocolId, type ProtocolSpec } from './table';

export interface ProtocolsOptions {
  /** The main server's host (LocalHost in production; a namespace in end-to-end tests). */
  host: Host;
  /** Plugin names under plugins/ (config `POLYGATE_PLUGINS`). */
  plugins: readonly string[];
  /** Per-plugin settings, by plugin name; validated by each plugin's own schema. */
  pluginConfig?: Record<string, Record<string, unknown>>;
  reconciler?: ReconcilerOptions;
  /** How nodes are driven (firewall, health checks); nodes run the same plugins with the same settings. */
  nodes?: NodeRuntimeOptions;
}

/** Which plugins run, with their settings: the same set on the main server and on every node. */
export type PluginSet = Pick<ProtocolsOptions, 'plugins' | 'pluginConfig'>;

export interface RunningProtocols {
  reconciler: Reconciler;
  /**
   * Stops following the database. By default the VPN daemons are left running with their
   * sessions (a restart or an upgrade cuts nobody; the next start adopts them);
   * `stopDaemons` ends them too (tests, and an operator taking the service down for good).
   */
  stop(options?: { stopDaemons?: boolean }): Promise<void>;
}

/** The client pool of a protocol: its setting when the operator gave one, else the table's default. */
export function clientPoolOf(config: Config, spec: ProtocolSpec): string {
  const configured = (config as unknown as Record<string, unknown>)[spec.poolConfigKey];
  return typeof configured === 'string' && configured ? configured : spec.defaultClientPool;
}

/**
 * Loads the protocol plugins on the main server and makes them follow the database
 * (reconciler). A plugin that cannot run is reported unavailable in /api/v1/health with its
 * reason, and its protocol is not shown to customers; everything else keeps serving.
 */
export async function startProtocols(core: Core, options: ProtocolsOptions): Promise<RunningProtocols> {
  await loadPluginsOn(core, options, { serverId: 'main', host: options.host });
  const reconciler = new Reconciler(core.ctx, core.services, core.plugins, core.pki, core.accounting.live, options.reconciler);
  core.propagation.attach(reconciler);
  const nodes = new NodeRuntime(core, options, reconciler, options.nodes);
  // Provisioned nodes get their plugins back before the first pass, so it covers them too.
  await nodes.resume().catch((err: Error) => core.ctx.logger.error({ err: err.message }, 'resuming nodes failed'));
  core.services.nodes.attachRuntime(nodes);
  await reconciler.start().catch((err: Error) => core.ctx.logger.error({ err: err.message }, 'first plugin sync failed; retrying in the background'));
  return {
    reconciler,
    async stop({ stopDaemons = false } = {}) {
      core.propagation.attach(null);
      core.services.nodes.attachRuntime(null);
      await reconciler.stop();
      // A shutdown is not a removal: daemons that can outlive the panel keep their sessions.
      for (const plugin of core.plugins.available()) {
        const leave = plugin.instance.detach && !stopDaemons ? plugin.instance.detach() : plugin.instance.stop();
        await leave.catch((err: Error) => core.ctx.logger.warn({ plugin: plugin.id, err: err.message }, 'plugin shutdown failed'));
      }
      await nodes.close();
    },
  };
}

/**
 * Loads every plugin of the set on one server (the main server, or a node through its
 * SshHost). A plugin that cannot run there is registered unavailable with its reason.
 */
export async function loadPluginsOn(
  core: Core,
  set: PluginSet,
  target: { serverId: string; host: Host; publicHost?: string; stateDirOf?: (protocol: ProtocolId) => string },
): Promise<RegisteredPlugin[]> {
  const loaded: RegisteredPlugin[] = [];
  for (const name of set.plugins) {
    const spec = protocolOfPluginName(name);
    const plugin = await core.plugins.load(name, {
      serverId: target.serverId,
      host: target.host,
      clientPool: spec ? clientPoolOf(core.ctx.config, spec) : undefined,
      config: set.pluginConfig?.[name] ?? {},
      ...(target.publicHost !== undefined ? { publicHost: target.publicHost } : {}),
      ...(spec && target.stateDirOf ? { stateDir: target.stateDirOf(spec.id) } : {}),
    });
    if (plugin.state !== 'available') core.ctx.logger.warn({ plugin: plugin.id, reason: plugin.reason }, 'protocol plugin unavailable');
    loaded.push(plugin);
  }
  return loaded;
}
