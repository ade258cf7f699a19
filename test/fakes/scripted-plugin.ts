import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { LocalHost } from '../../core/hosts/local-host';
import type { PluginRegistry } from '../../core/plugin/registry';
import {
  defineProtocolPlugin,
  type AuthorizeResult,
  type Availability,
  type ClientConfigFormat,
  type ClientEndpoint,
  type ClientUser,
  type CustomerFact,
  type DesiredState,
  type PluginCapabilities,
  type LiveSession,
  type PluginContext,
  type PortNeed,
  type ProtocolId,
  type ProtocolPluginDefinition,
  type ProtocolPluginInstance,
  type SessionPoll,
  type StatusFormat,
} from '../../core/plugin/types';

/** A session as a script states it; protocol and server come from the plugin. */
export interface ScriptedSession {
  key: string;
  username: string;
  rx: number;
  tx: number;
  /** Unix seconds; default 1_700_000_000. */
  connectedAt?: number;
  remoteAddress?: string;
}

export interface ScriptedPluginOptions {
  /** Read the session list from this JSON file (`{ "sessions": ScriptedSession[] }`) on every poll. */
  file?: string;
  /** Answer polls as raw status text in this format instead of parsed sessions. */
  text?: { format: StatusFormat; scope: string };
  /**
   * A daemon without a login hook (WireGuard peers, chap-secrets): it lets in exactly the
   * users of the last applied state, and dropping a user from it cuts that user's sessions.
   * Default false: the daemon asks core's authorize at every login, like OpenVPN.
   */
  loginless?: boolean;
  /** Declares client configs with this extension (rendered as a small text file). */
  clientConfig?: ClientConfigFormat;
}

/** What a scripted plugin declares, from its options. */
export function scriptedCapabilities(options: ScriptedPluginOptions = {}): PluginCapabilities {
  return {
    gatesLogins: !options.loginless,
    reportsEndedSessions: true,
    poll: options.text?.format ?? 'sessions',
    takesListeners: true,
    settings: ['ipsec_psk', 'pki_crl'],
    clientConfig: options.clientConfig ?? null,
  };
}

/**
 * A TEST DOUBLE standing in for real VPN daemons (OpenVPN, xl2tpd/pppd, ocserv, WireGuard):
 * it implements ProtocolPluginInstance and replays what a script says — sessions with their
 * cumulative counters, counter resets, reconnects, sessions that vanish, disconnect events
 * with final counters, failing polls, and cuts the "daemon" ignores. No daemon runs.
 *
 * @example
 * const vpn = await addScriptedPlugin(core.plugins, 'openvpn', 'main');
 * vpn.set({ key: 'c1', username: 'alice', rx: 100, tx: 200 });
 * await core.accounting.tick();
 * vpn.end('c1', { rx: 150, tx: 260 }); // disconnect with final counters
 */
export class ScriptedPlugin implements ProtocolPluginInstance {
  readonly sessions = new Map<string, ScriptedSession>();
  /** Every disconnect the engine asked for. */
  readonly disconnects: Array<{ username: string } | { sessionKey: string }> = [];
  /** When false the daemon "ignores" cuts: sessions stay (to test confirmation and retry). */
  honorDisconnect = true;
  /** When true a honoured cut also reports the session ended with its current counters. */
  reportEndOnDisconnect = false;
  available: Availability = { available: true };
  private readonly queued: Array<SessionPoll | Error> = [];
  private failures: Error[] = [];
  polls = 0;
  /** Every state core applied, oldest first. */
  readonly applied: DesiredState[] = [];
  /** Client configs rendered, with what core handed over. */
  readonly rendered: Array<{ user: ClientUser; endpoints: readonly ClientEndpoint[] }> = [];
  /** When set, `renderClientConfig` fails with it. */
  renderFailure?: Error;
  /** When set, `apply` fails with it (an unreachable node, a daemon that will not start). */
  applyFailure?: Error;
  /** What `customerFacts` answers (an Error: it fails with it). */
  facts: CustomerFact[] | Error = [];

  constructor(
    readonly ctx: PluginContext<unknown>,
    readonly protocol: ProtocolId,
    private readonly options: ScriptedPluginOptions = {},
  ) {}

  get serverId(): string {
    return this.ctx.serverId;
  }

  /** The users of the last applied state (who a login-less daemon lets in). */
  allowedUsers(): string[] {
    return (this.applied.at(-1)?.users ?? []).map((u) => u.username);
  }

  /**
   * A device connecting, the way the real daemon would take it: a gating daemon asks core; a
   * login-less one lets in whoever the last applied state lists. The session appears on success.
   */
  async connect(session: ScriptedSession, password?: string): Promise<AuthorizeResult> {
    const verdict = this.options.loginless
      ? this.allowedUsers().includes(session.username)
        ? ({ allowed: true } as const)
        : ({ allowed: false, reason: 'not a configured peer' } as const)
      : await this.authorize(session.username, password);
    if (verdict.allowed) this.set(session);
    return verdict;
  }

  /** Adds or updates a live session (counters are cumulative, as daemons report them). */
  set(...sessions: ScriptedSession[]): this {
    for (const s of sessions) this.sessions.set(s.key, { connectedAt: 1_700_000_000, ...s });
    return this;
  }

  /** The session disappears from listings without any event (crash, missed disconnect). */
  drop(key: string): this {
    this.sessions.delete(key);
    return this;
  }

  /** The daemon reports a disconnect with final counters; the session leaves the listing unless `stale`. */
  end(key: string, final?: { rx: number; tx: number }, options: { stale?: boolean; reason?: string } = {}): this {
    const s = this.sessions.get(key);
    if (!s) throw new Error(`scripted plugin: no session ${key}`);
    this.reportEnded({ ...s, ...(final ?? {}) }, options.reason);
    if (!options.stale) this.sessions.delete(key);
    return this;
  }

  /** Reports an ended session the listing never showed (it began and ended between polls). */
  reportEnded(s: ScriptedSession, reason = 'client disconnected'): void {
    this.ctx.sessionEnded({ session: this.toLive({ connectedAt: 1_700_000_000, ...s }), reason });
  }

  /** The next polls answer these, in order (an Error makes that poll fail). */
  replay(...steps: Array<SessionPoll | Error>): this {
    this.queued.push(...steps);
    return this;
  }

  /** The next `n` polls fail (node unreachable). */
  failPolls(n: number, message = 'node unreachable'): this {
    for (let i = 0; i < n; i++) this.failures.push(new Error(message));
    return this;
  }

  authorize(username: string, password?: string): Promise<AuthorizeResult> {
    return this.ctx.authorize({ username, password, protocol: this.protocol, serverId: this.serverId });
  }

  async availability(): Promise<Availability> {
    return this.available;
  }
  async apply(state: DesiredState): Promise<void> {
    if (this.applyFailure) throw this.applyFailure;
    this.applied.push(state);
    // A user no longer listed loses its sessions (a removed peer, a user OpenVPN cuts on sync).
    const allowed = new Set(state.users.map((u) => u.username));
    for (const [key, s] of [...this.sessions]) if (!allowed.has(s.username)) this.sessions.delete(key);
  }
  async stop(): Promise<void> {}
  async renderClientConfig(user: ClientUser, endpoints: readonly ClientEndpoint[]): Promise<string> {
    this.rendered.push({ user, endpoints });
    if (this.renderFailure) throw this.renderFailure;
    return `# ${this.protocol} config of ${user.username}\n${endpoints.map((e) => `remote ${e.host} ${e.port} ${e.protocol}`).join('\n')}\n`;
  }
  async customerFacts(): Promise<CustomerFact[]> {
    if (this.facts instanceof Error) throw this.facts;
    return this.facts;
  }
  async ports(): Promise<PortNeed[]> {
    return (this.applied.at(-1)?.listeners ?? []).map((l) => ({ ...l, purpose: `scripted ${this.protocol}` }));
  }

  async pollSessions(): Promise<SessionPoll> {
    this.polls++;
    const failure = this.failures.shift();
    if (failure) throw failure;
    const next = this.queued.shift();
    if (next instanceof Error) throw next;
    if (next) return next;
    if (this.options.file) {
      const data = JSON.parse(readFileSync(this.options.file, 'utf8')) as { sessions: ScriptedSession[] };
      this.sessions.clear();
      this.set(...data.sessions);
    }
    if (this.options.text) return this.asText(this.options.text.format, this.options.text.scope);
    return { kind: 'sessions', sessions: [...this.sessions.values()].map((s) => this.toLive(s)) };
  }

  async disconnect(target: { username: string } | { sessionKey: string }): Promise<void> {
    this.disconnects.push(target);
    if (!this.honorDisconnect) return;
    for (const [key, s] of [...this.sessions]) {
      const hit = 'username' in target ? s.username === target.username : this.pluginKeyOf(key) === target.sessionKey;
      if (!hit) continue;
      this.sessions.delete(key);
      if (this.reportEndOnDisconnect) this.reportEnded(s, 'cut by the panel');
    }
  }

  /** The key the engine uses in `disconnect({ sessionKey })` for a scripted session. */
  pluginKeyOf(key: string): string {
    return this.options.text ? `${this.options.text.scope}:${key}` : key;
  }

  private toLive(s: ScriptedSession): LiveSession {
    return {
      sessionKey: this.pluginKeyOf(s.key),
      username: s.username,
      protocol: this.protocol,
      serverId: this.serverId,
      remoteAddress: s.remoteAddress ?? '198.51.100.7:5000',
      connectedAt: s.connectedAt ?? 1_700_000_000,
      rxBytes: s.rx,
      txBytes: s.tx,
    };
  }

  /** Renders the sessions the way the real daemon's status interface would. */
  private asText(format: StatusFormat, scope: string): SessionPoll {
    const list = [...this.sessions.values()];
    let text: string;
    if (format === 'openvpn-status3') {
      const lines = [
        'TITLE\tOpenVPN 2.6.9 x86_64-pc-linux-gnu',
        'TIME\t2026-06-01 12:00:00\t1780315200',
        'HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher',
        ...list.map(
          (s) =>
            `CLIENT_LIST\t${s.username}\t${s.remoteAddress ?? '198.51.100.7:5000'}\t10.8.0.2\t\t${s.rx}\t${s.tx}\t2026-06-01 11:00:00\t${s.connectedAt ?? 1_700_000_000}\t${s.username}\t${s.key}\t0\tAES-256-GCM`,
        ),
        'HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name\tReal Address\tLast Ref\tLast Ref (time_t)',
        'GLOBAL_STATS\tMax bcast/mcast queue length\t0',
        'END',
      ];
      text = lines.join('\n') + '\n';
    } else if (format === 'ocserv-json') {
      text = JSON.stringify(
        list.map((s) => ({ ID: Number(s.key), Username: s.username, 'Remote IP': (s.remoteAddress ?? '198.51.100.7').split(':')[0], RX: String(s.rx), TX: String(s.tx), raw_connected_at: s.connectedAt ?? 1_700_000_000 })),
      );
    } else {
      throw new Error(`scripted plugin: ${format} is not scripted`);
    }
    return { kind: 'status-text', format, texts: [{ scope, text }] };
  }
}

/** A plugin definition whose instances are ScriptedPlugins (handed to `onCreate`). */
export function scriptedPluginDefinition(protocol: ProtocolId, onCreate: (p: ScriptedPlugin) => void, options: ScriptedPluginOptions = {}): ProtocolPluginDefinition<Record<string, never>> {
  return defineProtocolPlugin({
    id: protocol,
    apiVersion: '2.0',
    capabilities: scriptedCapabilities(options),
    configSchema: z.object({}) as unknown as z.ZodType<Record<string, never>>,
    create: (ctx) => {
      const p = new ScriptedPlugin(ctx as PluginContext<unknown>, protocol, options);
      onCreate(p);
      return p;
    },
  });
}

/** Registers a scripted plugin for (protocol, serverId) and returns it. */
export async function addScriptedPlugin(registry: PluginRegistry, protocol: ProtocolId, serverId: string, options: ScriptedPluginOptions = {}): Promise<ScriptedPlugin> {
  let created: ScriptedPlugin | undefined;
  await registry.add(
    scriptedPluginDefinition(protocol, (p) => (created = p), options),
    { serverId, host: new LocalHost({ id: serverId }), stateDir: '/nonexistent-polygate-test/plugins' },
  );
  if (!created) throw new Error('scripted plugin was not created');
  return created;
}
