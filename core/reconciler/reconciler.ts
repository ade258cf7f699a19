import type { CoreContext } from '../context';
import type { Logger } from '../logger';
import type { PluginRegistry, RegisteredPlugin } from '../plugin/registry';
import type { ListenerSpec, ProtocolPluginInstance } from '../plugin/types';
import type { Services } from '../services';
import { desiredUsers } from './desired-users';

export interface ReconcilerOptions {
  /** Changes arriving within this window are applied in one pass. */
  debounceMs?: number;
  /** First retry after a failed pass; doubles up to `maxBackoffMs`. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

type PluginSyncState = { state: 'ok' } | { state: 'degraded'; reason: string } | { state: 'pending' };

/**
 * Makes every running plugin match the database: its listeners (OpenVPN ports from the
 * ports table), the users allowed on it, and a started daemon. Runs at start and after every
 * change that matters, debounced and serialized; a failed pass is retried with backoff and
 * its reason is shown per plugin in /api/v1/health.
 */
export class Reconciler {
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private dirty = false;
  private backoffMs: number;
  private stopped = false;
  private readonly unsubscribe: Array<() => void> = [];
  private readonly syncState = new Map<string, PluginSyncState>();
  private readonly opts: Required<ReconcilerOptions>;

  constructor(
    private readonly ctx: CoreContext,
    private readonly services: Services,
    private readonly plugins: PluginRegistry,
    options: ReconcilerOptions = {},
  ) {
    this.opts = { debounceMs: 200, initialBackoffMs: 1000, maxBackoffMs: 60_000, ...options };
    this.backoffMs = this.opts.initialBackoffMs;
    this.log = ctx.logger.child({ component: 'reconciler' });
    ctx.status.register('reconciler', () => {
      const bad = [...this.syncState.entries()].filter(([, s]) => s.state === 'degraded') as Array<[string, { reason: string }]>;
      return bad.length ? { state: 'degraded', reason: bad.map(([id, s]) => `${id}: ${s.reason}`).join('; ') } : { state: 'ok' };
    });
  }

  /** Subscribes to domain events and runs the first pass (awaited, so start-up errors show at once). */
  async start(): Promise<void> {
    const schedule = () => this.schedule();
    const { events } = this.ctx;
    this.unsubscribe.push(
      events.on('users.changed', schedule),
      events.on('users.deleted', schedule),
      events.on('ports.changed', schedule),
      events.on('nodes.changed', schedule),
      events.on('sub_admins.changed', schedule),
      events.on('sub_admins.deleted', schedule),
      events.on('users.revoked', ({ username }) => void this.renewCredentials(username)),
    );
    await this.syncNow().catch((err) => {
      this.schedule(this.backoffMs);
      throw err;
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe.splice(0).forEach((off) => off());
    if (this.timer) clearTimeout(this.timer);
    await this.running.catch(() => undefined);
  }

  /** One full pass now (after any pass in progress). Rejects if a plugin failed to sync. */
  syncNow(): Promise<void> {
    const pass = this.running.catch(() => undefined).then(() => this.pass());
    this.running = pass;
    return pass;
  }

  /** Resolves once no pass is scheduled or running (tests). */
  async idle(): Promise<void> {
    for (let i = 0; i < 1000 && (this.timer || this.dirty); i++) await new Promise((r) => setTimeout(r, 10));
    await this.running.catch(() => undefined);
  }

  private schedule(delayMs = this.opts.debounceMs): void {
    if (this.stopped) return;
    this.dirty = true;
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.dirty = false;
      this.syncNow().then(
        () => {
          this.backoffMs = this.opts.initialBackoffMs;
        },
        () => {
          const wait = this.backoffMs;
          this.backoffMs = Math.min(this.backoffMs * 2, this.opts.maxBackoffMs);
          this.log.warn({ retryInMs: wait }, 'sync failed; retrying');
          this.schedule(wait);
        },
      );
    }, delayMs);
    this.timer.unref?.();
  }

  private async pass(): Promise<void> {
    const failures: string[] = [];
    for (const plugin of this.plugins.available()) {
      try {
        await this.syncPlugin(plugin);
        this.syncState.set(plugin.id, { state: 'ok' });
      } catch (err) {
        const reason = (err as Error).message;
        this.syncState.set(plugin.id, { state: 'degraded', reason });
        this.log.error({ plugin: plugin.id, err: reason }, 'plugin sync failed');
        failures.push(`${plugin.id}: ${reason}`);
      }
    }
    if (failures.length) throw new Error(failures.join('; '));
  }

  private async syncPlugin(plugin: RegisteredPlugin & { instance: ProtocolPluginInstance }): Promise<void> {
    const { instance } = plugin;
    if (instance.setListeners) await instance.setListeners(await this.listenersOf(plugin));
    await instance.syncUsers(await desiredUsers(this.ctx.db, plugin.protocol, plugin.serverId));
    await instance.start();
  }

  private async listenersOf(plugin: RegisteredPlugin): Promise<ListenerSpec[]> {
    if (plugin.protocol !== 'openvpn') return [];
    const endpoints = await this.services.servers.openVpnEndpoints();
    return endpoints.filter((e) => e.serverId === plugin.serverId).map((e) => ({ port: e.port, protocol: e.protocol }));
  }

  /** After a revoke: new certificates everywhere, in the background (the API already answered). */
  private async renewCredentials(username: string): Promise<void> {
    for (const plugin of this.plugins.available()) {
      if (!plugin.instance.renewCredentials) continue;
      try {
        await plugin.instance.renewCredentials(username);
        this.log.info({ plugin: plugin.id, username }, 'credentials renewed after revoke');
      } catch (err) {
        this.log.error({ plugin: plugin.id, username, err: (err as Error).message }, 'renewing credentials after revoke failed');
      }
    }
  }
}
