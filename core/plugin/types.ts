import type { z } from 'zod';
import type { Host } from '../hosts/host';
import type { Logger } from '../logger';

/** Protocol identifiers as they appear in the API (`enable_openvpn`, `enable_l2tp`, …). */
export type ProtocolId = 'openvpn' | 'l2tp' | 'cisco' | 'wireguard';

/** Version of this interface; a plugin built for another major version is refused at load. */
export const PLUGIN_API_VERSION = 1;

/** One live connection as the VPN daemon reports it. Counters are cumulative since it began. */
export interface LiveSession {
  /** Unique per connection (not per user): a reconnect gets a new key or a new `connectedAt`. */
  sessionKey: string;
  username: string;
  protocol: ProtocolId;
  serverId: string;
  remoteAddress: string;
  /** Unix seconds. */
  connectedAt: number;
  /** Bytes the server received from the client (the user's upload). */
  rxBytes: number;
  /** Bytes the server sent to the client (the user's download). */
  txBytes: number;
}

/** Raw status text formats the native accounting addon parses in one call. */
export type StatusFormat = 'openvpn-status3' | 'wg-dump' | 'ocserv-json';

/**
 * What a plugin hands the accounting engine each tick: either parsed sessions, or the
 * daemon's raw status text so the native addon can parse it without building JS objects.
 */
export type SessionPoll =
  | { kind: 'sessions'; sessions: LiveSession[] }
  | {
      kind: 'status-text';
      format: StatusFormat;
      text: string;
      /** Prefix that makes the daemon's own connection ids unique across servers/instances. */
      scope: string;
      protocol: ProtocolId;
      serverId: string;
      /** WireGuard reports public keys, not names: key → username. */
      peerNames?: ReadonlyMap<string, string>;
    };

/** A session that ended, with its final counters, pushed by the plugin when the daemon reports it. */
export interface SessionEnded {
  session: LiveSession;
  reason: string;
}

/** The verdict core gives a plugin that asks whether a connection may proceed. */
export type AuthorizeResult = { allowed: true } | { allowed: false; reason: string };

export interface AuthorizeRequest {
  username: string;
  password?: string;
  protocol: ProtocolId;
  serverId: string;
}

/** The desired state of one protocol on one host; plugins make the daemon match it exactly. */
export interface DesiredUser {
  username: string;
  password?: string;
  /** Any per-protocol material core stores for the plugin (e.g. WireGuard keys and address). */
  material?: Record<string, string>;
}

export interface PortNeed {
  port: number;
  protocol: 'tcp' | 'udp';
  purpose: string;
}

export type Availability = { available: true } | { available: false; reason: string };

/** What core gives a plugin instance. */
export interface PluginContext<Config> {
  host: Host;
  config: Config;
  logger: Logger;
  /** Directory on the host where the plugin keeps its files. */
  stateDir: string;
  /** Core decides every connection; plugins call this from their daemon's auth hook. */
  authorize(request: AuthorizeRequest): Promise<AuthorizeResult>;
  /** Plugins report ended sessions (with final counters) here as soon as the daemon says so. */
  sessionEnded(ended: SessionEnded): void;
}

/**
 * One protocol on one host. Every operation is idempotent and declarative.
 *
 * @example
 * export default defineProtocolPlugin({
 *   id: 'openvpn', apiVersion: 1, configSchema: z.object({}),
 *   create: (ctx) => new OpenVpnInstance(ctx),
 * });
 */
export interface ProtocolPluginInstance {
  availability(): Promise<Availability>;
  /** Install/prepare files and start the daemon(s); safe to call again. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Make the daemon allow exactly these users (others are removed and cut). */
  syncUsers(users: readonly DesiredUser[]): Promise<void>;
  ports(): Promise<PortNeed[]>;
  pollSessions(): Promise<SessionPoll>;
  /** Cut every session of a user, or one session by key. */
  disconnect(target: { username: string } | { sessionKey: string }): Promise<void>;
  /** Listen on exactly these ports (protocols whose listeners come from the ports table). */
  setListeners?(listeners: readonly ListenerSpec[]): Promise<void>;
  /** Replace a user's per-protocol credentials (certificates) after a revoke; old ones stop working. */
  renewCredentials?(username: string): Promise<void>;
  /** A client configuration file for the user, dialing these endpoints. */
  renderClientConfig?(username: string, endpoints: readonly ClientEndpoint[]): Promise<string>;
}

export interface ListenerSpec {
  port: number;
  protocol: 'tcp' | 'udp';
}

export interface ClientEndpoint {
  host: string;
  port: number;
  protocol: 'tcp' | 'udp';
}

export interface ProtocolPluginDefinition<Config = unknown> {
  id: ProtocolId;
  apiVersion: number;
  configSchema: z.ZodType<Config>;
  create(ctx: PluginContext<Config>): ProtocolPluginInstance;
}

/** Identity helper that gives plugin authors type inference. */
export function defineProtocolPlugin<Config>(definition: ProtocolPluginDefinition<Config>): ProtocolPluginDefinition<Config> {
  return definition;
}
