import type { Core } from '../bootstrap';
import type { Host } from '../hosts/host';
import { PluginProfileSource } from '../reconciler/profiles';
import { Reconciler, type ReconcilerOptions } from '../reconciler/reconciler';

export interface ProtocolsOptions {
  /** The main server's host (LocalHost in production; a namespace in end-to-end tests). */
  host: Host;
  /** Plugin names under plugins/ (config `POLYGATE_PLUGINS`). */
  plugins: readonly string[];
  /** Per-plugin settings on top of what the daemon's configuration implies. */
  pluginConfig?: Record<string, Record<string, unknown>>;
  reconciler?: ReconcilerOptions;
}

export interface RunningProtocols {
  reconciler: Reconciler;
  stop(): Promise<void>;
}

/**
 * Loads the protocol plugins on the main server, makes them follow the database (reconciler),
 * and offers OpenVPN profiles for downloads. A plugin that cannot run is reported unavailable
 * in /api/v1/health with its reason; everything else keeps serving.
 */
export async function startProtocols(core: Core, options: ProtocolsOptions): Promise<RunningProtocols> {
  const { config } = core.ctx;
  const implied: Record<string, Record<string, unknown>> = {
    openvpn: { subnetPool: config.openvpnSubnetPool, publicHost: config.publicHostResolved, serverId: 'main' },
  };
  for (const name of options.plugins) {
    const plugin = await core.plugins.load(name, {
      serverId: 'main',
      host: options.host,
      config: { ...(implied[name] ?? {}), ...(options.pluginConfig?.[name] ?? {}) },
    });
    if (plugin.state !== 'available') core.ctx.logger.warn({ plugin: plugin.id, reason: plugin.reason }, 'protocol plugin unavailable');
  }
  const reconciler = new Reconciler(core.ctx, core.services, core.plugins, options.reconciler);
  if (core.plugins.get('openvpn', 'main')?.state === 'available') {
    core.services.openvpnProfiles = new PluginProfileSource(core.plugins, core.services.servers, config.publicHostResolved);
  }
  await reconciler.start().catch((err: Error) => core.ctx.logger.error({ err: err.message }, 'first plugin sync failed; retrying in the background'));
  return {
    reconciler,
    async stop() {
      await reconciler.stop();
      core.services.openvpnProfiles = undefined;
      for (const plugin of core.plugins.available()) {
        await plugin.instance.stop().catch((err: Error) => core.ctx.logger.warn({ plugin: plugin.id, err: err.message }, 'plugin stop failed'));
      }
    },
  };
}
