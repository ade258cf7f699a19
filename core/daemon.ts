import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo, Server } from 'node:net';
import { createApp } from '../api/server';
import { ResellerListeners } from '../api/listeners';
import { bootstrapCore, type Core } from './bootstrap';
import { scheduleBackups, type BackupSchedule } from './backup/schedule';
import { packageVersion, startControlServer, type ControlServer } from './control';
import { User } from './db';
import { createReloadingHttpsServer, TlsConfigError, type ReloadingHttpsServer } from './tls';
import { settingName, type Config } from './config';
import { Firewall } from './firewall';
import { LocalHost } from './hosts/local-host';
import type { Logger } from './logger';
import { clientPoolOf, startProtocols } from './protocols/start';
import { mainStateDirOf } from './plugin/registry';
import { protocolSpec } from './protocols/table';

export interface DaemonHandle {
  core: Core;
  /** Where the panel listens, e.g. http://127.0.0.1:8080. */
  url: string;
  port: number;
  firewall: Firewall | null;
  /** Scheduled backups (POLYGATE_BACKUP_INTERVAL_HOURS > 0), else null. */
  backups: BackupSchedule | null;
  stop(): Promise<void>;
}

/**
 * Composition root: config → database → services → firewall → HTTP (panel + resellers'
 * listeners). `stop()` undoes it in reverse order.
 */
export async function startDaemon(config: Config, logger: Logger): Promise<DaemonHandle> {
  const core = await bootstrapCore(config, { logger });
  const { services, ctx } = core;

  // The panel's port is taken before anything else starts, so a second instance on the same
  // port stops here instead of starting VPN daemons beside the first one's. Requests that
  // arrive while the rest starts wait for it.
  let started!: () => void;
  const ready = new Promise<void>((resolve) => (started = resolve));
  const app = createApp(services);
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    ready.then(() => app(req, res));
  };
  let tls: ReloadingHttpsServer | null = null;
  let control: ControlServer;
  const startedAt = Date.now();
  let server: HttpServer | HttpsServer;
  let shownUrl = '';
  try {
    if (config.tlsCert && config.tlsKey) tls = createReloadingHttpsServer({ cert: config.tlsCert, key: config.tlsKey }, handler, logger);
    server = tls?.server ?? createServer(handler);
    await listenOrExplain(server, config.port, config.host);
    // The CLI's way in (status, admin-key rotate) and the sign `restore` looks for before it
    // touches a data dir; refuses a second daemon on the same data dir.
    control = await startControlServer(
      config.dataDir,
      {
        ping: () => ({ pid: process.pid, version: packageVersion() }),
        status: async () => ({
          pid: process.pid,
          version: packageVersion(),
          url: shownUrl,
          database: ctx.db.dialect,
          uptime_s: Math.round((Date.now() - startedAt) / 1000),
          users: await User.count(),
          components: ctx.status.snapshot(),
        }),
        'auth.invalidate': () => {
          services.auth.invalidate();
          return {};
        },
      },
      logger,
    ).catch((err: Error) => {
      server.close();
      throw new StartupError(err.message);
    });
  } catch (err) {
    tls?.stop();
    await core.close();
    throw err instanceof TlsConfigError ? new StartupError(err.message) : err;
  }
  const port = (server.address() as AddressInfo).port;
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
  const mainHost = new LocalHost();
  const protocols = await startProtocols(core, {
    host: mainHost,
    plugins: config.plugins,
    pluginConfig: config.pluginConfig,
    // The main server keeps the digest of what each plugin took too, so a drift check covers it.
    reconciler: { digestPlaces: { main: { host: mainHost, stateDirOf: (protocol) => mainStateDirOf(config.dataDir, protocol) } } },
  });
  syncFirewall();

  // Accounting + enforcement tick loop over every registered plugin.
  await core.accounting.start();

  started();

  const listeners = config.resellerListeners === 'on' ? new ResellerListeners(services, { host: config.host, ...(tls ? { createServer: (h) => tls!.serve(h) } : {}) }) : null;
  await listeners?.sync();

  const shownHost = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `${tls ? 'https' : 'http'}://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${port}`;
  shownUrl = url;
  logger.info({ url, database: ctx.db.dialect }, 'polygate is listening');
  const backups = config.backupIntervalHours > 0 ? scheduleBackups(config, logger) : null;

  let stopping: Promise<void> | undefined;
  return {
    core,
    url,
    port,
    firewall,
    backups,
    stop() {
      stopping ??= (async () => {
        unsubscribe.forEach((off) => off());
        await backups?.stop();
        await listeners?.close();
        await protocols.stop();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        await firewallSync;
        await control.close();
        await core.close();
        logger.info('polygate stopped');
      })();
      return stopping;
    },
  };
}

/** A start-up failure the operator fixes by changing a setting; the message says which and how. */
export class StartupError extends Error {}

/** Listens, or rejects with what to change: the setting (POLYGATE_PORT / POLYGATE_HOST) and the value at fault. */
function listenOrExplain(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      const at = `${host}:${port}`;
      const portSetting = settingName('port');
      if (err.code === 'EADDRINUSE') {
        reject(new StartupError(`${portSetting}: port ${port} is already in use on ${host} (another polygate or another program listens on ${at}). Stop it or set ${portSetting} to a free port.`));
      } else if (err.code === 'EACCES') {
        reject(new StartupError(`${portSetting}: port ${port} needs privileges this process does not have. Run as root or set ${portSetting} to a port above 1023.`));
      } else if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') {
        reject(new StartupError(`${settingName('host')}: ${host} is not an address of this machine. Set it to one of its addresses, or 0.0.0.0 for all.`));
      } else {
        reject(new StartupError(`Cannot listen on ${at} (${settingName('host')}, ${portSetting}): ${err.message}`));
      }
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}
