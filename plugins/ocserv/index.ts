import { createHash } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import {
  AvailabilityProbe,
  EndedRecordFolder,
  assertCommonName,
  assertHost,
  assertIp,
  assertPort,
  assertSafePath,
  assertTransport,
  defineProtocolPlugin,
  invalid,
  notFound,
  parseIpv4Subnet,
  parseStatusText,
  ProcessSupervisor,
  supervisorBackoffConfig,
  daemonTimeoutConfig,
  runChecked,
  SerialLock,
  unavailable,
  USERNAME_PATTERN,
  type Availability,
  type ClientEndpoint,
  type ClientUser,
  type CustomerFact,
  type DesiredState,
  type PluginCapabilities,
  type PluginContext,
  type PortNeed,
  type ProtocolPluginInstance,
  type SessionPoll,
  type StatusTextSession,
} from '../../core';
import { randomCryptSalt, sha512CryptMatches } from './crypt';
import {
  certificatePin,
  ENDED_RECORD_RE,
  parseEndedRecord,
  parsePasswordFile,
  renderClientProfile,
  renderDisconnectScript,
  renderPasswordFile,
  renderPerUserConfig,
  renderRunWrapper,
  renderServerConfig,
} from './render';

export { sha512Crypt, sha512CryptMatches } from './crypt';
export { certificatePin, parseEndedRecord, parsePasswordFile, renderClientProfile, renderDisconnectScript, renderPasswordFile, renderPerUserConfig, renderRunWrapper, renderServerConfig } from './render';

/** Plugin settings; every field has a default, so `{}` is a valid configuration. */
export const ocservConfigSchema = z.object({
  ocservPath: z.string().default('ocserv'),
  occtlPath: z.string().default('occtl'),
  /** CN of the server certificate from the panel PKI; default `ocserv.<serverId>`. */
  serverCommonName: z.string().optional(),
  /** The address customers dial; put in the certificate's SANs. */
  publicHost: z.string().optional(),
  /** An operator-supplied certificate and key on the host, instead of the panel PKI's. */
  certificatePath: z.string().optional(),
  keyPath: z.string().optional(),
  listenHost: z.string().optional(),
  /**
   * Where ocserv's sockets live. Its workers run as `runAsUser` and must reach the sec-mod
   * socket, so this directory and its parents must be traversable by that user (a 0700 state
   * directory is not); default `/run/pg-ocserv/<hash of the state directory>`.
   */
  runDir: z.string().optional(),
  runAsUser: z.string().default('nobody'),
  runAsGroup: z.string().default('nogroup'),
  /** ocserv's seccomp worker isolation; some kernels/containers refuse it. */
  isolateWorkers: z.boolean().default(true),
  maxClients: z.number().int().min(0).max(1_000_000).default(0),
  /** Sessions per user when core does not say (0 = unlimited); core's `max_clients` holds across protocols by omission. */
  maxSameClients: z.number().int().min(0).max(65535).default(0),
  /** Network interface prefix (ocserv numbers them). */
  device: z.string().regex(/^[a-zA-Z][a-zA-Z0-9]{0,9}$/).default('pgoc'),
  dns: z.array(z.string()).default([]),
  /** Routes pushed to clients; empty = all traffic through the tunnel. */
  routes: z.array(z.string()).default([]),
  keepaliveSec: z.number().int().min(1).max(86400).default(300),
  dpdSec: z.number().int().min(1).max(86400).default(60),
  cookieTimeoutSec: z.number().int().min(10).max(86400).default(300),
  maxBanScore: z.number().int().min(0).max(100000).default(80),
  logLevel: z.number().int().min(0).max(9).default(1),
  ...supervisorBackoffConfig,
  ...daemonTimeoutConfig,
});

export type OcservConfig = z.infer<typeof ocservConfigSchema>;

export const OCSERV_CAPABILITIES: PluginCapabilities = {
  gatesLogins: false,
  reportsEndedSessions: true,
  poll: 'ocserv-json',
  takesListeners: true,
  settings: [],
  clientConfig: { extension: 'conf', mediaType: 'text/plain' },
};

/** Linux limit for a unix socket path (sun_path) including the NUL; ocserv appends a suffix. */
const MAX_SOCKET_PATH = 90;

interface Paths {
  conf: string;
  passwd: string;
  perUser: string;
  ended: string;
  reported: string;
  script: string;
  /** The keeper's program: a shell that runs ocserv as its child (see `renderRunWrapper`). */
  runWrapper: string;
  /** The keeper's record of the wrapper's pid, and ocserv's output. */
  runPid: string;
  log: string;
  socket: string;
  occtlSocket: string;
  /** ocserv's own pid file (its main process). */
  pid: string;
  cert: string;
  key: string;
}

/**
 * Cisco AnyConnect on real ocserv, through a `Host` only (the main server and nodes alike).
 *
 * Why a password file and no `connect-script`: ocserv never asks core at login, so the plugin
 * declares `gatesLogins: false` and core hands `apply` exactly the users allowed to connect
 * *now* (not disabled, expired, limited or over `max_clients` across protocols). The ocpasswd
 * file is rewritten atomically from that list on every apply (SHA-512-crypt hashes computed in
 * Node: no password on an argv or in a shell), ocserv is told `occtl reload`, and the sessions
 * of users no longer listed are cut with `occtl disconnect id`. Enforcement is by omission, so
 * it works on a node with no way back to core, and a panel that is down lets nobody new in
 * beyond what it last allowed. Core's `maxSessions` (the user's room under `max_clients` once
 * its sessions elsewhere are counted) goes to the user's `config-per-user` file as
 * `max-same-clients`, so two logins between ticks cannot both pass.
 *
 * ocserv belongs to its host, not to the panel: it runs under the supervisor's keeper (its own
 * session, pid and output in files in the state directory), so an SSH drop or a panel restart
 * cuts no session. `detach()` leaves it running; the next instance on the same host and state
 * directory adopts it (found by the keeper's pid file, reached by its occtl socket) instead of
 * starting another, and restarts it only when the configuration it runs is not the one applied.
 * The keeper's program is a small wrapper that keeps ocserv as its child, because ocserv
 * rewrites its own command line and the keeper recognises a run by it.
 *
 * Accounting: `occtl --json show users` (run in the server's namespace) is handed raw to the
 * native parser, scope `<serverId>:<epoch>` where the epoch is the run's `<pid>.<start time>`
 * (`supervisor.epoch`): equal across adoption, new whenever ocserv really restarts, so reused
 * session IDs of different runs never merge. Final counters come from the `disconnect-script`,
 * which writes a durable record per session on the host named with the same epoch (the
 * wrapper hands it to ocserv's environment, ocserv to the script's), also while no panel is
 * attached; the plugin folds each record into `ctx.sessionEnded` and deletes it only once the
 * panel holds it, so neither a session ending between two ticks nor a panel restart between
 * the disconnect and the next tick loses or doubles anything.
 *
 * The server certificate comes from the panel's PKI (or the operator's files); its
 * `pin-sha256` is in the client profile the subscription page links to.
 *
 * @example
 * const oc = ocservPlugin.create(ctx);
 * await oc.apply({ listeners: [{ port: 443, protocol: 'tcp' }, { port: 443, protocol: 'udp' }], users: [{ username: 'alice', password: 's3cret', material: {} }], settings: {} });
 */
export class OcservPlugin implements ProtocolPluginInstance {
  readonly serverId: string;
  readonly serverCommonName: string;
  readonly paths: Paths;
  private readonly config: OcservConfig;
  private readonly network: { network: string; netmask: string };
  private readonly lock = new SerialLock();
  private supervisor: ProcessSupervisor | undefined;
  private listeners: { tcp: number; udp?: number } | undefined;
  private users = new Set<string>();
  private confText = '';
  private passwdText: string | undefined;
  private perUserWritten = new Map<string, string>();
  private perUserCleared = false;
  private pin: string | undefined;
  /** hash → the password it was checked or made for, so an unchanged user costs no hashing. */
  private readonly hashOf = new Map<string, string>();
  private readonly endedRecords: EndedRecordFolder;

  constructor(private readonly ctx: PluginContext<OcservConfig>) {
    // The operator's publicHost wins; else the address core knows customers dial.
    this.config = { ...ctx.config, publicHost: ctx.config.publicHost ?? ctx.publicHost };
    this.serverId = ctx.serverId;
    const stateDir = assertSafePath(ctx.stateDir, 'ocserv state directory');
    const pool = parseIpv4Subnet(ctx.clientPool, 'clientPool');
    this.network = { network: pool.network, netmask: pool.netmask };
    for (const d of this.config.dns) assertIp(d, 'dns');
    if (this.config.publicHost !== undefined) assertHost(this.config.publicHost, 'publicHost');
    if (this.config.listenHost !== undefined) assertIp(this.config.listenHost, 'listenHost');
    if ((this.config.certificatePath === undefined) !== (this.config.keyPath === undefined)) throw invalid('certificatePath and keyPath go together');
    this.serverCommonName = assertCommonName(this.config.serverCommonName ?? `ocserv.${this.serverId}`, 'serverCommonName');
    const p = (...parts: string[]) => path.posix.join(stateDir, ...parts);
    const runDir = assertSafePath(this.config.runDir ?? `/run/pg-ocserv/${createHash('sha256').update(stateDir).digest('hex').slice(0, 12)}`, 'runDir');
    const r = (name: string) => path.posix.join(runDir, name);
    this.paths = {
      conf: p('ocserv.conf'),
      passwd: p('ocpasswd'),
      perUser: p('per-user'),
      ended: p('ended'),
      reported: p('ended-reported.json'),
      script: p('disconnect.sh'),
      runWrapper: p('ocserv-run.sh'),
      runPid: p('ocserv-run.pid'),
      log: p('ocserv.log'),
      socket: r('ocserv.sock'),
      occtlSocket: r('occtl.sock'),
      pid: r('ocserv.pid'),
      cert: this.config.certificatePath ? assertSafePath(this.config.certificatePath, 'certificatePath') : p('pki', 'server.crt'),
      key: this.config.keyPath ? assertSafePath(this.config.keyPath, 'keyPath') : p('pki', 'server.key'),
    };
    if (Buffer.byteLength(this.paths.socket) > MAX_SOCKET_PATH) throw invalid(`socket path ${this.paths.socket} is too long; use a shorter state directory`);
    this.endedRecords = new EndedRecordFolder({
      host: ctx.host,
      dir: this.paths.ended,
      reportedPath: this.paths.reported,
      isRecord: (name) => ENDED_RECORD_RE.test(name),
      parse: (_name, text) => {
        const r = parseEndedRecord(text);
        if (!r) return null;
        const session = { sessionKey: `${this.serverId}:${r.runId}:${r.id}`, username: r.username, protocol: 'cisco' as const, serverId: this.serverId, remoteAddress: r.remoteAddress, connectedAt: 0, rxBytes: r.rxBytes, txBytes: r.txBytes };
        return { session, reason: r.reason || 'disconnected' };
      },
      report: (ended) => ctx.sessionEnded(ended),
      logger: ctx.logger,
      timeoutMs: this.config.commandTimeoutMs,
    });
  }

  async availability(): Promise<Availability> {
    const probe = new AvailabilityProbe(this.ctx.host);
    await probe.answers([this.config.ocservPath, '--version'], /ocserv \d/);
    await probe.answers([this.config.occtlPath, '--version'], /occtl|ocserv/i);
    await probe.exists('/dev/net/tun');
    return probe.verdict();
  }

  /**
   * Makes ocserv allow exactly `state.users`: rewrites the password file and per-user files,
   * reloads ocserv (or starts it, or restarts it when the listeners changed), then cuts the
   * sessions of everyone not listed.
   */
  async apply(state: DesiredState): Promise<void> {
    const listeners = this.parseListeners(state?.listeners ?? []);
    const users: Array<{ username: string; password: string; maxSameClients?: number }> = [];
    for (const u of state?.users ?? []) {
      if (!u || typeof u.username !== 'string' || !USERNAME_PATTERN.test(u.username)) {
        this.ctx.logger.warn({ username: u?.username }, 'user skipped: not a valid ocserv username');
        continue;
      }
      if (typeof u.password !== 'string' || !u.password) {
        this.ctx.logger.warn({ username: u.username }, 'user skipped: no Cisco password');
        continue;
      }
      const max = u.maxSessions;
      users.push({ username: u.username, password: u.password, ...(Number.isInteger(max) && max! >= 1 && max! <= 65535 ? { maxSameClients: max } : {}) });
    }
    await this.lock.run(async () => {
      this.users = new Set(users.map((u) => u.username));
      const { host } = this.ctx;
      await this.ensureDirs();
      await this.ensureCertificate();
      if (this.passwdText === undefined) this.passwdText = (await host.readFile(this.paths.passwd).catch(() => Buffer.from(''))).toString('utf8');
      const matches = (password: string, hash: string) => this.hashOf.get(hash) === password || sha512CryptMatches(password, hash);
      const passwd = renderPasswordFile(users, parsePasswordFile(this.passwdText), randomCryptSalt, matches);
      const byName = new Map(users.map((u) => [u.username, u.password]));
      this.hashOf.clear();
      for (const [name, hash] of parsePasswordFile(passwd)) this.hashOf.set(hash, byName.get(name)!);
      let changed = false;
      if (passwd !== this.passwdText || !(await host.exists(this.paths.passwd))) {
        await host.writeFileAtomic(this.paths.passwd, passwd, 0o600);
        this.passwdText = passwd;
        changed = true;
      }
      if (await this.writePerUser(users)) changed = true;
      this.listeners = listeners;
      this.confText = this.renderConf(listeners);
      const onDisk = (await host.readFile(this.paths.conf).catch(() => Buffer.from(''))).toString('utf8');
      // Neither depends on the run, so they are in place before ocserv starts or is adopted.
      await writeIfChanged(host, this.paths.script, renderDisconnectScript({ endedDir: this.paths.ended }), 0o700);
      await writeIfChanged(host, this.paths.runWrapper, renderRunWrapper(), 0o700);
      if (!this.supervisor) {
        const confChanged = onDisk !== this.confText;
        if (confChanged) await host.writeFileAtomic(this.paths.conf, this.confText, 0o600);
        this.start();
        await this.waitReady();
        const sup = this.supervisor!;
        if (sup.adopted && confChanged) {
          // The ocserv left running serves another configuration (listeners changed meanwhile).
          this.ctx.logger.info({ pid: sup.pid }, 'the adopted ocserv runs an older configuration; restarting it');
          await sup.restart();
          await this.waitReady();
        } else if (sup.adopted && changed) {
          await runChecked(host, [this.config.occtlPath, '-s', this.paths.occtlSocket, 'reload'], { timeoutMs: this.config.commandTimeoutMs });
        }
      } else if (onDisk !== this.confText) {
        await host.writeFileAtomic(this.paths.conf, this.confText, 0o600);
        await this.supervisor.restart();
        await this.waitReady();
      } else if (changed) {
        await runChecked(host, [this.config.occtlPath, '-s', this.paths.occtlSocket, 'reload'], { timeoutMs: this.config.commandTimeoutMs });
      }
    });
    await this.cutWhere((s) => !this.users.has(s.username), 'cutting removed users');
  }

  /** Ends ocserv, also one a previous instance left running that this one never adopted. */
  stop(): Promise<void> {
    return this.lock.run(async () => {
      const sup = this.supervisor;
      this.supervisor = undefined;
      if (sup) await sup.stop();
      // Also when the wrapper had to be SIGKILLed and left ocserv behind.
      await this.endLeftover();
      // ocserv runs the disconnect script for the sessions it closed on SIGTERM.
      await this.foldEnded().catch((err) => this.ctx.logger.warn({ err: (err as Error).message }, 'reading ended ocserv sessions failed'));
    });
  }

  /**
   * The panel goes away and ocserv stays: polling stops, ocserv and every session keep running,
   * and sessions that end meanwhile leave records the next instance reports.
   */
  detach(): Promise<void> {
    return this.lock.run(async () => {
      const sup = this.supervisor;
      this.supervisor = undefined;
      await sup?.detach();
    });
  }

  async ports(): Promise<PortNeed[]> {
    const l = this.listeners;
    if (!l) return [];
    return [
      { port: l.tcp, protocol: 'tcp', purpose: `ocserv ${l.tcp}/tcp` },
      ...(l.udp !== undefined ? [{ port: l.udp, protocol: 'udp' as const, purpose: `ocserv ${l.udp}/udp (DTLS)` }] : []),
    ];
  }

  /**
   * `occtl --json show users` of the running ocserv under scope `<serverId>:<epoch>` (session
   * key `<scope>:<ID>`), after which the disconnect records written since the last poll are
   * reported. Rejects when ocserv does not answer or is between two runs.
   */
  async pollSessions(): Promise<SessionPoll> {
    const sup = this.supervisor;
    if (!sup) throw unavailable(`ocserv is not started on ${this.serverId}`);
    const epoch = sup.epoch;
    if (epoch === undefined) throw unavailable(`ocserv on ${this.serverId} is restarting`);
    const text = await this.showUsers();
    // A run only begins once the supervisor saw the one before end, so an unchanged epoch
    // means this answer came from that run.
    if (sup.epoch !== epoch) throw unavailable(`ocserv on ${this.serverId} restarted during the poll`);
    const scope = `${this.serverId}:${epoch}`;
    await this.foldEnded();
    return { kind: 'status-text', format: 'ocserv-json', texts: [{ scope, text }] };
  }

  /** Cuts every session of a user, or one session, with `occtl disconnect id` (which also invalidates its cookie). */
  async disconnect(target: { username: string } | { sessionKey: string }): Promise<void> {
    if ('username' in target) {
      if (typeof target.username !== 'string' || !USERNAME_PATTERN.test(target.username)) throw invalid(`username must match ${USERNAME_PATTERN.source}`);
      await this.cutWhere((s) => s.username === target.username, `disconnect ${target.username}`);
      return;
    }
    const m = /^(.*):(\d{1,15})$/.exec(String(target.sessionKey));
    if (!m || m[1] !== this.scope) throw notFound(`no ocserv session ${JSON.stringify(target.sessionKey)} on ${this.serverId}`);
    await this.disconnectId(m[2]!);
  }

  /** The `openconnect --config` profile with this server's certificate pin, for each endpoint. */
  async renderClientConfig(user: ClientUser, endpoints: readonly ClientEndpoint[]): Promise<string> {
    const username = user?.username;
    if (typeof username !== 'string' || !USERNAME_PATTERN.test(username)) throw invalid(`username must match ${USERNAME_PATTERN.source}`);
    const tcp = this.listeners?.tcp;
    const servers = endpoints.length
      ? endpoints.map((e) => ({ host: e.host, port: e.protocol === 'tcp' || tcp === undefined ? e.port : tcp }))
      : this.config.publicHost !== undefined && tcp !== undefined
        ? [{ host: this.config.publicHost, port: tcp }]
        : [];
    if (!servers.length) throw invalid('no endpoints for the profile: pass them or set publicHost and listeners');
    const pin = await this.certificatePin();
    return renderClientProfile({ username, servers: dedupe(servers), pin, title: `${username} @ ${this.serverId}` });
  }

  /** The pin customers give `openconnect --servercert` or check in AnyConnect's certificate prompt. */
  async customerFacts(): Promise<CustomerFact[]> {
    return [{ key: 'certificate_pin', label: 'Server certificate pin', value: await this.certificatePin() }];
  }

  /** `pin-sha256:…` of the server certificate (issued from the panel PKI on first use). */
  async certificatePin(): Promise<string> {
    if (this.pin === undefined) await this.lock.run(() => this.ensureCertificate());
    return this.pin!;
  }

  /** For tests and /health. */
  describe(): { pid: number | undefined; epoch: string | undefined; adopted: boolean; scope: string; restarts: number; occtlSocket: string; endedDir: string } {
    const sup = this.supervisor;
    return { pid: sup?.pid, epoch: sup?.epoch, adopted: sup?.adopted ?? false, scope: this.scope, restarts: sup?.restarts ?? 0, occtlSocket: this.paths.occtlSocket, endedDir: this.paths.ended };
  }

  // ---- internals ----

  /** `<serverId>:<epoch>`; ends in `:` (matching no key) while no run is known. */
  private get scope(): string {
    return `${this.serverId}:${this.supervisor?.epoch ?? ''}`;
  }

  private parseListeners(list: DesiredState['listeners']): { tcp: number; udp?: number } {
    let tcp: number | undefined;
    let udp: number | undefined;
    for (const [i, l] of list.entries()) {
      const port = assertPort(l?.port, `listeners[${i}].port`);
      const proto = assertTransport(l?.protocol, `listeners[${i}].protocol`);
      if (proto === 'tcp') {
        if (tcp !== undefined) throw invalid('ocserv listens on one TCP port');
        tcp = port;
      } else {
        if (udp !== undefined) throw invalid('ocserv listens on one UDP port');
        udp = port;
      }
    }
    if (tcp === undefined) throw invalid('ocserv needs a TCP listener');
    return udp === undefined ? { tcp } : { tcp, udp };
  }

  private renderConf(l: { tcp: number; udp?: number }): string {
    return renderServerConfig({
      tcpPort: l.tcp,
      ...(l.udp !== undefined ? { udpPort: l.udp } : {}),
      ...(this.config.listenHost !== undefined ? { listenHost: this.config.listenHost } : {}),
      passwdPath: this.paths.passwd,
      perUserDir: this.paths.perUser,
      disconnectScript: this.paths.script,
      socketPath: this.paths.socket,
      occtlSocketPath: this.paths.occtlSocket,
      pidPath: this.paths.pid,
      certPath: this.paths.cert,
      keyPath: this.paths.key,
      runAsUser: this.config.runAsUser,
      runAsGroup: this.config.runAsGroup,
      isolateWorkers: this.config.isolateWorkers,
      maxClients: this.config.maxClients,
      maxSameClients: this.config.maxSameClients,
      device: this.config.device,
      network: this.network.network,
      netmask: this.network.netmask,
      dns: this.config.dns,
      routes: this.config.routes,
      keepaliveSec: this.config.keepaliveSec,
      dpdSec: this.config.dpdSec,
      cookieTimeoutSec: this.config.cookieTimeoutSec,
      maxBanScore: this.config.maxBanScore,
      logLevel: this.config.logLevel,
    });
  }

  private async ensureDirs(): Promise<void> {
    const { host } = this.ctx;
    await host.mkdirp(path.posix.dirname(this.paths.conf), 0o700);
    await host.mkdirp(path.posix.dirname(this.paths.socket), 0o755);
    await host.mkdirp(this.paths.ended, 0o700);
    await host.mkdirp(this.paths.perUser, 0o755);
  }

  /** The panel PKI's certificate for this server (or the operator's), and its pin. */
  private async ensureCertificate(): Promise<void> {
    const { host } = this.ctx;
    if (this.config.certificatePath) {
      const pem = (await host.readFile(this.paths.cert)).toString('utf8');
      this.pin = certificatePin(pem);
      return;
    }
    const publicHost = this.config.publicHost;
    const san = publicHost === undefined ? {} : net.isIP(publicHost) ? { ipAddresses: [publicHost] } : { dnsNames: [publicHost] };
    const bundle = await this.ctx.pki.serverCertificate(this.serverCommonName, san);
    await host.mkdirp(path.posix.dirname(this.paths.cert), 0o700);
    await writeIfChanged(host, this.paths.key, bundle.privateKey, 0o600);
    await writeIfChanged(host, this.paths.cert, bundle.certificate, 0o644);
    this.pin = certificatePin(bundle.certificate);
  }

  /** Returns whether anything changed. */
  private async writePerUser(users: ReadonlyArray<{ username: string; maxSameClients?: number }>): Promise<boolean> {
    const { host } = this.ctx;
    let changed = false;
    if (!this.perUserCleared) {
      // Files of users dropped while the panel was down must not linger. One by one, not the
      // whole directory: an adopted ocserv reads it at every login.
      const wanted = new Set(users.map((u) => u.username));
      const r = await host.run(['find', this.paths.perUser, '-mindepth', '1', '-maxdepth', '1', '-printf', '%f\\n'], { timeoutMs: this.config.commandTimeoutMs });
      if (r.code !== 0) throw unavailable(`listing ${this.paths.perUser} on ${this.serverId} failed: ${r.stderr.trim().slice(0, 200)}`);
      for (const name of r.stdout.split('\n')) {
        if (name && !wanted.has(name)) await host.remove(path.posix.join(this.paths.perUser, name));
      }
      this.perUserCleared = true;
    }
    const next = new Map<string, string>();
    for (const u of users) {
      const text = renderPerUserConfig(u.maxSameClients !== undefined ? { maxSameClients: u.maxSameClients } : {});
      next.set(u.username, text);
      if (this.perUserWritten.get(u.username) !== text) {
        await host.writeFileAtomic(path.posix.join(this.paths.perUser, u.username), text, 0o644);
        changed = true;
      }
    }
    for (const name of this.perUserWritten.keys()) {
      if (!next.has(name)) {
        await host.remove(path.posix.join(this.paths.perUser, name));
        changed = true;
      }
    }
    this.perUserWritten = next;
    return changed;
  }

  private start(): void {
    const { host } = this.ctx;
    const supervisor = new ProcessSupervisor({
      host,
      // -f: ocserv stays in the foreground, so the wrapper's child is its main process.
      argv: ['sh', this.paths.runWrapper, this.config.ocservPath, '-f', '-c', this.paths.conf],
      name: `ocserv ${this.serverId}`,
      logger: this.ctx.logger.child({ plugin: 'ocserv' }),
      initialBackoffMs: this.config.restartInitialMs,
      maxBackoffMs: this.config.restartMaxMs,
      startTimeoutMs: this.config.startTimeoutMs,
      detached: { pidFile: this.paths.runPid, logFile: this.paths.log },
      // Not run when a live ocserv is adopted: its sockets are in use.
      beforeStart: async () => {
        await this.endLeftover();
        await host.writeFileAtomic(this.paths.conf, this.confText, 0o600);
        await host.remove(this.paths.occtlSocket);
      },
    });
    this.supervisor = supervisor;
    supervisor.start();
  }

  /**
   * Ends an ocserv of this state directory that no keeper run accounts for (its wrapper was
   * killed, or it runs an older argv), found by the pid file ocserv itself writes: it would
   * hold the ports and sockets the next run needs. SIGTERM, so it records its sessions, then
   * SIGKILL; bounded.
   */
  private async endLeftover(): Promise<void> {
    const { host } = this.ctx;
    const text = (await host.readFile(this.paths.pid).catch(() => null))?.toString('utf8').trim();
    if (!text || !/^\d{1,10}$/.test(text)) return;
    const alive = async (): Promise<boolean> => {
      const r = await host.run(['cat', `/proc/${text}/stat`], { timeoutMs: this.config.commandTimeoutMs });
      // ocserv names its main process ocserv-main; anything else now holding that pid is not ours.
      return r.code === 0 && /^\d+ \(ocserv-main\) [^Z]/.test(r.stdout);
    };
    if (!(await alive())) return;
    this.ctx.logger.warn({ pid: Number(text) }, 'ending an ocserv no supervisor accounts for');
    await host.run(['kill', '-s', 'TERM', '--', text], { timeoutMs: this.config.commandTimeoutMs });
    const end = Date.now() + 10_000;
    while (Date.now() < end) {
      await new Promise((r) => setTimeout(r, 100));
      if (!(await alive())) return;
    }
    await host.run(['kill', '-s', 'KILL', '--', text], { timeoutMs: this.config.commandTimeoutMs });
  }

  /** Until `occtl show status` answers (bounded by startTimeoutMs, real time). */
  private async waitReady(): Promise<void> {
    const end = Date.now() + this.config.startTimeoutMs;
    let last = '';
    for (;;) {
      try {
        const r = await this.ctx.host.run([this.config.occtlPath, '-s', this.paths.occtlSocket, 'show', 'status'], { timeoutMs: 5_000 });
        if (r.code === 0 && this.supervisor?.isRunning) return;
        last = (r.stderr || r.stdout).trim().slice(0, 300);
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > end) throw unavailable(`ocserv on ${this.serverId} did not answer occtl within ${this.config.startTimeoutMs} ms: ${last}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private async showUsers(): Promise<string> {
    const r = await runChecked(this.ctx.host, [this.config.occtlPath, '-s', this.paths.occtlSocket, '--json', 'show', 'users'], { timeoutMs: this.config.commandTimeoutMs });
    return r.stdout;
  }

  private async disconnectId(id: string): Promise<void> {
    const r = await this.ctx.host.run([this.config.occtlPath, '-s', this.paths.occtlSocket, 'disconnect', 'id', id], { timeoutMs: this.config.commandTimeoutMs });
    // Non-zero when the session is already gone: the cut is done either way.
    if (r.code !== 0) this.ctx.logger.debug({ id, out: (r.stderr || r.stdout).trim() }, 'occtl disconnect id: no such session');
  }

  private async cutWhere(match: (s: StatusTextSession) => boolean, what: string): Promise<void> {
    if (!this.supervisor) return;
    let text: string;
    try {
      text = await this.showUsers();
    } catch (e) {
      throw unavailable(`${what} on ${this.serverId} failed: ${(e as Error).message}`);
    }
    const { sessions } = parseStatusText({ format: 'ocserv-json', protocol: 'cisco', text });
    for (const s of sessions) if (match(s)) await this.disconnectId(s.id);
  }

  /** Reports the disconnect records not reported yet, exactly once (see `EndedRecordFolder`). */
  private foldEnded(): Promise<void> {
    return this.endedRecords.fold();
  }

}

function dedupe<T extends { host: string; port: number }>(list: readonly T[]): T[] {
  const seen = new Set<string>();
  return list.filter((s) => {
    const k = `${s.host}:${s.port}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

async function writeIfChanged(host: PluginContext<unknown>['host'], file: string, content: string, mode: number): Promise<void> {
  try {
    if ((await host.readFile(file)).toString('utf8') === content) return;
  } catch {
    /* missing: write it */
  }
  await host.writeFileAtomic(file, content, mode);
}

/** The Cisco AnyConnect protocol plugin on ocserv. `create()` returns an {@link OcservPlugin}. */
const ocservPlugin = defineProtocolPlugin<OcservConfig>({
  id: 'cisco',
  apiVersion: '2.0',
  capabilities: OCSERV_CAPABILITIES,
  requirements: [
    { program: 'ocserv', debianPackages: ['ocserv'] },
    { program: 'occtl', debianPackages: ['ocserv'] },
  ],
  configSchema: ocservConfigSchema,
  create: (ctx) => new OcservPlugin(ctx),
});

export default ocservPlugin;
