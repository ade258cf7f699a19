import path from 'node:path';
import type { CoreContext } from '../context';
import type { Host } from '../hosts/host';
import type { Logger } from '../logger';
import type { Clock } from '../clock';
import { STATUS_FORMATS } from '../protocols/status-formats';
import { isProtocolId, protocolOfPluginName, protocolSpec } from '../protocols/table';
import {
  PLUGIN_API_VERSION,
  type AuthorizeRequest,
  type AuthorizeResult,
  type Availability,
  type ClientEndpoint,
  type ClientUser,
  type CustomerFact,
  type DesiredState,
  type PluginCapabilities,
  type PluginPki,
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
  /** Resolves once the event is durable (see `PluginContext.sessionEnded`). */
  sessionEnded(ended: SessionEnded): Promise<void>;
}

export type PluginState = 'available' | 'unavailable';

/** `openvpn@main`, `wireguard@node_3`: one protocol on one server. */
export const pluginSourceId = (protocol: ProtocolId, serverId: string) => `${protocol}@${serverId}`;
const MAIN_SERVER_ID = 'main';
const DEFAULT_PLUGINS_DIR = path.resolve(__dirname, '../../plugins');

/** A plugin's definition by name (`plugins/<name>`), shape- and version-checked; throws saying what is wrong. */
export function loadPluginDefinition(name: string, pluginsDir = DEFAULT_PLUGINS_DIR): ProtocolPluginDefinition<unknown> {
  if (!/^[a-z0-9][a-z0-9-]{0,40}$/.test(name)) throw new Error('plugin names are lowercase letters, digits and dashes');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(path.join(pluginsDir, name)) as { default?: unknown };
  return checkDefinition(mod.default ?? mod);
}

export interface RegisteredPlugin {
  /** `protocol@serverId`. */
  readonly id: string;
  readonly protocol: ProtocolId;
  readonly serverId: string;
  readonly state: PluginState;
  /** What the plugin declared it can do (null when it failed to load). */
  readonly capabilities: PluginCapabilities | null;
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
  /** IPv4 pool of client addresses; default the protocol table's. */
  clientPool?: string;
  /** The address customers dial for this server; default the main server's public host on main. */
  publicHost?: string;
}

export interface PluginRegistryOptions {
  /** Time limit of one plugin call (poll, disconnect, availability…). Default 30 s. */
  callTimeoutMs?: number;
  /** Where plugins are looked up by name (`<dir>/<name>`); default `<repo>/plugins`. */
  pluginsDir?: string;
}

class Entry implements RegisteredPlugin {
  state: PluginState = 'unavailable';
  capabilities: PluginCapabilities | null = null;
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
 * const registry = new PluginRegistry(ctx, pki);
 * registry.setHooks({ authorize, sessionEnded });
 * await registry.add(openvpnDefinition, { serverId: 'main', host: new LocalHost() });
 * for (const p of registry.available()) await p.instance!.pollSessions();
 */
export class PluginRegistry {
  private readonly entries = new Map<string, Entry>();
  private stateVersion = 0;
  private hooks: PluginHooks | null = null;
  private readonly callTimeoutMs: number;
  private readonly pluginsDir: string;
  private readonly logger: Logger;

  constructor(
    private readonly ctx: Pick<CoreContext, 'logger' | 'status' | 'config'> & { clock: Clock },
    private readonly pki: PluginPki,
    options: PluginRegistryOptions = {},
  ) {
    this.callTimeoutMs = options.callTimeoutMs ?? 30_000;
    this.pluginsDir = options.pluginsDir ?? DEFAULT_PLUGINS_DIR;
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
      definition = loadPluginDefinition(name, this.pluginsDir);
    } catch (err) {
      const reason = `plugin '${name}' could not be loaded: ${(err as Error).message}`;
      const protocol = protocolOfPluginName(name)?.id;
      if (!protocol) {
        this.logger.warn({ plugin: name, reason }, 'unknown plugin name; ignored');
        return { id: name, protocol: name as ProtocolId, serverId: options.serverId, state: 'unavailable', capabilities: null, reason, instance: null, raw: null };
      }
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
        clock: this.ctx.clock,
        serverId: options.serverId,
        publicHost: options.publicHost ?? (options.serverId === MAIN_SERVER_ID ? this.ctx.config.publicHostResolved : undefined),
        clientPool: options.clientPool ?? protocolSpec(protocol).defaultClientPool,
        stateDir: options.stateDir ?? mainStateDirOf(this.ctx.config.dataDir, protocol),
        pki: this.pki,
        authorize: (request) => this.authorize(entry, request),
        sessionEnded: (ended) => this.sessionEnded(entry, ended),
      });
      checkInstance(raw, definition.capabilities);
      entry.capabilities = definition.capabilities;
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
    this.stateVersion++;
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

  /** Changes whenever a plugin is added, removed, or becomes (un)available: views cache by it. */
  version(): number {
    return this.stateVersion;
  }

  /**
   * Whether customers are shown `protocol` on `serverId`. A protocol whose plugin is not
   * loaded and available on the main server runs nowhere. Nodes run the same plugins as the
   * main server: a node is shown unless its own instance reports itself unavailable.
   */
  offers(protocol: ProtocolId, serverId: string): boolean {
    const here = this.entries.get(pluginSourceId(protocol, serverId));
    if (here) return here.state === 'available';
    const main = this.entries.get(pluginSourceId(protocol, MAIN_SERVER_ID));
    return serverId !== MAIN_SERVER_ID && main?.state === 'available';
  }

  /** The format of a protocol's client configs, when its plugin renders them. */
  formatOf(protocol: ProtocolId): { extension: string; qr: boolean } | null {
    for (const e of this.entries.values()) {
      const format = e.protocol === protocol ? e.capabilities?.clientConfig : null;
      if (format) return { extension: format.extension, qr: format.qr === true };
    }
    return null;
  }

  /** The instance that renders a protocol's client configs for one server (nodes share the main server's CA and keys). */
  rendererFor(protocol: ProtocolId, serverId: string): { mediaType: string; render(user: ClientUser, endpoints: readonly ClientEndpoint[]): Promise<string> } | { unavailable: string } {
    const entry = this.entries.get(pluginSourceId(protocol, serverId)) ?? this.entries.get(pluginSourceId(protocol, MAIN_SERVER_ID));
    const format = entry?.capabilities?.clientConfig;
    const instance = entry?.instance;
    if (!entry || entry.state !== 'available' || !format || !instance?.renderClientConfig) return { unavailable: entry?.reason ?? 'not running' };
    return { mediaType: format.mediaType, render: (user, endpoints) => instance.renderClientConfig!(user, endpoints) };
  }

  /** What a customer must know about a protocol's server to trust it (none while its plugin is down). */
  async customerFactsOf(protocol: ProtocolId, serverId: string): Promise<readonly CustomerFact[]> {
    const entry = this.entries.get(pluginSourceId(protocol, serverId)) ?? (serverId === MAIN_SERVER_ID ? undefined : this.entries.get(pluginSourceId(protocol, MAIN_SERVER_ID)));
    if (!entry || entry.state !== 'available' || !entry.instance?.customerFacts) return [];
    try {
      return await entry.instance.customerFacts();
    } catch (err) {
      this.logger.warn({ source: entry.id, err: (err as Error).message }, 'customer facts unavailable');
      return [];
    }
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
      this.stateVersion++;
      const e = entry;
      this.ctx.status.register(`plugin:${id}`, () => {
        if (e.state === 'unavailable') return { state: 'unavailable', reason: e.reason };
        return e.lastError ? { state: 'degraded', reason: e.lastError } : { state: 'ok' };
      });
    }
    return entry;
  }

  private setUnavailable(entry: Entry, reason: string): Entry {
    if (entry.state !== 'unavailable' || entry.reason !== reason) this.stateVersion++;
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
      if (entry.state !== 'available') {
        this.logger.info({ plugin: entry.id }, 'plugin available');
        this.stateVersion++;
      }
      entry.state = 'available';
      entry.reason = undefined;
    } else {
      this.setUnavailable(entry, availability.reason);
    }
  }

  private async authorize(entry: Entry, request: Omit<AuthorizeRequest, 'protocol' | 'serverId'>): Promise<AuthorizeResult> {
    if (!this.hooks) return { allowed: false, reason: 'the panel is starting' };
    try {
      return await this.hooks.authorize({ username: request.username, password: request.password, protocol: entry.protocol, serverId: entry.serverId });
    } catch (err) {
      this.logger.error({ err, plugin: entry.id, username: request.username }, 'authorize failed; refusing the connection');
      return { allowed: false, reason: 'internal error' };
    }
  }

  private async sessionEnded(entry: Entry, ended: SessionEnded): Promise<void> {
    if (!this.hooks) throw new Error('the panel is not accounting yet; keep the record and report it again');
    try {
      await this.hooks.sessionEnded({ ...ended, session: { ...ended.session, protocol: entry.protocol, serverId: entry.serverId } });
    } catch (err) {
      this.logger.error({ err, plugin: entry.id }, 'recording an ended session failed');
      throw err;
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
      apply: (state: DesiredState) => call('apply', slow, () => raw.apply(state)),
      stop: () => call('stop', slow, () => raw.stop()),
      ...(raw.detach && { detach: () => call('detach', slow, () => raw.detach!()) }),
      ports: (): Promise<PortNeed[]> => call('ports', t, () => raw.ports()),
      pollSessions: (): Promise<SessionPoll> => call('pollSessions', t, () => raw.pollSessions()),
      disconnect: (target) => call('disconnect', t, () => raw.disconnect(target)),
      ...(raw.renderClientConfig && {
        renderClientConfig: (u: ClientUser, e: readonly ClientEndpoint[]) => call('renderClientConfig', slow, () => raw.renderClientConfig!(u, e)),
      }),
      // Issuing a certificate on first use may take a while (key generation).
      ...(raw.customerFacts && { customerFacts: (): Promise<readonly CustomerFact[]> => call('customerFacts', slow, () => raw.customerFacts!()) }),
    };
  }
}

/** Where a plugin keeps its files on the main server, unless its registration says otherwise. */
export function mainStateDirOf(dataDir: string, protocol: ProtocolId): string {
  return path.join(dataDir, 'plugins', protocol);
}

const INSTANCE_METHODS = ['availability', 'apply', 'stop', 'ports', 'pollSessions', 'disconnect'] as const;
const POLL_FORMS: readonly string[] = ['sessions', ...STATUS_FORMATS];
const SETTING_KEYS = ['ipsec_psk', 'pki_crl'];

/** `2.0` → [2, 0]; null when it is not `major.minor`. */
function parseVersion(v: unknown): [number, number] | null {
  const m = typeof v === 'string' ? /^(\d+)\.(\d+)$/.exec(v) : null;
  return m ? [Number(m[1]), Number(m[2])] : null;
}

/** Same major, and a minor no newer than ours: minors only add optional members. */
export function compatibleApiVersion(pluginVersion: unknown, coreVersion = PLUGIN_API_VERSION): boolean {
  const p = parseVersion(pluginVersion);
  const c = parseVersion(coreVersion)!;
  return p !== null && p[0] === c[0] && p[1] <= c[1];
}

function checkCapabilities(c: unknown): PluginCapabilities {
  const caps = c as Partial<PluginCapabilities> | null;
  if (!caps || typeof caps !== 'object') throw new Error('capabilities are missing (see PluginCapabilities)');
  const problems: string[] = [];
  for (const flag of ['gatesLogins', 'reportsEndedSessions', 'takesListeners'] as const) {
    if (typeof caps[flag] !== 'boolean') problems.push(`capabilities.${flag} must be true or false`);
  }
  if (!POLL_FORMS.includes(String(caps.poll))) problems.push(`capabilities.poll must be one of ${POLL_FORMS.join(', ')}`);
  if (!Array.isArray(caps.settings) || caps.settings.some((k) => !SETTING_KEYS.includes(k))) problems.push(`capabilities.settings must list only ${SETTING_KEYS.join(', ')}`);
  const cc = caps.clientConfig;
  if (cc !== null && (typeof cc !== 'object' || !/^[a-z0-9]{1,10}$/.test(String(cc?.extension)) || typeof cc?.mediaType !== 'string')) {
    problems.push('capabilities.clientConfig must be null or { extension: "conf", mediaType: "text/plain" }');
  }
  if (problems.length) throw new Error(problems.join('; '));
  return caps as PluginCapabilities;
}

function checkDefinition(value: unknown): ProtocolPluginDefinition<unknown> {
  const d = value as Partial<ProtocolPluginDefinition<unknown>> | null;
  if (!d || typeof d !== 'object') throw new Error('the module does not export a plugin definition');
  if (!isProtocolId(d.id)) throw new Error(`unknown protocol id ${JSON.stringify(d.id)}`);
  if (!compatibleApiVersion(d.apiVersion)) throw new Error(`built for plugin API version ${JSON.stringify(d.apiVersion)}, this polygate speaks version ${PLUGIN_API_VERSION} (same major, minor up to ours)`);
  if (!d.configSchema || typeof (d.configSchema as { safeParse?: unknown }).safeParse !== 'function') throw new Error('configSchema must be a zod schema');
  if (typeof d.create !== 'function') throw new Error('create(ctx) is missing');
  checkCapabilities(d.capabilities);
  return d as ProtocolPluginDefinition<unknown>;
}

function checkInstance(value: unknown, capabilities: PluginCapabilities): asserts value is ProtocolPluginInstance {
  const v = value as Record<string, unknown> | null;
  const missing: string[] = INSTANCE_METHODS.filter((m) => typeof v?.[m] !== 'function');
  if (capabilities.clientConfig && typeof v?.renderClientConfig !== 'function') missing.push('renderClientConfig (capabilities.clientConfig is set)');
  if (missing.length) throw new Error(`create() returned an object without ${missing.join(', ')}`);
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
