import path from 'node:path';
import net from 'node:net';
import { z } from 'zod';
import {
  AvailabilityProbe,
  assertTransport,
  defineProtocolPlugin,
  EndedRecordFolder,
  freeSubnet,
  invalid,
  notFound,
  ProcessSupervisor,
  supervisorBackoffConfig,
  runChecked,
  sameSecret,
  SerialLock,
  subnetsOverlap,
  unavailable,
  USERNAME_PATTERN,
  type Availability,
  type ClientEndpoint,
  type ClientUser,
  type DesiredState,
  type DesiredUser,
  type PluginCapabilities,
  type PluginContext,
  type PortNeed,
  type ProtocolPluginInstance,
  type SessionEnded,
  type SessionPoll,
} from '../../core';
import { ManagementClient, type ConnectRequest } from './management';
import { renderClientProfile, renderServerConfig, type ClientRemote } from './render';
import {
  DISCONNECT_HOOK_SCRIPT,
  ENDED_RECORD_NAME_RE,
  openVpnSessionId,
  parseClientList,
  parseEndedRecord,
  parseOpenVpnSessionKey,
  withSessionIds,
  type StatusRow,
} from './status';
import { assertCommonName, assertHost, assertIp, assertPort, assertSafePath, parseIpv4Subnet } from './validate';

export { ManagementClient, ManagementParser, sanitizeReason } from './management';
export { renderClientProfile, renderServerConfig } from './render';
export { DISCONNECT_HOOK_SCRIPT, openVpnSessionId, parseClientList, parseEndedRecord, parseOpenVpnSessionKey, withSessionIds } from './status';

/** Plugin settings; every field has a default, so `{}` is a valid configuration. */
export const openVpnConfigSchema = z.object({
  /** Client subnets are carved from here, one per instance; default: the pool core hands over (`ctx.clientPool`). */
  subnetPool: z.string().optional(),
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
  /** CN of this server's certificate (clients check it with `verify-x509-name`); default `openvpn.<serverId>`. */
  serverCommonName: z.string().optional(),
  /** Default `remote` host of client profiles; also put in the server certificate's SANs. */
  publicHost: z.string().optional(),
  openvpnPath: z.string().default('openvpn'),
  ...supervisorBackoffConfig,
  managementTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
  /** How long apply() waits for each new instance's management interface. */
  startTimeoutMs: z.number().int().min(100).max(600_000).default(20_000),
  dco: z.boolean().default(false),
  verb: z.number().int().min(0).max(11).default(3),
});

export type OpenVpnConfig = z.infer<typeof openVpnConfigSchema>;

/** What the OpenVPN plugin declares to core. */
export const OPENVPN_CAPABILITIES: PluginCapabilities = {
  gatesLogins: true,
  reportsEndedSessions: true,
  poll: 'openvpn-status3',
  takesListeners: true,
  settings: ['pki_crl'],
  clientConfig: { extension: 'ovpn', mediaType: 'application/x-openvpn-profile' },
};

/** One listener: one OpenVPN process. */
interface OpenVpnInstanceSpec {
  port: number;
  proto: 'udp' | 'tcp';
}

/** Files the server configs point at, in `<stateDir>/pki` on the plugin's host. */
interface MaterialPaths {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  crl: string;
  tlsCrypt: string;
}

/**
 * The session key of one OpenVPN connection: `<scope>:<epoch>:<virtual address>:<connected
 * since>` (see status.ts). The same in polls, in management DISCONNECTs and in the disconnect
 * hook's records; equal across a panel restart (the daemon is adopted, its epoch kept), new when
 * the daemon really restarts.
 */
export const openVpnSessionKey = (scope: string, epoch: string, virtualAddress: string, connectedSince: number): string =>
  `${scope}:${openVpnSessionId(epoch, virtualAddress, connectedSince)}`;

/** `main:1194udp`. */
export const openVpnScope = (serverId: string, port: number, proto: 'udp' | 'tcp'): string => `${serverId}:${port}${proto}`;

interface TrackedSession {
  cid: number;
  /** The daemon run the session belongs to (part of its key). */
  epoch: string;
  /** Empty until OpenVPN assigned it; a session without one has no key yet. */
  virtualAddress: string;
  username: string;
  remoteAddress: string;
  connectedAt: number;
  rx: number;
  tx: number;
}

interface Instance {
  key: string;
  spec: OpenVpnInstanceSpec & { subnet: string };
  index: number;
  device: string;
  scope: string;
  confPath: string;
  socketPath: string;
  supervisor: ProcessSupervisor;
  management: ManagementClient;
  sessions: Map<number, TrackedSession>;
  /** The current daemon run (`supervisor.epoch`), kept until its exit has been handled. */
  epoch: string | undefined;
  /** The current run was found running (a previous panel started it) and taken over. */
  adopted: boolean;
  /** The config file differed from what the running daemon was started with. */
  configChanged: boolean;
  /** Client ids whose CONNECT or REAUTH came on the current management connection. */
  asked: Set<number>;
}

const instanceKey = (port: number, proto: string) => `${port}${proto}`;
/** OpenVPN drops a halted client after 5 s; a repeated cut within this window is skipped. */
const HALT_GRACE_MS = 10_000;
/**
 * OpenVPN sends a login's CONNECT once, to whoever is attached then; one sent while no panel was
 * attached is never sent again, and the client would wait out its push timeout (about a minute).
 * This long after a management connection opens, a client still without an address that began
 * before it and sent this connection no CONNECT is restarted, so it asks again at once.
 */
const ORPHAN_LOGIN_GRACE_MS = 2_000;
/** Linux limit for a unix socket path (sun_path) including the NUL. */
const MAX_SOCKET_PATH = 107;
const CRL_RE = /^-----BEGIN X509 CRL-----\n[A-Za-z0-9+/=\n]+-----END X509 CRL-----\n?$/;

/**
 * OpenVPN on one host: one supervised `openvpn` process per listener, each with a management
 * connection that decides every login (certificate CN = username, the password from the
 * applied state, then core's authorize), reports ended sessions with their final counters,
 * and answers `status 3` for accounting. Certificates come from the panel's PKI
 * (`ctx.pki`); revocations arrive as the `pki_crl` setting and are checked by OpenVPN on
 * every new connection (`crl-verify`), without a restart.
 *
 * The daemons are detached (the kit supervisor's `detached`): they belong to their host, not to
 * the panel or its SSH channel. `detach()` leaves them and their sessions running, and the next
 * instance on the same host and state dir adopts them: same processes, same session keys
 * (`<scope>:<epoch>:<virtual address>:<since>`). Every session that ends, also while no panel is
 * attached, leaves a record with its final counters on the host (the client-disconnect hook);
 * records are folded into `ctx.sessionEnded` after each poll and deleted once the panel holds them.
 *
 * @example
 * const vpn = openvpnPlugin.create(ctx);
 * await vpn.apply({ listeners: [{ port: 1194, protocol: 'udp' }], users: [{ username: 'alice', password: 's3cret', material: {} }], settings: { pki_crl: crl } });
 * const profile = await vpn.renderClientConfig!({ username: 'alice', material: {} }, [{ host: 'vpn.example.com', port: 1194, protocol: 'udp' }]);
 */
export class OpenVpnPlugin implements ProtocolPluginInstance {
  readonly serverId: string;
  readonly serverCommonName: string;
  private readonly halting = new Map<string, number>();
  private readonly config: OpenVpnConfig;
  private readonly stateDir: string;
  private readonly subnetPool: string;
  private readonly paths: MaterialPaths;
  private desired = new Map<string, OpenVpnInstanceSpec>();
  private readonly running = new Map<string, Instance>();
  private users = new Map<string, DesiredUser>();
  private materialReady = false;
  private crlWritten: string | undefined;
  /** apply/stop/material run one at a time, so the host never sees two reconciliations interleave. */
  private readonly lock = new SerialLock();
  private readonly hookPath: string;
  private readonly endedDir: string;
  private readonly folder: EndedRecordFolder;

  constructor(private readonly ctx: PluginContext<OpenVpnConfig>) {
    this.config = ctx.config;
    this.stateDir = assertSafePath(ctx.stateDir, 'OpenVPN state directory');
    this.serverId = ctx.serverId;
    this.subnetPool = this.config.subnetPool ?? ctx.clientPool;
    parseIpv4Subnet(this.subnetPool, 'subnetPool');
    for (const d of this.config.dns) assertIp(d, 'dns');
    if (this.config.publicHost !== undefined) assertHost(this.config.publicHost, 'publicHost');
    this.serverCommonName = assertCommonName(this.config.serverCommonName ?? `openvpn.${this.serverId}`, 'serverCommonName');
    const dir = path.posix.join(this.stateDir, 'pki');
    this.paths = {
      dir,
      caCert: path.posix.join(dir, 'ca.crt'),
      serverCert: path.posix.join(dir, 'server.crt'),
      serverKey: path.posix.join(dir, 'server.key'),
      crl: path.posix.join(dir, 'crl.pem'),
      tlsCrypt: path.posix.join(dir, 'tls-crypt.key'),
    };
    this.hookPath = path.posix.join(this.stateDir, 'hooks', 'client-disconnect.sh');
    this.endedDir = path.posix.join(this.stateDir, 'ended');
    this.folder = new EndedRecordFolder({
      host: ctx.host,
      dir: this.endedDir,
      reportedPath: path.posix.join(this.stateDir, 'ended-reported.json'),
      isRecord: (name) => ENDED_RECORD_NAME_RE.test(name),
      parse: (_name, text) => parseEndedRecord(text, this.serverId, (port, proto) => openVpnScope(this.serverId, port, proto)),
      report: (ended) => ctx.sessionEnded(ended),
      logger: ctx.logger,
    });
  }

  async availability(): Promise<Availability> {
    const probe = new AvailabilityProbe(this.ctx.host);
    await probe.answers([this.config.openvpnPath, '--version'], /OpenVPN 2\.\d/);
    await probe.exists('/dev/net/tun');
    return probe.verdict();
  }

  /**
   * Makes the host match `state`: one process per listener (started, stopped or left alone),
   * the users allowed to log in with their passwords (live sessions of anyone else are cut),
   * and the CRL every instance checks. Starts the daemons on the first call.
   */
  async apply(state: DesiredState): Promise<void> {
    const next = new Map<string, OpenVpnInstanceSpec>();
    for (const [i, l] of (state?.listeners ?? []).entries()) {
      const port = assertPort(l?.port, `listeners[${i}].port`);
      const proto = assertTransport(l?.protocol, `listeners[${i}].protocol`);
      const key = instanceKey(port, proto);
      if (next.has(key)) throw invalid(`listener ${port}/${proto} is listed twice`);
      next.set(key, { port, proto });
    }
    const users = new Map<string, DesiredUser>();
    for (const u of state?.users ?? []) {
      if (!u || typeof u.username !== 'string' || !USERNAME_PATTERN.test(u.username)) {
        this.ctx.logger.warn({ username: u?.username }, 'user skipped: the name cannot be an OpenVPN certificate CN');
        continue;
      }
      users.set(u.username, u);
    }
    const crl = state?.settings?.pki_crl;
    if (crl !== undefined && (typeof crl !== 'string' || !CRL_RE.test(crl.replace(/\r\n/g, '\n')))) throw invalid('settings.pki_crl must be one PEM X509 CRL');
    const started = await this.lock.run(async () => {
      // From now on every login and renegotiation is decided against this set.
      this.users = users;
      await this.ensureMaterial();
      if (crl !== undefined) await this.writeCrl(crl.replace(/\r\n/g, '\n'));
      else if (!(await this.ctx.host.exists(this.paths.crl))) {
        this.ctx.logger.warn({ serverId: this.serverId }, 'no pki_crl setting yet: OpenVPN refuses every certificate until core sends the CRL');
      }
      this.desired = next;
      return this.reconcile();
    });
    // Connections still authenticating are decided by the new set anyway. Instances started
    // just now have no sessions (and may not answer `status` until their hold is released).
    await this.cutWhere((s) => !users.has(s.username), 'cutting removed users', started);
  }

  /**
   * Stops every daemon (SIGTERM: each client's session ends and the hook records it), then folds
   * the records those ends left, so nothing stays behind on the host.
   */
  stop(): Promise<void> {
    return this.lock.run(async () => {
      await Promise.all([...this.running.values()].map((inst) => this.stopInstance(inst)));
      // Daemons an earlier panel left running that this instance never applied (the protocol was
      // removed while the panel was away) are this state dir's too.
      await this.stopLeftovers();
      if (this.materialReady || (await this.ctx.host.exists(this.endedDir))) await this.foldEnded();
    });
  }

  /**
   * The panel goes away (shutdown, restart, upgrade): stop watching the daemons and close their
   * management connections, and leave the daemons and every session running for the next
   * instance to adopt. Nothing is reported ended. While no management client is attached,
   * OpenVPN holds new logins and renegotiations waiting for a verdict nobody gives (see
   * `restartOrphanLogins` for what the next instance does about them).
   */
  detach(): Promise<void> {
    return this.lock.run(async () => {
      const list = [...this.running.values()];
      this.running.clear();
      for (const inst of list) {
        inst.management.removeAllListeners();
        inst.supervisor.removeAllListeners();
      }
      await Promise.all(list.map(async (inst) => {
        await inst.supervisor.detach();
        await inst.management.close();
      }));
    });
  }

  async ports(): Promise<PortNeed[]> {
    return [...this.desired.values()].map((s) => ({ port: s.port, protocol: s.proto, purpose: `OpenVPN ${s.port}/${s.proto}` }));
  }

  /**
   * The `status 3` of every running instance, scope `<serverId>:<port><proto>`, for the
   * accounting parser, with each session's Client ID replaced by its session id so the parser
   * keys it `<scope>:<epoch>:<virtual address>:<since>` (see status.ts). Rejects if any instance
   * cannot answer. Each poll is followed by a fold of the hook's ended-session records.
   */
  async pollSessions(): Promise<SessionPoll> {
    const list = [...this.running.values()];
    const texts = await Promise.all(
      list.map(async (inst) => {
        const raw = await inst.management.status3();
        const epoch = inst.epoch;
        if (epoch === undefined) throw unavailable(`OpenVPN ${inst.key} on ${this.serverId} is restarting`);
        this.track(inst, raw);
        return { scope: inst.scope, text: withSessionIds(raw, epoch) };
      }),
    );
    // Not awaited: a slow host or a busy panel must not hold up accounting; folds run one at a time.
    if (this.materialReady) void this.foldEnded();
    return { kind: 'status-text', format: 'openvpn-status3', texts };
  }

  /**
   * Cuts every session of a user, or one session, with `client-kill <cid> HALT`: the client
   * is told to exit rather than reconnect, and the session ends (DISCONNECT with final
   * counters → ctx.sessionEnded) within a few seconds. The user's sessions are looked up in
   * `status 3`, so sessions established before a management reconnect are found too.
   */
  async disconnect(target: { username: string } | { sessionKey: string }): Promise<void> {
    if ('username' in target) {
      if (typeof target.username !== 'string' || !USERNAME_PATTERN.test(target.username)) throw invalid(`username must match ${USERNAME_PATTERN.source}`);
      await this.cutWhere((s) => s.username === target.username, `disconnect ${target.username}`);
      return;
    }
    const key = parseOpenVpnSessionKey(String(target.sessionKey));
    const inst = key ? [...this.running.values()].find((i) => i.scope === key.scope) : undefined;
    if (!key || !inst) throw notFound(`no OpenVPN session ${JSON.stringify(target.sessionKey)} on ${this.serverId}`);
    // A session of an earlier daemon run, or one no longer listed, has ended already.
    if (key.epoch !== inst.epoch) return;
    const row = parseClientList(await inst.management.status3()).find(
      (r) => r.virtualAddress === key.virtualAddress && r.connectedSince === key.connectedSince && r.clientId !== undefined,
    );
    if (row) await this.halt(inst, row.clientId!);
  }

  /**
   * A complete `.ovpn` for the user: the panel CA, the user's certificate from the panel PKI
   * (issued on first use), this server's tls-crypt key, and a `remote` per endpoint (or per
   * listener on `publicHost` when none are given).
   */
  async renderClientConfig(user: ClientUser, endpoints: readonly ClientEndpoint[]): Promise<string> {
    const username = user?.username;
    if (typeof username !== 'string' || !USERNAME_PATTERN.test(username)) throw invalid(`username must match ${USERNAME_PATTERN.source}`);
    const remotes: ClientRemote[] = endpoints.length
      ? endpoints.map((e) => ({ host: e.host, port: e.port, proto: e.protocol }))
      : this.config.publicHost !== undefined
        ? [...this.desired.values()].map((s) => ({ host: this.config.publicHost!, port: s.port, proto: s.proto }))
        : [];
    if (remotes.length === 0) throw invalid('no endpoints for the profile: pass them or set publicHost and listeners');
    const tlsCryptKey = await this.lock.run(async () => {
      await this.ensureTlsCryptKey();
      return (await this.ctx.host.readFile(this.paths.tlsCrypt)).toString('utf8');
    });
    const [caPem, client] = await Promise.all([this.ctx.pki.caCertificate(), this.ctx.pki.clientCertificate(username)]);
    return renderClientProfile({
      remotes,
      caPem,
      certPem: client.certificate,
      keyPem: client.privateKey,
      tlsCryptKey,
      serverCommonName: this.serverCommonName,
      passwordAuth: this.config.passwordAuth,
      title: `${username} @ ${this.serverId}`,
    });
  }

  /** Running instances (for tests and /health): key, pid, management state. */
  describe(): Array<{
    key: string;
    scope: string;
    device: string;
    subnet: string;
    pid: number | undefined;
    epoch: string | undefined;
    adopted: boolean;
    managementConnected: boolean;
    restarts: number;
    socketPath: string;
    confPath: string;
  }> {
    return [...this.running.values()].map((i) => ({
      key: i.key,
      scope: i.scope,
      device: i.device,
      subnet: i.spec.subnet,
      pid: i.supervisor.pid,
      epoch: i.epoch,
      adopted: i.adopted,
      managementConnected: i.management.connected,
      restarts: i.supervisor.restarts,
      socketPath: i.socketPath,
      confPath: i.confPath,
    }));
  }

  // ---- internals ----

  /**
   * The CA and this server's certificate from the panel PKI, written where the server configs
   * point (key 0600), and the tls-crypt key, made once on this host. Done once per process;
   * the PKI returns the same certificate until it nears expiry.
   */
  private async ensureMaterial(): Promise<void> {
    if (this.materialReady) return;
    const { host } = this.ctx;
    await host.mkdirp(this.paths.dir, 0o700);
    const publicHost = this.config.publicHost;
    const san = publicHost === undefined ? {} : net.isIP(publicHost) ? { ipAddresses: [publicHost] } : { dnsNames: [publicHost] };
    const [ca, server] = await Promise.all([this.ctx.pki.caCertificate(), this.ctx.pki.serverCertificate(this.serverCommonName, san)]);
    await this.writeIfChanged(this.paths.caCert, ca, 0o644);
    await this.writeIfChanged(this.paths.serverKey, server.privateKey, 0o600);
    await this.writeIfChanged(this.paths.serverCert, server.certificate, 0o644);
    await this.ensureTlsCryptKey();
    await host.mkdirp(path.posix.dirname(this.hookPath), 0o700);
    await this.writeIfChanged(this.hookPath, DISCONNECT_HOOK_SCRIPT, 0o755);
    await host.mkdirp(this.endedDir, 0o700);
    this.materialReady = true;
  }

  /**
   * Stops every daemon a pid file in the run dir names that is still running with this plugin's
   * argv for that instance. The kit supervisor decides (it adopts only a live run of the same
   * argv, and its beforeStart refuses to start anything); its stop() then ends the daemon.
   */
  private async stopLeftovers(): Promise<void> {
    const { host } = this.ctx;
    const runDir = path.posix.join(this.stateDir, 'run');
    const r = await host.run(['find', runDir, '-maxdepth', '1', '-name', '*.pid', '-printf', '%f\\n'], { timeoutMs: 10_000 }).catch(() => null);
    if (!r || r.code !== 0) return;
    const keys = r.stdout
      .split('\n')
      .map((n) => /^(\d{1,5}(?:udp|tcp))\.pid$/.exec(n)?.[1])
      .filter((k): k is string => k !== undefined && !this.running.has(k));
    for (const key of keys) {
      let decided!: () => void;
      const done = new Promise<void>((resolve) => (decided = resolve));
      const leftover = new ProcessSupervisor({
        host,
        argv: [this.config.openvpnPath, '--config', path.posix.join(this.stateDir, 'conf', `server-${key}.conf`)],
        name: `openvpn ${key} (left running)`,
        initialBackoffMs: 600_000,
        detached: { pidFile: path.posix.join(runDir, `${key}.pid`), logFile: path.posix.join(runDir, `${key}.log`) },
        beforeStart: async () => {
          decided();
          throw new Error('not running: nothing to stop');
        },
      });
      leftover.on('spawn', () => decided());
      leftover.start();
      await Promise.race([done, new Promise((resolve) => setTimeout(resolve, this.config.startTimeoutMs).unref())]);
      if (leftover.isRunning) this.ctx.logger.info({ instance: key, pid: leftover.pid }, 'stopping an OpenVPN daemon an earlier panel left running');
      await leftover.stop();
    }
  }

  /** Reports the records the disconnect hook left (exactly-once fold; see EndedRecordFolder). */
  private async foldEnded(): Promise<void> {
    await this.folder.fold().catch((err: Error) => this.ctx.logger.warn({ err: err.message, serverId: this.serverId }, 'folding OpenVPN ended-session records failed; retried after the next poll'));
  }

  /** The tls-crypt static key (`openvpn --genkey secret`), created once on this host, mode 0600. */
  private async ensureTlsCryptKey(): Promise<void> {
    const { host } = this.ctx;
    if (await host.exists(this.paths.tlsCrypt)) return;
    await host.mkdirp(this.paths.dir, 0o700);
    const { stdout } = await runChecked(host, [this.config.openvpnPath, '--genkey', 'secret'], { timeoutMs: 30_000 });
    if (!/-----BEGIN OpenVPN Static key V1-----[\s\S]+-----END OpenVPN Static key V1-----/.test(stdout)) {
      throw unavailable(`openvpn --genkey on ${host.id} did not print a static key`);
    }
    await host.writeFileAtomic(this.paths.tlsCrypt, stdout, 0o600);
  }

  /** Atomic replace: OpenVPN re-reads the file at each new connection and must never see half of it. */
  private async writeCrl(crl: string): Promise<void> {
    if (crl === this.crlWritten) return;
    await this.writeIfChanged(this.paths.crl, crl.endsWith('\n') ? crl : `${crl}\n`, 0o644);
    this.crlWritten = crl;
  }

  private async writeIfChanged(file: string, content: string, mode: number): Promise<void> {
    try {
      if ((await this.ctx.host.readFile(file)).toString('utf8') === content) return;
    } catch {
      /* missing: write it */
    }
    await this.ctx.host.writeFileAtomic(file, content, mode);
  }

  /**
   * OpenVPN answers `client-kill … HALT` with "Delayed exit in 5 seconds", and a second kill
   * of the same client starts that delay again: callers that repeat a cut until it is
   * confirmed would keep the session alive. So a client halted recently is not halted again.
   */
  private async halt(inst: Instance, cid: number): Promise<void> {
    const now = this.ctx.clock.now().getTime();
    for (const [k, at] of this.halting) if (now - at > HALT_GRACE_MS) this.halting.delete(k);
    const key = `${inst.key}:${inst.supervisor.pid ?? 0}:${cid}`;
    if (this.halting.has(key)) return;
    this.halting.set(key, now);
    await inst.management.killClient(cid, 'HALT');
  }

  /** client-kill HALT every established session in `status 3` that matches. */
  private async cutWhere(match: (session: StatusRow) => boolean, what: string, skip: ReadonlySet<string> = new Set()): Promise<void> {
    const errors: string[] = [];
    for (const inst of [...this.running.values()]) {
      if (skip.has(inst.key)) continue;
      try {
        for (const s of parseClientList(await inst.management.status3())) {
          if (s.virtualAddress && s.clientId !== undefined && match(s)) await this.halt(inst, s.clientId);
        }
      } catch (e) {
        errors.push(`${inst.key}: ${(e as Error).message}`);
      }
    }
    if (errors.length) throw unavailable(`${what} on ${this.serverId} failed on ${errors.join('; ')}`);
  }

  /** Returns the keys of the instances it started (not those it adopted: they have sessions). */
  private async reconcile(): Promise<Set<string>> {
    // Stop what is gone first, so ports, devices and subnets are free again.
    for (const inst of [...this.running.values()]) {
      if (!this.desired.has(inst.key)) await this.stopInstance(inst);
    }
    const toStart: Instance[] = [];
    for (const [key, spec] of this.desired) {
      if (this.running.has(key)) continue;
      toStart.push(await this.createInstance(key, spec));
    }
    await Promise.all(toStart.map((inst) => this.waitReady(inst)));
    return new Set(toStart.filter((i) => !i.adopted).map((i) => i.key));
  }

  /**
   * Management connects before the server has finished initializing, and until then `status`
   * answers "not supported by the current daemon mode": an instance is started only once it
   * answers, so the first accounting poll after an apply never fails. An adopted daemon answers
   * at once; its live sessions are tracked from that answer (same keys as before the panel left).
   */
  private async waitReady(inst: Instance): Promise<void> {
    const end = Date.now() + this.config.startTimeoutMs;
    await inst.management.waitConnected(this.config.startTimeoutMs);
    await waitFor(() => inst.epoch !== undefined, Math.max(0, end - Date.now()));
    if (inst.epoch === undefined) throw unavailable(`OpenVPN ${inst.key} on ${this.serverId} did not start within ${this.config.startTimeoutMs} ms`);
    for (;;) {
      try {
        this.track(inst, await inst.management.status3());
        break;
      } catch (err) {
        if (Date.now() > end) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    if (inst.adopted) {
      this.ctx.logger.info({ instance: inst.key, pid: inst.supervisor.pid, epoch: inst.epoch, sessions: inst.sessions.size }, 'adopted the running OpenVPN daemon and its sessions');
    }
  }

  /**
   * Logins whose CONNECT went to no one (the panel was away): restarted, so the client asks again
   * now instead of after its push timeout. A pending renegotiation (REAUTH) of a live session
   * cannot be recovered this way: OpenVPN gives up on it after its hand-window (60 s) and the
   * session reconnects, asking again.
   */
  private async restartOrphanLogins(inst: Instance, connectedAt: number): Promise<void> {
    if (this.running.get(inst.key) !== inst || !inst.management.connected) return;
    try {
      for (const row of parseClientList(await inst.management.status3())) {
        if (row.virtualAddress || row.clientId === undefined || inst.asked.has(row.clientId) || row.connectedSince >= connectedAt) continue;
        this.ctx.logger.info({ instance: inst.key, cid: row.clientId, cn: row.commonName }, 'restarting an OpenVPN login that asked while no panel was attached');
        await inst.management.killClient(row.clientId, 'RESTART');
      }
    } catch (err) {
      this.ctx.logger.debug({ err: (err as Error).message, instance: inst.key }, 'could not look for logins left unanswered');
    }
  }

  /** The established sessions `status 3` lists, with the freshest counters known. */
  private track(inst: Instance, statusText: string): void {
    const epoch = inst.epoch;
    if (epoch === undefined) return;
    const next = new Map<number, TrackedSession>();
    for (const row of parseClientList(statusText)) {
      if (!row.virtualAddress || row.clientId === undefined) continue;
      const prev = inst.sessions.get(row.clientId);
      const same = prev && prev.epoch === epoch && prev.connectedAt === row.connectedSince;
      next.set(row.clientId, {
        cid: row.clientId,
        epoch,
        virtualAddress: row.virtualAddress,
        username: row.username,
        remoteAddress: row.realAddress,
        connectedAt: row.connectedSince,
        rx: Math.max(row.bytesReceived, same ? prev.rx : 0),
        tx: Math.max(row.bytesSent, same ? prev.tx : 0),
      });
    }
    inst.sessions = next;
  }

  private async createInstance(key: string, spec: OpenVpnInstanceSpec): Promise<Instance> {
    const used = new Set([...this.running.values()].map((i) => i.index));
    let index = 0;
    while (used.has(index)) index++;
    const subnet = freeSubnet(this.subnetPool, this.config.instancePrefix, [...this.running.values()].map((r) => r.spec.subnet), index);
    for (const r of this.running.values()) {
      if (subnetsOverlap(r.spec.subnet, subnet)) throw invalid(`subnet ${subnet} overlaps ${r.spec.subnet} of instance ${r.key}`);
    }
    const scope = openVpnScope(this.serverId, spec.port, spec.proto);
    const runDir = path.posix.join(this.stateDir, 'run');
    const confDir = path.posix.join(this.stateDir, 'conf');
    const socketPath = path.posix.join(runDir, `${key}.sock`);
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) throw invalid(`management socket path ${socketPath} is longer than ${MAX_SOCKET_PATH} bytes; use a shorter state directory`);
    const confPath = path.posix.join(confDir, `server-${key}.conf`);
    const device = `pgtun${index}`;
    const configText = renderServerConfig({
      port: spec.port,
      proto: spec.proto,
      device,
      subnet,
      managementSocket: socketPath,
      caPath: this.paths.caCert,
      certPath: this.paths.serverCert,
      keyPath: this.paths.serverKey,
      crlPath: this.paths.crl,
      tlsCryptPath: this.paths.tlsCrypt,
      passwordAuth: this.config.passwordAuth,
      managementHold: true,
      maxClients: this.config.maxClients,
      keepalive: { interval: this.config.keepaliveInterval, timeout: this.config.keepaliveTimeout },
      redirectGateway: this.config.redirectGateway,
      dns: this.config.dns,
      dco: this.config.dco,
      verb: this.config.verb,
      disconnectHook: { script: this.hookPath, recordDir: this.endedDir, instance: key },
    });
    const { host } = this.ctx;
    await host.mkdirp(runDir, 0o700);
    await host.mkdirp(confDir, 0o700);
    // A daemon still running from before was started with the file as it is now: adopting it
    // is only right when this instance would start it with the same config.
    const previous = await host.readFile(confPath).then((b) => b.toString('utf8'), () => null);
    if (previous !== configText) await host.writeFileAtomic(confPath, configText, 0o600);
    const logger = this.ctx.logger.child({ instance: key });
    const supervisor = new ProcessSupervisor({
      host,
      argv: [this.config.openvpnPath, '--config', confPath],
      name: `openvpn ${spec.port}/${spec.proto}`,
      logger,
      initialBackoffMs: this.config.restartInitialMs,
      maxBackoffMs: this.config.restartMaxMs,
      startTimeoutMs: this.config.startTimeoutMs,
      // One pid and log file per instance: the daemon outlives this panel and the next adopts it.
      detached: { pidFile: path.posix.join(runDir, `${key}.pid`), logFile: path.posix.join(runDir, `${key}.log`) },
      // A stale socket from a killed run would be connected to and refused. Not run on adoption:
      // the socket is the live daemon's.
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
      spec: { ...spec, subnet },
      index,
      device,
      scope,
      confPath,
      socketPath,
      supervisor,
      management,
      sessions: new Map(),
      epoch: undefined,
      adopted: false,
      configChanged: previous !== null && previous !== configText,
      asked: new Set(),
    };
    management.on('connect-request', (req) => {
      inst.asked.add(req.cid);
      void this.onConnectRequest(inst, req);
    });
    management.on('connected', () => {
      inst.asked = new Set();
      const since = Math.floor(Date.now() / 1000);
      setTimeout(() => void this.restartOrphanLogins(inst, since), ORPHAN_LOGIN_GRACE_MS).unref();
    });
    management.on('established', ({ cid, env }) => {
      if (inst.epoch === undefined) return;
      inst.sessions.set(cid, {
        cid,
        epoch: inst.epoch,
        virtualAddress: env.ifconfig_pool_remote_ip ?? '',
        username: env.common_name ?? '',
        remoteAddress: remoteOf(env),
        connectedAt: Number(env.time_unix) || Math.floor(this.ctx.clock.now().getTime() / 1000),
        rx: 0,
        tx: 0,
      });
    });
    management.on('address', ({ cid, address, primary }) => {
      const s = inst.sessions.get(cid);
      if (s && primary && !s.virtualAddress && /^\d{1,3}(?:\.\d{1,3}){3}$/.test(address)) s.virtualAddress = address;
    });
    management.on('bytecount', ({ cid, bytesReceived, bytesSent }) => {
      const s = inst.sessions.get(cid);
      if (s) {
        s.rx = bytesReceived;
        s.tx = bytesSent;
      }
    });
    // The hook records this end too (same key): this report is the prompt one, the record the
    // one that survives a panel that is away.
    management.on('disconnect', ({ cid, env, bytesReceived, bytesSent }) => {
      const tracked = inst.sessions.get(cid);
      inst.sessions.delete(cid);
      // Connections refused before they were established carry no counters: not sessions.
      const username = env.common_name ?? tracked?.username;
      const epoch = inst.epoch ?? tracked?.epoch;
      if (bytesReceived === undefined || bytesSent === undefined || !username || epoch === undefined) return;
      this.ended(
        inst,
        {
          cid,
          epoch,
          virtualAddress: env.ifconfig_pool_remote_ip ?? tracked?.virtualAddress ?? '',
          username,
          remoteAddress: env.trusted_ip ? remoteOf(env) : tracked?.remoteAddress ?? '',
          connectedAt: Number(env.time_unix) || tracked?.connectedAt || 0,
          rx: bytesReceived,
          tx: bytesSent,
        },
        'disconnected',
      );
    });
    supervisor.on('spawn', (_pid, run) => {
      inst.epoch = run.epoch;
      inst.adopted = run.adopted;
      if (run.adopted && inst.configChanged) {
        // The running daemon has the old config: the new one only takes effect by a restart.
        inst.configChanged = false;
        logger.warn({ instance: key }, 'the running OpenVPN daemon was started with another config; restarting it');
        void supervisor.restart().catch((err: Error) => logger.error({ err: err.message }, 'restarting OpenVPN for its new config failed'));
      }
    });
    // The process is gone: no DISCONNECT events will come for what was still live. Wait
    // until its management connection has closed, so DISCONNECTs it did send (on SIGTERM)
    // are handled first. A management reconnect alone (e.g. after a command timeout) is
    // not an exit: sessions go on and stay tracked.
    supervisor.on('exit', (exit) => {
      const epoch = inst.epoch;
      inst.epoch = undefined;
      void waitFor(() => !management.connected, 2_000).then(() => this.flushSessions(inst, exit.requested ? 'server-stopped' : 'server-exit', epoch));
    });
    this.running.set(key, inst);
    management.start();
    supervisor.start();
    return inst;
  }

  private async stopInstance(inst: Instance): Promise<void> {
    this.running.delete(inst.key);
    // SIGTERM first: OpenVPN reports DISCONNECT (final counters) for each client while the
    // management connection is still open, and runs the disconnect hook for each.
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
    if (!USERNAME_PATTERN.test(cn)) return 'certificate CN is not a valid username';
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
    // Without a virtual address the session never carried traffic under a key; the hook's record
    // (or the poll) accounts for it.
    if (!s.virtualAddress) return;
    const ended: SessionEnded = {
      session: {
        sessionKey: openVpnSessionKey(inst.scope, s.epoch, s.virtualAddress, s.connectedAt),
        username: s.username,
        protocol: 'openvpn',
        serverId: this.serverId,
        remoteAddress: s.remoteAddress,
        connectedAt: s.connectedAt,
        rxBytes: s.rx,
        txBytes: s.tx,
      },
      reason,
    };
    // A report the panel could not store is not lost: the hook's record (a clean end) or the
    // poll's vanish (a dead daemon) carries the same key.
    this.ctx.sessionEnded(ended).catch((err: Error) => this.ctx.logger.warn({ err: err.message, sessionKey: ended.session.sessionKey }, 'the panel did not take an OpenVPN session end'));
  }

  /** Reports tracked sessions (of one daemon run, or all) as ended with their last known counters (from bytecount). */
  private flushSessions(inst: Instance, reason: string, epoch?: string): void {
    for (const s of [...inst.sessions.values()]) {
      if (epoch !== undefined && s.epoch !== epoch) continue;
      inst.sessions.delete(s.cid);
      this.ended(inst, s, reason);
    }
  }
}

/** `ip:port` as `status 3` shows the Real Address. */
function remoteOf(env: Readonly<Record<string, string>>): string {
  const ip = env.trusted_ip ?? env.trusted_ip6 ?? env.untrusted_ip ?? env.untrusted_ip6 ?? '';
  const port = env.trusted_port ?? env.untrusted_port;
  return ip && port ? `${ip}:${port}` : ip;
}

/** Real-time wait for a process or socket (not domain time: the domain clock may be frozen in tests). */
async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
}

/** The OpenVPN protocol plugin. `create()` returns an {@link OpenVpnPlugin}. */
const openvpnPlugin = defineProtocolPlugin<OpenVpnConfig>({
  id: 'openvpn',
  apiVersion: '2.0',
  capabilities: OPENVPN_CAPABILITIES,
  requirements: [{ program: 'openvpn', debianPackages: ['openvpn'] }],
  configSchema: openVpnConfigSchema,
  create: (ctx) => new OpenVpnPlugin(ctx),
});

export default openvpnPlugin;
