import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp } from '../api/server';
import { ResellerListeners } from '../api/listeners';
import { bootstrapCore, type Core } from './bootstrap';
import type { Config } from './config';
import { Firewall } from './firewall';
import { LocalHost } from './hosts/local-host';
import type { Logger } from './logger';
import { clientPoolOf, startProtocols } from './protocols/start';
import { protocolSpec } from './protocols/table';

export interface DaemonHandle {
  core: Core;
  /** Where the panel listens, e.g. http://127.0.0.1:8080. */
  url: string;
  port: number;
  firewall: Firewall | null;
  stop(): Promise<void>;
}

/**
 * Composition root: config → database → services → firewall → HTTP (panel + resellers'
 * listeners). `stop()` undoes it in reverse order.
 */
export async function startDaemon(config: Config, logger: Logger): Promise<DaemonHandle> {
  const core = await bootstrapCore(config, { logger });
  const { services, ctx } = core;
  // Resumes queued background jobs and marks those a crash interrupted.
  await services.nodes.jobs.start();

  let firewall: Firewall | null = null;
  if (config.firewall === 'auto') {
    firewall = new Firewall({ host: new LocalHost(), logger });
    const fw = firewall;
    ctx.status.register('firewall', () => {
      const s = fw.state();
      return s.managed ? { state: 'ok' } : { state: 'unmanaged', reason: s.reason };
    });
  } else {
    ctx.status.register('firewall', () => ({ state: 'unmanaged', reason: 'disabled by POLYGATE_FIREWALL=off' }));
  }

  // The firewall opens exactly what the port registry says the main server listens on.
  let firewallSync: Promise<void> = Promise.resolve();
  const syncFirewall = () => {
    if (!firewall) return;
    const fw = firewall;
    firewallSync = firewallSync
      .then(async () => {
        const claims = (await services.portRegistry.list()).filter((c) => c.server === 'main');
        // VPN clients reach the world through the server: masquerade every running protocol's pool.
        const pools = new Set(core.plugins.available().filter((p) => p.serverId === 'main').map((p) => clientPoolOf(config, protocolSpec(p.protocol))));
        await fw.apply({
          openPorts: claims.map((c) => ({ port: c.port, protocol: c.protocol, owner: c.owner })),
          nat: [...pools].map((sourceCidr) => ({ sourceCidr })),
        });
      })
      .catch((err) => logger.error({ err }, 'firewall sync failed; will retry on the next change'));
  };
  const unsubscribe = [
    ctx.events.on('ports.changed', syncFirewall),
    ctx.events.on('sub_admins.changed', syncFirewall),
    ctx.events.on('sub_admins.deleted', syncFirewall),
    ctx.events.on('nodes.changed', syncFirewall),
  ];

  // Protocol plugins on the main server, kept in line with the database by the reconciler.
  const protocols = await startProtocols(core, { host: new LocalHost(), plugins: config.plugins });
  syncFirewall();

  // Accounting + enforcement tick loop over every registered plugin.
  await core.accounting.start();

  const app = createApp(services);
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(config.port, config.host, () => resolve(s));
    s.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;

  const listeners = config.resellerListeners === 'on' ? new ResellerListeners(services, { host: config.host }) : null;
  await listeners?.sync();

  const shownHost = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `http://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${port}`;
  logger.info({ url, database: ctx.db.dialect }, 'polygate is listening');

  let stopping: Promise<void> | undefined;
  return {
    core,
    url,
    port,
    firewall,
    stop() {
      stopping ??= (async () => {
        unsubscribe.forEach((off) => off());
        await listeners?.close();
        await protocols.stop();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        await firewallSync;
        await core.close();
        logger.info('polygate stopped');
      })();
      return stopping;
    },
  };
}
