import type { z } from 'zod';
import type { Host } from '../hosts/host';
import type { Logger } from '../logger';
import type { ProtocolId, Transport } from '../protocols/table';

export type { ProtocolId, Transport } from '../protocols/table';

/**
 * Version of this interface, `major.minor`. A plugin declares the version it was built for;
 * core loads it when the majors are equal and the plugin's minor is not newer than core's
 * (minors only ever add optional members).
 */
export const PLUGIN_API_VERSION = '2.0';

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

export type { StatusFormat } from '../protocols/status-formats';
import type { StatusFormat } from '../protocols/status-formats';

/** One daemon's status text; `scope` makes its connection ids unique across the plugin's daemons. */
export interface StatusText {
  scope: string;
  text: string;
}

/**
 * What a plugin hands the accounting engine each tick: either parsed sessions, or its daemons'
 * raw status texts so the native addon parses them without building JS objects. A plugin
 * always answers in the form its `capabilities.poll` declares.
 */
export type SessionPoll =
  | { kind: 'sessions'; sessions: LiveSession[] }
  | {
      kind: 'status-text';
      format: StatusFormat;
      /** One entry per daemon (an OpenVPN process per listener, a WireGuard interface…). */
      texts: StatusText[];
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

/** One user in the desired state of one protocol on one host. */
export interface DesiredUser {
  username: string;
  /** The protocol's password (plain text), when it has one. */
  password?: string;
  /**
   * The protocol's per-user material core keeps (the protocol table names it), e.g.
   * WireGuard's `publicKey` and `address`. Only public parts reach a server.
   */
  material: Readonly<Record<string, string>>;
  /**
   * For a plugin that does not gate logins: how many sessions its daemon may let this user
   * hold at once — `max_clients` less the user's connections on every other protocol and
   * server. Absent when unlimited. Daemons that can cap per-user sessions themselves (ocserv's
   * `max-same-clients`) close the window between two logins and the next tick.
   */
  maxSessions?: number;
}

/** Server-wide settings a plugin may declare it needs (`capabilities.settings`). */
export type ServerSettingKey = 'ipsec_psk' | 'pki_crl';

export interface ListenerSpec {
  port: number;
  protocol: Transport;
}

/**
 * Everything one plugin instance must make its host match, computed by core. Plugins make
 * the daemon equal to it: add what is missing, remove (and cut) what is not listed, change
 * nothing else. Calling `apply` twice with the same state changes nothing the second time.
 */
export interface DesiredState {
  /**
   * For a plugin that gates logins: every user entitled to the protocol on this server (the
   * daemon asks `authorize` for the rest). Otherwise: exactly the users allowed to connect
   * *now* (not disabled, expired, over a limit or over `max_clients`).
   */
  users: readonly DesiredUser[];
  /** Ports to listen on (only for plugins with `capabilities.takesListeners`). */
  listeners: readonly ListenerSpec[];
  /** Values of the settings the plugin declared (`capabilities.settings`). */
  settings: Readonly<Partial<Record<ServerSettingKey, string>>>;
}

export interface PortNeed {
  port: number;
  protocol: Transport;
  purpose: string;
}

export type Availability = { available: true } | { available: false; reason: string };

/** A certificate and its private key, PEM. */
export interface CertificateBundle {
  certificate: string;
  privateKey: string;
}

/**
 * The panel's one certificate authority. Its CA lives with the main server's data, so every
 * host's servers and every user's certificate chain to the same root and re-provisioning a
 * node invalidates nothing. Revoked certificates reach plugins as the `pki_crl` setting.
 */
export interface PluginPki {
  caCertificate(): Promise<string>;
  /** A server certificate for `commonName` (issued once, then the same until it nears expiry). */
  serverCertificate(commonName: string, options?: { dnsNames?: string[]; ipAddresses?: string[] }): Promise<CertificateBundle>;
  /** The user's client certificate: the same until the user is revoked or deleted. */
  clientCertificate(username: string): Promise<CertificateBundle>;
}

/** The plugin's view of time; tests drive it with a manual clock. */
export interface PluginClock {
  now(): Date;
}

/** What core gives a plugin instance. */
export interface PluginContext<Config> {
  host: Host;
  config: Config;
  logger: Logger;
  clock: PluginClock;
  /** The server this instance runs for: `main`, `node_3`. */
  serverId: string;
  /**
   * The address customers dial for this server (main: POLYGATE_PUBLIC_HOST or the public
   * URL's host; a node: its address), for server certificates and identities.
   */
  publicHost?: string;
  /** Directory on the host where the plugin keeps its files. */
  stateDir: string;
  /** IPv4 CIDR its clients' addresses come from (the protocol table's, or the operator's setting); the server masquerades it. */
  clientPool: string;
  pki: PluginPki;
  /** Core decides every connection; plugins that gate logins call this from their daemon's auth hook. */
  authorize(request: Omit<AuthorizeRequest, 'protocol' | 'serverId'> & Partial<AuthorizeRequest>): Promise<AuthorizeResult>;
  /**
   * Plugins report ended sessions (with final counters) here as soon as the daemon says so.
   * Resolves once the panel holds the event durably: only then may a plugin delete the record
   * its daemon's hook left on the host. Reporting the same session again is harmless (the
   * panel counts final minus what it counted already under the session key).
   */
  sessionEnded(ended: SessionEnded): Promise<void>;
}

/** A client configuration file a plugin renders (`capabilities.clientConfig`). */
export interface ClientConfigFormat {
  /** File name extension without the dot: `ovpn`, `conf`. */
  extension: string;
  mediaType: string;
  /** The config is small enough to import from a QR code (WireGuard's mobile apps do): the subscription page shows one. */
  qr?: boolean;
}

/**
 * What a plugin can do, declared once on its definition: core decides from this, never by
 * probing for methods.
 */
export interface PluginCapabilities {
  /** The daemon asks `ctx.authorize` at every login (OpenVPN's management interface). */
  gatesLogins: boolean;
  /** The plugin calls `ctx.sessionEnded` with final counters when a session ends. */
  reportsEndedSessions: boolean;
  /** The form of `pollSessions()` answers. */
  poll: StatusFormat | 'sessions';
  /** It listens on `DesiredState.listeners`. */
  takesListeners: boolean;
  /** Server settings it needs in `DesiredState.settings`. */
  settings: readonly ServerSettingKey[];
  /** It renders client configs (`renderClientConfig`). */
  clientConfig: ClientConfigFormat | null;
}

/** One endpoint a client dials. */
export interface ClientEndpoint {
  host: string;
  port: number;
  protocol: Transport;
}

/** Everything a client config needs about its user, including client-only material (private keys). */
export interface ClientUser {
  username: string;
  password?: string;
  material: Readonly<Record<string, string>>;
}

/**
 * One protocol on one host. Every operation is idempotent and declarative.
 *
 * @example
 * export default defineProtocolPlugin({
 *   id: 'wireguard', apiVersion: '2.0', configSchema: z.object({}),
 *   capabilities: { gatesLogins: false, reportsEndedSessions: false, poll: 'wg-dump', takesListeners: true, settings: [], clientConfig: { extension: 'conf', mediaType: 'text/plain' } },
 *   create: (ctx) => new WireGuardInstance(ctx),
 * });
 */
export interface ProtocolPluginInstance {
  availability(): Promise<Availability>;
  /**
   * Make the host match `state`: write files, start or reload daemons, add and remove users
   * (cutting removed users' sessions). Starts the daemon on first call; safe to call again.
   */
  apply(state: DesiredState): Promise<void>;
  /** Stop the daemons this instance started (the protocol or the node is removed). */
  stop(): Promise<void>;
  /**
   * The panel is shutting down or restarting: stop watching and polling but leave the daemons
   * and their sessions running, to be adopted by the next start. Without it, shutdown calls
   * `stop()` and the protocol's sessions are cut.
   */
  detach?(): Promise<void>;
  /** Every port the last applied state listens on, for the port registry and the firewall. */
  ports(): Promise<PortNeed[]>;
  pollSessions(): Promise<SessionPoll>;
  /** Cut every session of a user, or one session by key. */
  disconnect(target: { username: string } | { sessionKey: string }): Promise<void>;
  /** A client configuration file for the user dialing these endpoints (only with `capabilities.clientConfig`). */
  renderClientConfig?(user: ClientUser, endpoints: readonly ClientEndpoint[]): Promise<string>;
  /**
   * Public facts a customer needs about this server besides its address and their own
   * credentials — what a client asks to trust it (ocserv's certificate pin, an IKEv2 server
   * identity). Shown on the subscription page; never a secret.
   */
  customerFacts?(): Promise<readonly CustomerFact[]>;
}

/** One value a customer copies into a client, under a stable key and an English label. */
export interface CustomerFact {
  key: string;
  label: string;
  value: string;
}

/** A program a plugin's daemon needs on its host, and where it comes from. */
export interface ProgramRequirement {
  /** Looked up on PATH and the sbin directories. */
  program: string;
  /** Places outside PATH where distributions install it (`/usr/lib/ipsec/charon`). */
  alsoAt?: readonly string[];
  /** Debian/Ubuntu packages that bring it and what it needs to work (charon's plugins). */
  debianPackages: readonly string[];
  /** Needed only while this kernel module is absent (wireguard-go stands in for it). */
  unlessKernelModule?: string;
}

export interface ProtocolPluginDefinition<Config = unknown> {
  id: ProtocolId;
  /** `major.minor` of the plugin API it was built for, e.g. `2.0`. */
  apiVersion: string;
  capabilities: PluginCapabilities;
  /**
   * What its daemon needs installed, for `polygate doctor` and for provisioning nodes (one
   * list, the plugin's: a new protocol brings its own).
   */
  requirements?: readonly ProgramRequirement[];
  configSchema: z.ZodType<Config>;
  create(ctx: PluginContext<Config>): ProtocolPluginInstance;
}

/** Identity helper that gives plugin authors type inference. */
export function defineProtocolPlugin<Config>(definition: ProtocolPluginDefinition<Config>): ProtocolPluginDefinition<Config> {
  return definition;
}
