import type { Core } from '../bootstrap';
import type { Config } from '../config';
import type { Host } from '../hosts/host';
import { Reconciler, type ReconcilerOptions } from '../reconciler/reconciler';
import { protocolOfPluginName, type ProtocolSpec } from './table';

export interface ProtocolsOptions {
  /** The main server's host (LocalHost in production; a namespace in end-to-end tests). */
  host: Host;
  /** Plugin names under plugins/ (config `POLYGATE_PLUGINS`). */
  plugins: readonly string[];
  /** Per-plugin settings, by plugin name; validated by each plugin's own schema. */
  pluginConfig?: Record<string, Record<string, unknown>>;
  reconciler?: ReconcilerOptions;
}

export interface RunningProtocols {
  reconciler: Reconciler;
  stop(): Promise<void>;
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
  for (const name of options.plugins) {
    const spec = protocolOfPluginName(name);
    const plugin = await core.plugins.load(name, {
      serverId: 'main',
      host: options.host,
      clientPool: spec ? clientPoolOf(core.ctx.config, spec) : undefined,
      config: options.pluginConfig?.[name] ?? {},
    });
    if (plugin.state !== 'available') core.ctx.logger.warn({ plugin: plugin.id, reason: plugin.reason }, 'protocol plugin unavailable');
  }
  const reconciler = new Reconciler(core.ctx, core.services, core.plugins, core.pki, core.accounting.live, options.reconciler);
  core.propagation.attach(reconciler);
  await reconciler.start().catch((err: Error) => core.ctx.logger.error({ err: err.message }, 'first plugin sync failed; retrying in the background'));
  return {
    reconciler,
    async stop() {
      core.propagation.attach(null);
      await reconciler.stop();
      for (const plugin of core.plugins.available()) {
        await plugin.instance.stop().catch((err: Error) => core.ctx.logger.warn({ plugin: plugin.id, err: err.message }, 'plugin stop failed'));
      }
    },
  };
}
