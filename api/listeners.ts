import { createServer, type RequestListener, type Server } from 'node:http';
import type { Logger } from '../core/logger';
import type { Services } from '../core/services';
import { createApp } from './server';

export type ResellerListenerKind = 'panel' | 'subscription';

export interface ResellerListenerInfo {
  subAdminId: number;
  kind: ResellerListenerKind;
  port: number;
}

export interface ResellerListenerFailure extends ResellerListenerInfo {
  reason: string;
}

export interface ResellerListenersOptions {
  /** Address every reseller listener binds to (the daemon's POLYGATE_HOST). */
  host: string;
  /** Makes each listener's server; with the panel on HTTPS, one with the panel's certificate (default plain HTTP). */
  createServer?: (handler: RequestListener) => Server;
}

const keyOf = (info: { subAdminId: number; kind: ResellerListenerKind }) => `${info.subAdminId}:${info.kind}`;

/**
 * Makes the daemon listen on each active reseller's own ports: the panel port serves the API
 * for that reseller's key only, the subscription port serves `/sub` and `/download`.
 *
 * `sync()` compares what is listening with the database and starts or stops listeners; it
 * runs again on every reseller change. A port that cannot be bound (taken by a program the
 * port registry does not know about) is logged, shown in `failures()` and on /api/v1/health as
 * `reseller_listeners: degraded`, and retried at the next sync; the daemon keeps running.
 */
export class ResellerListeners {
  private readonly servers = new Map<string, { info: ResellerListenerInfo; server: Server }>();
  private readonly failed = new Map<string, ResellerListenerFailure>();
  private readonly unsubscribe: (() => void)[];
  private readonly log: Logger;
  private queue: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly services: Services,
    private readonly options: ResellerListenersOptions,
  ) {
    const { ctx } = services;
    this.log = ctx.logger.child({ component: 'reseller-listeners' });
    const resync = () => {
      this.sync().catch((err: unknown) => this.log.error({ err }, 'reseller listeners sync failed; will retry on the next change'));
    };
    this.unsubscribe = [ctx.events.on('sub_admins.changed', resync), ctx.events.on('sub_admins.deleted', resync)];
    ctx.status.register('reseller_listeners', () => {
      const failures = this.failures();
      if (failures.length === 0) return { state: 'ok' };
      return {
        state: 'degraded',
        reason: failures.map((f) => `sub-admin ${f.subAdminId} ${f.kind} port ${f.port}: ${f.reason}`).join('; '),
      };
    });
  }

  /** Brings the listeners in line with the database. Calls are serialized; each one sees the latest rows. */
  sync(): Promise<void> {
    const run = this.queue.then(() => this.syncOnce());
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Stops every listener and stops following reseller changes. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.unsubscribe.forEach((off) => off());
    }
    await this.queue;
    await Promise.all([...this.servers.keys()].map((key) => this.stop(key)));
    this.failed.clear();
  }

  listening(): ResellerListenerInfo[] {
    return [...this.servers.values()].map(({ info }) => ({ ...info }));
  }

  failures(): ResellerListenerFailure[] {
    return [...this.failed.values()].map((f) => ({ ...f }));
  }

  private async syncOnce(): Promise<void> {
    if (this.closed) return;
    const desired = new Map<string, ResellerListenerInfo>();
    for (const r of await this.services.subAdmins.activeResellerPorts()) {
      if (r.panel_port != null) desired.set(keyOf({ subAdminId: r.subAdminId, kind: 'panel' }), { subAdminId: r.subAdminId, kind: 'panel', port: r.panel_port });
      if (r.subscription_port != null) {
        const info = { subAdminId: r.subAdminId, kind: 'subscription' as const, port: r.subscription_port };
        desired.set(keyOf(info), info);
      }
    }
    if (this.closed) return;

    // Stop first: a port handed from one listener to another must be free before it is bound again.
    for (const [key, { info }] of this.servers) {
      const want = desired.get(key);
      if (!want || want.port !== info.port) await this.stop(key);
    }
    for (const key of this.failed.keys()) if (!desired.has(key)) this.failed.delete(key);

    for (const [key, info] of desired) {
      if (this.servers.has(key)) continue;
      try {
        const server = await this.listen(info);
        this.servers.set(key, { info, server });
        this.failed.delete(key);
        this.log.info({ ...info, host: this.options.host }, 'reseller listener started');
      } catch (err) {
        const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        this.failed.set(key, { ...info, reason });
        this.log.error({ err, ...info, host: this.options.host }, 'reseller listener could not bind its port');
      }
    }
  }

  private listen(info: ResellerListenerInfo): Promise<Server> {
    const app = createApp(
      this.services,
      info.kind === 'panel' ? { kind: 'reseller_panel', subAdminId: info.subAdminId } : { kind: 'reseller_subscription', subAdminId: info.subAdminId },
    );
    const server = (this.options.createServer ?? createServer)(app);
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => {
        server.off('listening', onListening);
        reject(err);
      };
      const onListening = () => {
        server.off('error', onError);
        // Later socket errors must not crash the daemon.
        server.on('error', (err) => this.log.error({ err, ...info }, 'reseller listener error'));
        resolve(server);
      };
      server.once('error', onError);
      server.once('listening', onListening);
      server.listen({ port: info.port, host: this.options.host });
    });
  }

  private async stop(key: string): Promise<void> {
    const entry = this.servers.get(key);
    if (!entry) return;
    this.servers.delete(key);
    await new Promise<void>((resolve) => {
      entry.server.close(() => resolve());
      // Keep-alive connections would hold the old port's clients on a reseller that is gone.
      entry.server.closeAllConnections();
    });
    this.log.info({ ...entry.info }, 'reseller listener stopped');
  }
}
