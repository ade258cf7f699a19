import path from 'node:path';
import type { CoreContext } from '../context';
import type { Host } from '../hosts/host';
import type { Logger } from '../logger';
import {
  PLUGIN_API_VERSION,
  type AuthorizeRequest,
  type AuthorizeResult,
  type ClientEndpoint,
  type ListenerSpec,
  type Availability,
  type DesiredUser,
  type PortNeed,
  type ProtocolId,
  type ProtocolPluginDefinition,
  type ProtocolPluginInstance,
  type SessionEnded,
  type SessionPoll,
} from './types';

/** What core answers plugins with; the accounting engine provides it once it exists. */
export interface PluginHooks {
  authorize(request: AuthorizeRequest): Promise<AuthorizeResult>;
  sessionEnded(ended: SessionEnded): void;
}

export type PluginState = 'available' | 'unavailable';

/** `openvpn@main`, `wireguard@node_3`: one protocol on one server. */
export const pluginSourceId = (protocol: ProtocolId, serverId: string) => `${protocol}@${serverId}`;

export interface RegisteredPlugin {
  /** `protocol@serverId`. */
  readonly id: string;
  readonly protocol: ProtocolId;
  readonly serverId: string;
  readonly state: PluginState;
  /** Why it is unavailable (load failure, missing binaries, failed availability check). */
  readonly reason?: string;
  /** The last call that failed (poll, disconnect…) and why; cleared by the next success. */
  readonly lastError?: string;
  /**
   * The instance behind a guard: every call has a time limit and failures come back as
   * rejections only, never as synchronous throws. Null when the plugin failed to load.
   */
  readonly instance: ProtocolPluginInstance | null;
  /** The plugin's own object, for tests that drive a fake. */
  readonly raw: ProtocolPluginInstance | null;
}

export interface AddPluginOptions {
  serverId: string;
  host: Host;
  /** Plugin configuration; validated by the plugin's own schema. */
  config?: unknown;
  /** Directory on the host for the plugin's files; default `<dataDir>/plugins/<protocol>`. */
  stateDir?: string;
}

export interface PluginRegistryOptions {
  /** Time limit of one plugin call (poll, disconnect, availability…). Default 30 s. */
  callTimeoutMs?: number;
  /** Where plugins are looked up by name (`<dir>/<name>`); default `<repo>/plugins`. */
  pluginsDir?: string;
}

class Entry implements RegisteredPlugin {
  state: PluginState = 'unavailable';
  reason?: string;
  lastError?: string;
  instance: ProtocolPluginInstance | null = null;
  raw: ProtocolPluginInstance | null = null;
  constructor(
    readonly id: string,
    readonly protocol: ProtocolId,
    readonly serverId: string,
  ) {}
}

/**
 * Every running protocol plugin instance, one per (protocol, server), with its availability.
 * A plugin that fails to load, is built for another API version, or reports itself
 * unavailable is registered `unavailable` with the reason (and shown in /health); the daemon
 * keeps serving. Calls into instances are guarded so one broken plugin never breaks a tick.
 *
 * @example
 * const registry = new PluginRegistry(ctx);
 * registry.setHooks({ authorize, sessionEnded });
 * await registry.add(openvpnDefinition, { serverId: 'main', host: new LocalHost() });
 * for (const p of registry.available()) await p.instance!.pollSessions();
 */
export class PluginRegistry {
  private readonly entries = new Map<string, Entry>();
  private hooks: PluginHooks | null = null;
  private readonly callTimeoutMs: number;
  private readonly pluginsDir: string;
  private readonly logger: Logger;

  constructor(
    private readonly ctx: Pick<CoreContext, 'logger' | 'status' | 'config'>,
    options: PluginRegistryOptions = {},
  ) {
    this.callTimeoutMs = options.callTimeoutMs ?? 30_000;
    this.pluginsDir = options.pluginsDir ?? path.resolve(__dirname, '../../plugins');
    this.logger = ctx.logger.child({ component: 'plugins' });
  }

  /** Connects plugins' `authorize`/`sessionEnded` to core (the accounting engine). */
  setHooks(hooks: PluginHooks): void {
    this.hooks = hooks;
  }

  /**
   * Finds a plugin definition by name (`plugins/<name>`), checks its shape and API version,
   * and registers one instance of it on the given server. Never throws for a broken plugin.
   */
  async load(name: string, options: AddPluginOptions): Promise<RegisteredPlugin> {
    let definition: ProtocolPluginDefinition<unknown>;
    try {
      if (!/^[a-z0-9][a-z0-9-]{0,40}$/.test(name)) throw new Error('plugin names are lowercase letters, digits and dashes');
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const mod = require(path.join(this.pluginsDir, name)) as { default?: unknown };
      definition = checkDefinition(mod.default ?? mod);
    } catch (err) {
      const reason = `plugin '${name}' could not be loaded: ${(err as Error).message}`;
      const protocol = (PROTOCOL_OF_PLUGIN_NAME[name] ?? name) as ProtocolId;
      return this.markUnavailable(protocol, options.serverId, reason);
    }
    return this.add(definition, options);
  }

  /** Registers one instance of `definition` on `options.serverId`, replacing a previous one. */
  async add<Config>(definition: ProtocolPluginDefinition<Config>, options: AddPluginOptions): Promise<RegisteredPlugin> {
    const protocol = definition?.id ?? ('unknown' as ProtocolId);
    const entry = this.entry(protocol, options.serverId);
    try {
      checkDefinition(definition);
      const parsed = definition.configSchema.safeParse(options.config ?? {});
      if (!parsed.success) throw new Error(`invalid configuration: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'config'}: ${i.message}`).join('; ')}`);
      const pluginLogger = this.ctx.logger.child({ plugin: entry.id });
      const raw = definition.create({
        host: options.host,
        config: parsed.data,
        logger: pluginLogger,
        stateDir: options.stateDir ?? path.join(this.ctx.config.dataDir, 'plugins', protocol),
        authorize: (request) => this.authorize(entry, request),
        sessionEnded: (ended) => this.sessionEnded(entry, ended),
      });
      checkInstance(raw);
      entry.raw = raw;
      entry.instance = this.guard(entry, raw);
    } catch (err) {
      return this.setUnavailable(entry, `plugin '${protocol}' failed to start: ${(err as Error).message}`);
    }
    await this.checkAvailability(entry);
    return entry;
  }

  /** Records a plugin that cannot run here (e.g. not installed on that node). */
  markUnavailable(protocol: ProtocolId, serverId: string, reason: string): RegisteredPlugin {
    return this.setUnavailable(this.entry(protocol, serverId), reason);
  }

  /** Forgets an instance (node deleted, plugin turned off); its status entry says so. */
  remove(protocol: ProtocolId, serverId: string): void {
    const id = pluginSourceId(protocol, serverId);
    if (!this.entries.delete(id)) return;
    this.ctx.status.register(`plugin:${id}`, () => ({ state: 'unmanaged', reason: 'removed' }));
  }

  get(protocol: ProtocolId, serverId: string): RegisteredPlugin | undefined {
    return this.entries.get(pluginSourceId(protocol, serverId));
  }

  list(): RegisteredPlugin[] {
    return [...this.entries.values()];
  }

  /** Instances that loaded and last reported themselves available. */
  available(): Array<RegisteredPlugin & { instance: ProtocolPluginInstance }> {
    return this.list().filter((e): e is Entry & { instance: ProtocolPluginInstance } => e.state === 'available' && e.instance !== null);
  }

  /** Asks every loaded instance again (binaries installed since, daemon gone…). */
  async refreshAvailability(): Promise<void> {
    await Promise.all([...this.entries.values()].filter((e) => e.raw).map((e) => this.checkAvailability(e)));
  }

  /** Called by the engine after each call outcome, so /health shows the latest failure. */
  noteOutcome(entryId: string, error: unknown): void {
    const entry = this.entries.get(entryId);
    if (!entry) return;
    entry.lastError = error ? describe(error) : undefined;
  }

  private entry(protocol: ProtocolId, serverId: string): Entry {
    const id = pluginSourceId(protocol, serverId);
    let entry = this.entries.get(id);
    if (!entry) {
      entry = new Entry(id, protocol, serverId);
      this.entries.set(id, entry);
      const e = entry;
      this.ctx.status.register(`plugin:${id}`, () => {
        if (e.state === 'unavailable') return { state: 'unavailable', reason: e.reason };
        return e.lastError ? { state: 'degraded', reason: e.lastError } : { state: 'ok' };
      });
    }
    return entry;
  }

  private setUnavailable(entry: Entry, reason: string): Entry {
    entry.state = 'unavailable';
    entry.reason = reason;
    this.logger.warn({ plugin: entry.id, reason }, 'plugin unavailable; the daemon keeps serving without it');
    return entry;
  }

  private async checkAvailability(entry: Entry): Promise<void> {
    if (!entry.instance) return;
    let availability: Availability;
    try {
      availability = await entry.instance.availability();
      if (!availability || typeof availability.available !== 'boolean') throw new Error('availability() returned no verdict');
    } catch (err) {
      availability = { available: false, reason: `availability check failed: ${describe(err)}` };
    }
    if (availability.available) {
      if (entry.state !== 'available') this.logger.info({ plugin: entry.id }, 'plugin available');
      entry.state = 'available';
      entry.reason = undefined;
    } else {
      this.setUnavailable(entry, availability.reason);
    }
  }

  private async authorize(entry: Entry, request: AuthorizeRequest): Promise<AuthorizeResult> {
    if (!this.hooks) return { allowed: false, reason: 'the panel is starting' };
    try {
      return await this.hooks.authorize({ ...request, protocol: entry.protocol, serverId: entry.serverId });
    } catch (err) {
      this.logger.error({ err, plugin: entry.id, username: request.username }, 'authorize failed; refusing the connection');
      return { allowed: false, reason: 'internal error' };
    }
  }

  private sessionEnded(entry: Entry, ended: SessionEnded): void {
    try {
      this.hooks?.sessionEnded({ ...ended, session: { ...ended.session, protocol: entry.protocol, serverId: entry.serverId } });
    } catch (err) {
      this.logger.error({ err, plugin: entry.id }, 'recording an ended session failed');
    }
  }

  /** Every call gets a time limit, and a synchronous throw becomes a rejection. */
  private guard(entry: Entry, raw: ProtocolPluginInstance): ProtocolPluginInstance {
    const call = <T>(name: string, timeoutMs: number, fn: () => Promise<T>): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${entry.id}: ${name}() took longer than ${timeoutMs} ms`)), timeoutMs);
        timer.unref?.();
        let p: Promise<T>;
        try {
          p = Promise.resolve(fn());
        } catch (err) {
          p = Promise.reject(err);
        }
        p.then(
          (v) => {
            clearTimeout(timer);
            resolve(v);
          },
          (err) => {
            clearTimeout(timer);
            reject(err instanceof Error ? err : new Error(describe(err)));
          },
        );
      });
    const t = this.callTimeoutMs;
    // start/stop/syncUsers may install packages or restart daemons: give them longer.
    const slow = Math.max(t, 10 * 60_000);
    return {
      availability: () => call('availability', t, () => raw.availability()),
      start: () => call('start', slow, () => raw.start()),
      stop: () => call('stop', slow, () => raw.stop()),
      syncUsers: (users: readonly DesiredUser[]) => call('syncUsers', slow, () => raw.syncUsers(users)),
      ports: (): Promise<PortNeed[]> => call('ports', t, () => raw.ports()),
      pollSessions: (): Promise<SessionPoll> => call('pollSessions', t, () => raw.pollSessions()),
      disconnect: (target) => call('disconnect', t, () => raw.disconnect(target)),
      // Optional capabilities pass through only where the plugin has them.
      ...(raw.setListeners && { setListeners: (l: readonly ListenerSpec[]) => call('setListeners', slow, () => raw.setListeners!(l)) }),
      ...(raw.renewCredentials && { renewCredentials: (u: string) => call('renewCredentials', slow, () => raw.renewCredentials!(u)) }),
      ...(raw.renderClientConfig && {
        renderClientConfig: (u: string, e: readonly ClientEndpoint[]) => call('renderClientConfig', slow, () => raw.renderClientConfig!(u, e)),
      }),
    };
  }
}

/** Plugin directory names whose protocol id differs from the name. */
const PROTOCOL_OF_PLUGIN_NAME: Record<string, ProtocolId> = { 'l2tp-ipsec': 'l2tp', ocserv: 'cisco' };

const INSTANCE_METHODS = ['availability', 'start', 'stop', 'syncUsers', 'ports', 'pollSessions', 'disconnect'] as const;

function checkDefinition(value: unknown): ProtocolPluginDefinition<unknown> {
  const d = value as Partial<ProtocolPluginDefinition<unknown>> | null;
  if (!d || typeof d !== 'object') throw new Error('the module does not export a plugin definition');
  if (!['openvpn', 'l2tp', 'cisco', 'wireguard'].includes(String(d.id))) throw new Error(`unknown protocol id ${JSON.stringify(d.id)}`);
  if (d.apiVersion !== PLUGIN_API_VERSION) throw new Error(`built for plugin API version ${String(d.apiVersion)}, this polygate speaks version ${PLUGIN_API_VERSION}`);
  if (!d.configSchema || typeof (d.configSchema as { safeParse?: unknown }).safeParse !== 'function') throw new Error('configSchema must be a zod schema');
  if (typeof d.create !== 'function') throw new Error('create(ctx) is missing');
  return d as ProtocolPluginDefinition<unknown>;
}

function checkInstance(value: unknown): asserts value is ProtocolPluginInstance {
  const missing = INSTANCE_METHODS.filter((m) => typeof (value as Record<string, unknown> | null)?.[m] !== 'function');
  if (missing.length) throw new Error(`create() returned an object without ${missing.join(', ')}`);
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
