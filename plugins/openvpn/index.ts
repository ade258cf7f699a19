import { createHash, timingSafeEqual } from 'node:crypto';
import path from 'node:path';
import { z } from 'zod';
import { invalid, notFound, unavailable } from '../../core';
import {
  defineProtocolPlugin,
  type Availability,
  type ClientEndpoint,
  type DesiredUser,
  type ListenerSpec,
  type LiveSession,
  type PluginContext,
  type PortNeed,
  type ProtocolPluginInstance,
  type SessionPoll,
} from '../../core';
import { ManagementClient, type ConnectRequest } from './management';
import { Pki } from './pki';
import { renderClientProfile, renderServerConfig, type ClientRemote } from './render';
import { openVpnScope, openVpnSessionKey, parseStatus3, sessionsFromStatus3, type Status3Client } from './status';
import { ProcessSupervisor } from '../../core';
import { USERNAME_RE, assertHost, assertIp, assertPort, assertProto, assertSafePath, nthSubnet, parseIpv4Subnet } from './validate';

export { ManagementClient, ManagementParser, sanitizeReason } from './management';
export { Pki, parseIndex } from './pki';
export { renderClientProfile, renderServerConfig } from './render';
export { parseStatus3, sessionsFromStatus3, openVpnScope, openVpnSessionKey } from './status';
export { ProcessSupervisor } from '../../core';

/** Plugin settings; every field has a default, so `{}` is a valid configuration. */
export const openVpnConfigSchema = z.object({
  /** Server id used in scopes, session keys and authorize requests; default: the host's id (`main`, `node_3`). */
  serverId: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).optional(),
  /** Client subnets of instances without an explicit one are carved from here, one per instance. */
  subnetPool: z.string().default('10.8.0.0/16'),
  instancePrefix: z.number().int().min(16).max(29).default(24),
  /** Clients send username + password besides their certificate. */
  passwordAuth: z.boolean().default(true),
  redirectGateway: z.boolean().default(false),
  dns: z.array(z.string()).default([]),
  maxClients: z.number().int().min(1).max(65535).optional(),
  keepaliveInterval: z.number().int().min(1).max(3600).default(10),
  keepaliveTimeout: z.number().int().min(2).max(7200).default(60),
  /** `>BYTECOUNT_CLI` interval: keeps the last known counters of live sessions fresh for when a server dies. 0 = off. */
  bytecountIntervalSec: z.number().int().min(0).max(3600).default(5),
  caCommonName: z.string().default('polygate-ca'),
  serverCommonName: z.string().default('polygate-server'),
  /** Default `remote` host of client profiles. */
  publicHost: z.string().optional(),
  openvpnPath: z.string().default('openvpn'),
  opensslPath: z.string().default('openssl'),
  restartInitialMs: z.number().int().min(10).max(60_000).default(1_000),
  restartMaxMs: z.number().int().min(100).max(600_000).default(30_000),
  managementTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
  /** How long start() waits for each instance's management interface. */
  startTimeoutMs: z.number().int().min(100).max(600_000).default(20_000),
  dco: z.boolean().default(false),
  verb: z.number().int().min(0).max(11).default(3),
});

export type OpenVpnConfig = z.infer<typeof openVpnConfigSchema>;

/** One listener: one OpenVPN process. */
export interface OpenVpnInstanceSpec {
  port: number;
  proto: 'udp' | 'tcp';
  /** IPv4 CIDR of its client pool; default: the next free network of `subnetPool`. */
  subnet?: string;
  /** Bind address; default all. */
  local?: string;
}

interface TrackedSession {
  cid: number;
  username: string;
  remoteAddress: string;
  connectedAt: number;
  rx: number;
  tx: number;
}

interface Instance {
  key: string;
  spec: Required<Pick<OpenVpnInstanceSpec, 'port' | 'proto' | 'subnet'>> & Pick<OpenVpnInstanceSpec, 'local'>;
  index: number;
  device: string;
  scope: string;
  confPath: string;
  socketPath: string;
  supervisor: ProcessSupervisor;
  management: ManagementClient;
  sessions: Map<number, TrackedSession>;
}

const instanceKey = (port: number, proto: string) => `${port}${proto}`;
/** OpenVPN drops a halted client after 5 s; a repeated cut within this window is skipped. */
const HALT_GRACE_MS = 10_000;
/** Linux limit for a unix socket path (sun_path) including the NUL. */
const MAX_SOCKET_PATH = 107;

/**
 * OpenVPN on one host: one supervised `openvpn` process per (port, protocol), each with a
 * management connection that decides every login (certificate CN = username, password
 * from syncUsers, then core's authorize), reports ended sessions with their final
 * counters, and answers `status 3` for accounting.
 *
 * @example
 * const vpn = openvpnPlugin.create(ctx) as OpenVpnPlugin;
 * await vpn.setInstances([{ port: 1194, proto: 'udp' }]);
 * await vpn.syncUsers([{ username: 'alice', password: 's3cret' }]);
 * await vpn.start();
 * const profile = await vpn.clientProfile('alice', [{ host: 'vpn.example.com', port: 1194, proto: 'udp' }]);
 */
export class OpenVpnPlugin implements ProtocolPluginInstance {
  readonly pki: Pki;
  private readonly halting = new Map<string, number>();
  readonly serverId: string;
  private readonly config: OpenVpnConfig;
  private readonly stateDir: string;
  private desired = new Map<string, OpenVpnInstanceSpec>();
  private readonly running = new Map<string, Instance>();
  private users = new Map<string, DesiredUser>();
  private started = false;
  /** Serializes start/stop/setInstances so reconciliation never interleaves. */
  private lock: Promise<unknown> = Promise.resolve();

  constructor(private readonly ctx: PluginContext<OpenVpnConfig>) {
    this.config = ctx.config;
    this.stateDir = assertSafePath(ctx.stateDir, 'OpenVPN state directory');
    this.serverId = this.config.serverId ?? ctx.host.id;
    parseIpv4Subnet(this.config.subnetPool, 'subnetPool');
    for (const d of this.config.dns) assertIp(d, 'dns');
    if (this.config.publicHost !== undefined) assertHost(this.config.publicHost, 'publicHost');
    this.pki = new Pki({
      host: ctx.host,
      dir: path.posix.join(this.stateDir, 'pki'),
      caCommonName: this.config.caCommonName,
      serverCommonName: this.config.serverCommonName,
      opensslPath: this.config.opensslPath,
      openvpnPath: this.config.openvpnPath,
    });
  }

  async availability(): Promise<Availability> {
    const { host } = this.ctx;
    const missing: string[] = [];
    const probe = async (argv: string[], expect: RegExp) => {
      try {
        const r = await host.run(argv, { timeoutMs: 15_000 });
        if (!expect.test(r.stdout + r.stderr)) missing.push(`${argv[0]} did not answer ${argv.slice(1).join(' ')} (code ${r.code})`);
      } catch (e) {
        missing.push((e as Error).message);
      }
    };
    await probe([this.config.openvpnPath, '--version'], /OpenVPN 2\.\d/);
    await probe([this.config.opensslPath, 'version'], /SSL/);
    if (!(await host.exists('/dev/net/tun').catch(() => false))) missing.push(`/dev/net/tun does not exist on ${host.id}`);
    return missing.length ? { available: false, reason: missing.join('; ') } : { available: true };
  }

  /**
   * Declares the listeners (one OpenVPN process each). When running, processes are started,
   * stopped or restarted (subnet/bind changed) to match; unchanged ones are left alone.
   */
  async setInstances(specs: readonly OpenVpnInstanceSpec[]): Promise<void> {
    const next = new Map<string, OpenVpnInstanceSpec>();
    for (const [i, s] of specs.entries()) {
      const port = assertPort(s?.port, `instances[${i}].port`);
      const proto = assertProto(s?.proto);
      const key = instanceKey(port, proto);
      if (next.has(key)) throw invalid(`instance ${port}/${proto} is listed twice`);
      if (s.subnet !== undefined) parseIpv4Subnet(s.subnet, `instances[${i}].subnet`);
      if (s.local !== undefined) assertIp(s.local, `instances[${i}].local`);
      next.set(key, { port, proto, subnet: s.subnet, local: s.local });
    }
    await this.serialized(async () => {
      this.desired = next;
      if (this.started) await this.reconcile();
    });
  }

  /** Same as syncUsers (the name the daemon wiring may prefer). */
  setUsers(users: readonly DesiredUser[]): Promise<void> {
    return this.syncUsers(users);
  }

  /**
   * The users who may connect (with their passwords when passwordAuth is on). Live
   * sessions of anyone else are cut. Usernames OpenVPN cannot carry are skipped with a warning.
   */
  async syncUsers(users: readonly DesiredUser[]): Promise<void> {
    const next = new Map<string, DesiredUser>();
    for (const u of users) {
      if (!u || typeof u.username !== 'string' || !USERNAME_RE.test(u.username)) {
        this.ctx.logger.warn({ username: u?.username }, 'user skipped: the name cannot be an OpenVPN certificate CN');
        continue;
      }
      next.set(u.username, { username: u.username, password: u.password });
    }
    // From now on every login and renegotiation is decided against this set.
    this.users = next;
    // Connections still authenticating are decided by the new set anyway.
    await this.cutWhere((c) => c.virtualAddress !== '' && !next.has(c.commonName), 'cutting removed users');
  }

  start(): Promise<void> {
    return this.serialized(async () => {
      await this.pki.ensureServer();
      this.started = true;
      await this.reconcile();
    });
  }

  stop(): Promise<void> {
    return this.serialized(async () => {
      this.started = false;
      await Promise.all([...this.running.values()].map((inst) => this.stopInstance(inst)));
    });
  }

  async ports(): Promise<PortNeed[]> {
    return [...this.desired.values()].map((s) => ({ port: s.port, protocol: s.proto, purpose: `OpenVPN ${s.port}/${s.proto}` }));
  }

  /**
   * One instance: its raw `status 3` text (`kind: 'status-text'`, scope `<serverId>:<port><proto>`,
   * session key `<scope>:<Client ID>`), for the native parser. Several instances: SessionPoll
   * carries one text with one scope, so the texts are parsed here (status.ts) and returned as
   * `kind: 'sessions'`. Rows still authenticating (no virtual address) are not sessions.
   */
  async pollSessions(): Promise<SessionPoll> {
    const texts = await this.pollStatusTexts();
    if (texts.length === 1) {
      return { kind: 'status-text', format: 'openvpn-status3', text: texts[0]!.text, scope: texts[0]!.scope, protocol: 'openvpn', serverId: this.serverId };
    }
    const sessions: LiveSession[] = [];
    for (const t of texts) sessions.push(...sessionsFromStatus3(t.text, t.scope, this.serverId));
    return { kind: 'sessions', sessions };
  }

  /** Raw `status 3` of every running instance with its scope. Rejects if any instance cannot answer. */
  async pollStatusTexts(): Promise<Array<{ scope: string; text: string }>> {
    const list = [...this.running.values()];
    return Promise.all(list.map(async (inst) => ({ scope: inst.scope, text: await inst.management.status3() })));
  }

  /**
   * Cuts every session of a user, or one session, with `client-kill <cid> HALT`: the client
   * is told to exit rather than reconnect, and the session ends (DISCONNECT with final
   * counters → ctx.sessionEnded) within a few seconds. The user's sessions are looked up in
   * `status 3`, so sessions established before a management reconnect are found too.
   */
  async disconnect(target: { username: string } | { sessionKey: string }): Promise<void> {
    if ('username' in target) {
      if (typeof target.username !== 'string' || !USERNAME_RE.test(target.username)) throw invalid(`username must match ${USERNAME_RE.source}`);
      await this.cutWhere((c) => c.commonName === target.username, `disconnect ${target.username}`);
      return;
    }
    const m = /^(.*):(\d{1,15})$/.exec(String(target.sessionKey));
    const inst = m ? [...this.running.values()].find((i) => i.scope === m[1]) : undefined;
    if (!m || !inst) throw notFound(`no OpenVPN session ${JSON.stringify(target.sessionKey)} on ${this.serverId}`);
    await this.halt(inst, Number(m[2]));
  }

  /**
   * OpenVPN answers `client-kill … HALT` with "Delayed exit in 5 seconds", and a second kill
   * of the same client starts that delay again: callers that repeat a cut until it is
   * confirmed would keep the session alive. So a client halted recently is not halted again.
   */
  private async halt(inst: Instance, cid: number): Promise<void> {
    const now = Date.now();
    for (const [k, at] of this.halting) if (now - at > HALT_GRACE_MS) this.halting.delete(k);
    const key = `${inst.key}:${inst.supervisor.pid ?? 0}:${cid}`;
    if (this.halting.has(key)) return;
    this.halting.set(key, now);
    await inst.management.killClient(cid, 'HALT');
  }

  /** client-kill HALT every connection in `status 3` that matches. */
  private async cutWhere(match: (row: Status3Client) => boolean, what: string): Promise<void> {
    const errors: string[] = [];
    for (const inst of [...this.running.values()]) {
      try {
        const rows = parseStatus3(await inst.management.status3()).clients.filter((c) => match(c) && /^\d+$/.test(c.clientId));
        for (const row of rows) await this.halt(inst, Number(row.clientId));
      } catch (e) {
        errors.push(`${inst.key}: ${(e as Error).message}`);
      }
    }
    if (errors.length) throw unavailable(`${what} on ${this.serverId} failed on ${errors.join('; ')}`);
  }

  setListeners(listeners: readonly ListenerSpec[]): Promise<void> {
    return this.setInstances(listeners.map((l) => ({ port: l.port, proto: l.protocol })));
  }

  async renewCredentials(username: string): Promise<void> {
    await this.reissueClient(username);
  }

  renderClientConfig(username: string, endpoints: readonly ClientEndpoint[]): Promise<string> {
    return this.clientProfile(username, endpoints.map((e) => ({ host: e.host, port: e.port, proto: e.protocol })));
  }

  /** A complete `.ovpn` for the user (issues the certificate on first use). */
  async clientProfile(username: string, remotes?: readonly ClientRemote[]): Promise<string> {
    const list =
      remotes ??
      (this.config.publicHost !== undefined ? [...this.desired.values()].map((s) => ({ host: this.config.publicHost!, port: s.port, proto: s.proto })) : []);
    if (list.length === 0) throw invalid('no remotes for the profile: pass them or set publicHost and instances');
    const material = await this.pki.clientMaterial(username);
    return renderClientProfile({
      remotes: list,
      caPem: material.caPem,
      certPem: material.certPem,
      keyPem: material.keyPem,
      tlsCryptKey: await this.pki.tlsCryptKey(),
      serverCommonName: this.pki.serverCommonName,
      passwordAuth: this.config.passwordAuth,
      title: `${username} @ ${this.serverId}`,
    });
  }

  /** New certificate for the user; the old one is revoked (OpenVPN re-reads the CRL on each connection) and live sessions are cut. */
  async reissueClient(username: string) {
    const issued = await this.pki.reissueClient(username);
    await this.disconnect({ username }).catch((e: Error) => this.ctx.logger.warn({ username, err: e.message }, 'cutting sessions after reissue failed'));
    return issued;
  }

  /** Revokes the user's certificate and cuts live sessions. */
  async revokeClient(username: string): Promise<number> {
    const n = await this.pki.revokeClient(username);
    await this.disconnect({ username }).catch((e: Error) => this.ctx.logger.warn({ username, err: e.message }, 'cutting sessions after revoke failed'));
    return n;
  }

  /** Running instances (for tests and /health): key, pid, management state. */
  describe(): Array<{ key: string; scope: string; device: string; subnet: string; pid: number | undefined; managementConnected: boolean; restarts: number; socketPath: string; confPath: string }> {
    return [...this.running.values()].map((i) => ({
      key: i.key,
      scope: i.scope,
      device: i.device,
      subnet: i.spec.subnet,
      pid: i.supervisor.pid,
      managementConnected: i.management.connected,
      restarts: i.supervisor.restarts,
      socketPath: i.socketPath,
      confPath: i.confPath,
    }));
  }

  // ---- internals ----

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  private async reconcile(): Promise<void> {
    // Stop what is gone or changed first, so ports, devices and subnets are free again.
    for (const inst of [...this.running.values()]) {
      const want = this.desired.get(inst.key);
      if (!want || (want.subnet !== undefined && want.subnet !== inst.spec.subnet) || want.local !== inst.spec.local) await this.stopInstance(inst);
    }
    const toStart: Instance[] = [];
    for (const [key, spec] of this.desired) {
      if (this.running.has(key)) continue;
      toStart.push(await this.createInstance(key, spec));
    }
    await Promise.all(toStart.map((inst) => inst.management.waitConnected(this.config.startTimeoutMs)));
  }

  private async createInstance(key: string, spec: OpenVpnInstanceSpec): Promise<Instance> {
    const used = new Set([...this.running.values()].map((i) => i.index));
    let index = 0;
    while (used.has(index)) index++;
    const subnet = spec.subnet ?? this.freeSubnet(index);
    this.checkOverlap(key, subnet);
    const scope = openVpnScope(this.serverId, spec.port, spec.proto);
    const runDir = path.posix.join(this.stateDir, 'run');
    const confDir = path.posix.join(this.stateDir, 'conf');
    const socketPath = path.posix.join(runDir, `${key}.sock`);
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) throw invalid(`management socket path ${socketPath} is longer than ${MAX_SOCKET_PATH} bytes; use a shorter state directory`);
    const confPath = path.posix.join(confDir, `server-${key}.conf`);
    const device = `pgtun${index}`;
    const paths = this.pki.paths;
    const configText = renderServerConfig({
      port: spec.port,
      proto: spec.proto,
      device,
      subnet,
      local: spec.local,
      managementSocket: socketPath,
      caPath: paths.caCert,
      certPath: paths.serverCert,
      keyPath: paths.serverKey,
      crlPath: paths.crl,
      tlsCryptPath: paths.tlsCrypt,
      passwordAuth: this.config.passwordAuth,
      managementHold: true,
      maxClients: this.config.maxClients,
      keepalive: { interval: this.config.keepaliveInterval, timeout: this.config.keepaliveTimeout },
      redirectGateway: this.config.redirectGateway,
      dns: this.config.dns,
      dco: this.config.dco,
      verb: this.config.verb,
    });
    const { host } = this.ctx;
    await host.mkdirp(runDir, 0o700);
    await host.mkdirp(confDir, 0o700);
    await host.writeFileAtomic(confPath, configText, 0o600);
    const logger = this.ctx.logger.child({ instance: key });
    const supervisor = new ProcessSupervisor({
      host,
      argv: [this.config.openvpnPath, '--config', confPath],
      name: `openvpn ${spec.port}/${spec.proto}`,
      logger,
      initialBackoffMs: this.config.restartInitialMs,
      maxBackoffMs: this.config.restartMaxMs,
      // A stale socket from a killed run would be connected to and refused.
      beforeStart: () => host.remove(socketPath),
    });
    const management = new ManagementClient({
      host,
      socketPath,
      logger,
      commandTimeoutMs: this.config.managementTimeoutMs,
      bytecountIntervalSec: this.config.bytecountIntervalSec,
    });
    const inst: Instance = {
      key,
      spec: { port: spec.port, proto: spec.proto, subnet, local: spec.local },
      index,
      device,
      scope,
      confPath,
      socketPath,
      supervisor,
      management,
      sessions: new Map(),
    };
    management.on('connect-request', (req) => void this.onConnectRequest(inst, req));
    management.on('established', ({ cid, env }) => {
      inst.sessions.set(cid, {
        cid,
        username: env.common_name ?? '',
        remoteAddress: env.trusted_ip ?? env.untrusted_ip ?? '',
        connectedAt: Number(env.time_unix) || Math.floor(Date.now() / 1000),
        rx: 0,
        tx: 0,
      });
    });
    management.on('bytecount', ({ cid, bytesReceived, bytesSent }) => {
      const s = inst.sessions.get(cid);
      if (s) {
        s.rx = bytesReceived;
        s.tx = bytesSent;
      }
    });
    management.on('disconnect', ({ cid, env, bytesReceived, bytesSent }) => {
      const tracked = inst.sessions.get(cid);
      inst.sessions.delete(cid);
      // Connections refused before they were established carry no counters: not sessions.
      const username = env.common_name ?? tracked?.username;
      if (bytesReceived === undefined || bytesSent === undefined || !username) return;
      this.ended(inst, {
        cid,
        username,
        remoteAddress: env.trusted_ip ?? tracked?.remoteAddress ?? '',
        connectedAt: Number(env.time_unix) || tracked?.connectedAt || 0,
        rx: bytesReceived,
        tx: bytesSent,
      }, 'disconnected');
    });
    // The process is gone: no DISCONNECT events will come for what was still live. Wait
    // until its management connection has closed, so DISCONNECTs it did send (on SIGTERM)
    // are handled first. A management reconnect alone (e.g. after a command timeout) is
    // not an exit: sessions go on and stay tracked.
    supervisor.on('exit', (exit) => {
      void waitFor(() => !management.connected, 2_000).then(() => this.flushSessions(inst, exit.requested ? 'server-stopped' : 'server-exit'));
    });
    this.running.set(key, inst);
    management.start();
    supervisor.start();
    return inst;
  }

  private async stopInstance(inst: Instance): Promise<void> {
    this.running.delete(inst.key);
    // SIGTERM first: OpenVPN reports DISCONNECT (final counters) for each client while the
    // management connection is still open.
    await inst.supervisor.stop();
    await waitFor(() => !inst.management.connected, 2_000);
    await inst.management.close();
    this.flushSessions(inst, 'server-stopped');
  }

  private async onConnectRequest(inst: Instance, req: ConnectRequest): Promise<void> {
    try {
      const verdict = await this.decide(req);
      if (verdict === null) await req.allow();
      else {
        this.ctx.logger.info({ instance: inst.key, cid: req.cid, cn: req.env.common_name, reason: verdict }, 'OpenVPN login refused');
        await req.deny(verdict);
      }
    } catch (e) {
      this.ctx.logger.error({ err: (e as Error).message, instance: inst.key }, 'deciding an OpenVPN login failed');
      await req.deny('internal error').catch(() => undefined);
    }
  }

  /** null = allowed; otherwise the reason for the server log (the client only sees AUTH_FAILED). */
  private async decide(req: ConnectRequest): Promise<string | null> {
    const cn = req.env.common_name ?? '';
    const username = req.env.username ?? '';
    const password = req.env.password ?? '';
    if (!USERNAME_RE.test(cn)) return 'certificate CN is not a valid username';
    if (this.config.passwordAuth ? username !== cn : username !== '' && username !== cn) return 'username does not match the certificate CN';
    const user = this.users.get(cn);
    if (!user) return 'unknown or disabled user';
    if (this.config.passwordAuth && (user.password === undefined || !sameSecret(password, user.password))) return 'bad credentials';
    const verdict = await this.ctx.authorize({
      username: cn,
      password: this.config.passwordAuth ? password : undefined,
      protocol: 'openvpn',
      serverId: this.serverId,
    });
    return verdict.allowed ? null : verdict.reason;
  }

  private ended(inst: Instance, s: TrackedSession, reason: string): void {
    this.ctx.sessionEnded({
      session: {
        sessionKey: openVpnSessionKey(inst.scope, s.cid),
        username: s.username,
        protocol: 'openvpn',
        serverId: this.serverId,
        remoteAddress: s.remoteAddress,
        connectedAt: s.connectedAt,
        rxBytes: s.rx,
        txBytes: s.tx,
      },
      reason,
    });
  }

  /** Reports every tracked session as ended with its last known counters (from bytecount). */
  private flushSessions(inst: Instance, reason: string): void {
    const list = [...inst.sessions.values()];
    inst.sessions.clear();
    for (const s of list) this.ended(inst, s, reason);
  }

  private freeSubnet(index: number): string {
    // Skip networks explicitly taken by other instances.
    for (let i = index; ; i++) {
      const candidate = nthSubnet(this.config.subnetPool, this.config.instancePrefix, i);
      if (![...this.desired.values()].some((s) => s.subnet !== undefined && overlaps(s.subnet, candidate))
        && ![...this.running.values()].some((r) => overlaps(r.spec.subnet, candidate))) return candidate;
    }
  }

  private checkOverlap(key: string, subnet: string): void {
    for (const r of this.running.values()) {
      if (r.key !== key && overlaps(r.spec.subnet, subnet)) throw invalid(`subnet ${subnet} overlaps ${r.spec.subnet} of instance ${r.key}`);
    }
  }
}

function overlaps(a: string, b: string): boolean {
  const range = (c: string) => {
    const s = parseIpv4Subnet(c);
    const start = s.network.split('.').reduce((acc, p) => acc * 256 + Number(p), 0);
    return [start, start + 2 ** (32 - s.prefix) - 1] as const;
  };
  const [a0, a1] = range(a);
  const [b0, b1] = range(b);
  return a0 <= b1 && b0 <= a1;
}

/** Constant-time comparison of two secrets of any length. */
function sameSecret(given: string, expected: string): boolean {
  const h = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(h(given), h(expected));
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
}

/** The OpenVPN protocol plugin. `create()` returns an {@link OpenVpnPlugin}. */
const openvpnPlugin = defineProtocolPlugin<OpenVpnConfig>({
  id: 'openvpn',
  apiVersion: 1,
  configSchema: openVpnConfigSchema,
  create: (ctx) => new OpenVpnPlugin(ctx),
});

export default openvpnPlugin;
