import net from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import {
  AvailabilityProbe,
  assertCommonName,
  assertHost,
  assertIp,
  assertPort,
  assertSafePath,
  assertTransport,
  defineProtocolPlugin,
  EndedRecordFolder,
  intToIpv4,
  invalid,
  ipv4Range,
  nthSubnet,
  notFound,
  parseIpv4Subnet,
  ProcessSupervisor,
  runChecked,
  SerialLock,
  supervisorBackoffConfig,
  daemonTimeoutConfig,
  unavailable,
  USERNAME_PATTERN,
  type Availability,
  type ClientEndpoint,
  type ClientUser,
  type CustomerFact,
  type DesiredState,
  type LiveSession,
  type PluginCapabilities,
  type PluginContext,
  type PortNeed,
  type ProtocolPluginInstance,
  type SessionPoll,
} from '../../core';
import {
  chapWord,
  IKE_ENDED_RE,
  parseIkeEnded,
  parseIkeSas,
  parsePppEnded,
  parsePppSession,
  PPP_ENDED_RE,
  renderChapSecrets,
  renderCharonLauncher,
  renderClientProfile,
  renderPppHook,
  renderPppOptions,
  renderStrongswanConf,
  renderSwanctlConf,
  renderXl2tpdConf,
  runIdOfEpoch,
  RUN_ID_RE,
  type IkeEndedRecord,
  type SwanctlUser,
} from './render';
import { ViciSession, type ViciMessage } from './vici';

export * from './render';
export { ViciSession, encodeMessage, decodeMessage } from './vici';

const DEFAULT_IKE_PROPOSALS = ['aes256-sha256-modp2048', 'aes256-sha256-curve25519', 'aes256-sha1-modp2048', 'aes128-sha1-modp2048', 'aes256-sha1-modp1024', 'aes128-sha1-modp1024', '3des-sha1-modp1024', 'default'];
const DEFAULT_ESP_PROPOSALS = ['aes256-sha256', 'aes256-sha1', 'aes128-sha1', '3des-sha1', 'default'];

/** Plugin settings; every field has a default, so `{}` is a valid configuration. */
export const l2tpConfigSchema = z.object({
  charonPath: z.string().default('/usr/lib/ipsec/charon'),
  swanctlPath: z.string().default('swanctl'),
  xl2tpdPath: z.string().default('xl2tpd'),
  pppdPath: z.string().default('/usr/sbin/pppd'),
  /** Run xl2tpd + pppd (L2TP/IPsec). Off: IKEv2 only. */
  l2tp: z.boolean().default(true),
  /**
   * charon hard-codes /var/run/charon.pid: run it in a private mount namespace with its own
   * /run, so it cannot collide with a system charon (or another instance on the same host).
   */
  privateRun: z.boolean().default(true),
  /** Userspace ESP (kernel-libipsec) for kernels without XFRM ESP; tunnel mode only, so L2TP's transport mode cannot use it. */
  userspaceEsp: z.boolean().default(false),
  /** pppd reads this fixed path (compiled in); the plugin owns the file. */
  chapSecretsPath: z.string().default('/etc/ppp/chap-secrets'),
  /** CN of the gateway certificate from the panel PKI; default `l2tp.<serverId>`. */
  serverCommonName: z.string().optional(),
  /** The address customers dial: the gateway's IKEv2 identity and a SAN of its certificate. */
  publicHost: z.string().optional(),
  listenHost: z.string().optional(),
  /** What IKEv2 clients reach through the tunnel. */
  trafficSelectors: z.array(z.string()).default(['0.0.0.0/0']),
  dns: z.array(z.string()).default([]),
  ikeProposals: z.array(z.string()).default(DEFAULT_IKE_PROPOSALS),
  espProposals: z.array(z.string()).default(DEFAULT_ESP_PROPOSALS),
  l2tpPort: z.number().int().min(1).max(65535).default(1701),
  pppName: z.string().regex(/^[a-z0-9_.-]{1,32}$/).default('polygate-l2tp'),
  mtu: z.number().int().min(576).max(1500).default(1400),
  logLevel: z.number().int().min(-1).max(4).default(1),
  ...supervisorBackoffConfig,
  ...daemonTimeoutConfig,
});

export type L2tpConfig = z.infer<typeof l2tpConfigSchema>;

export const L2TP_CAPABILITIES: PluginCapabilities = {
  gatesLogins: false,
  reportsEndedSessions: true,
  poll: 'sessions',
  takesListeners: true,
  settings: ['ipsec_psk'],
  clientConfig: { extension: 'sswan', mediaType: 'application/vnd.strongswan.profile' },
};

const IKEV2_CONN = 'ikev2-eap';
/** What swanctl reads credentials from; it fails when one is missing. */
export const SWANCTL_DIRS = ['x509', 'x509ca', 'x509ocsp', 'x509aa', 'x509ac', 'x509crl', 'pubkey', 'private', 'rsa', 'ecdsa', 'bliss', 'pkcs8', 'pkcs12'] as const;
/** Linux sun_path limit including the NUL. */
const MAX_SOCKET_PATH = 107;

interface Paths {
  strongswanConf: string;
  swanctlDir: string;
  swanctlConf: string;
  cert: string;
  key: string;
  ca: string;
  vici: string;
  charonLog: string;
  charonLauncher: string;
  charonPid: string;
  charonOut: string;
  xl2tpdConf: string;
  xl2tpdSecrets: string;
  xl2tpdPid: string;
  xl2tpdCtl: string;
  xl2tpdRunPid: string;
  xl2tpdOut: string;
  pppOptions: string;
  ipUp: string;
  ipDown: string;
  sessions: string;
  ended: string;
  reported: string;
  ikeSessions: string;
  chapSecrets: string;
}

/** What a detached instance leaves for the next one: the IKEv2 sessions it followed, by charon run. */
interface IkeSnapshot {
  v: 1;
  runId: string;
  sessions: Array<{ uniqueId: string; current: string; username: string; remoteAddress: string; connectedAt: number; children: Array<[id: string, rx: number, tx: number]> }>;
}

/** An IKEv2 session being followed between polls: every CHILD_SA's latest counters (a rekey starts a new one at 0). */
interface TrackedIke {
  runId: string;
  uniqueId: string;
  username: string;
  remoteAddress: string;
  connectedAt: number;
  children: Map<string, { rx: number; tx: number }>;
  ended: boolean;
}

/**
 * L2TP/IPsec and IKEv2 on real strongSwan (charon, configured through swanctl, watched over
 * vici), xl2tpd and pppd, through a `Host` only (main server and nodes alike).
 *
 * Who may connect: neither charon nor pppd asks core at login time, so the plugin declares
 * `gatesLogins: false` and core hands `apply` exactly the users allowed now. From that list the
 * plugin rewrites, atomically and mode 0600, swanctl.conf's EAP secrets (IKEv2 EAP-MSCHAPv2)
 * and pppd's chap-secrets (L2TP MS-CHAPv2), loads the secrets into charon with `swanctl
 * --load-all --clear`, then cuts the sessions of users no longer listed: IKEv2 by terminating
 * the IKE_SA over vici, L2TP by SIGTERM to the session's pppd (never SIGHUP, which makes pppd
 * redial). The PSK (`ipsec_psk`) is the IKEv1 connection's secret; a change is written and
 * loaded at once, so the next negotiation needs the new one.
 *
 * Daemons: charon (through a launcher script, see `renderCharonLauncher`) and xl2tpd run
 * detached under the kit's keeper, with pid and output files in the state directory, so a
 * panel restart or a lost SSH channel leaves them and every SA and pppd session running.
 * `detach()` lets go of them; the next instance on the same host and state directory adopts
 * them (same pids, no reload) and follows the IKEv2 sessions on under the same keys, from the
 * snapshot the previous instance left in `ike-sessions.json`.
 *
 * Accounting: IKEv2 from the CHILD_SA byte counters (vici `list-sas`), a session per IKE_SA
 * keyed `<serverId>:<runId>:<uniqueid>`; the run id is charon's epoch (`e<pid>s<start time>`),
 * equal across adoption and new at each real charon start, as unique ids restart. A vici
 * connection held open receives `child-updown` / `child-rekey` / `ike-updown`: a CHILD_SA's
 * last counters come from them, and when the IKE_SA goes down its final total is
 * written to a record on the host first, then reported once. L2TP from pppd's hooks: `ip-up`
 * records the session (pid, interface, user), interim counters are the interface's statistics,
 * `ip-down` writes `BYTES_SENT` / `BYTES_RCVD` to a record, also while no instance is attached.
 * Records go to `ctx.sessionEnded` through the kit's EndedRecordFolder: a file is removed only
 * once the panel holds its session durably, and is never taken twice.
 *
 * Limit: charon's updown hook gets no byte counters, so an IKEv2 session that ends while no
 * instance is attached is found gone by the next one and ends with the counters of the last
 * snapshot (the last poll before detach, or detach itself): what it moved after that is lost.
 *
 * @example
 * const l2tp = l2tpPlugin.create(ctx);
 * await l2tp.apply({ listeners: [{ port: 500, protocol: 'udp' }, { port: 4500, protocol: 'udp' }], users: [{ username: 'alice', password: 's3cret', material: {} }], settings: { ipsec_psk: 'shared-secret' } });
 */
export class L2tpIpsecPlugin implements ProtocolPluginInstance {
  readonly serverId: string;
  readonly serverCommonName: string;
  readonly serverIdentity: string;
  readonly paths: Paths;
  private readonly config: L2tpConfig;
  private readonly pools: { ikev2: string; localIp: string; rangeStart: string; rangeEnd: string };
  private readonly lock = new SerialLock();
  private charon: ProcessSupervisor | undefined;
  private xl2tpd: ProcessSupervisor | undefined;
  /** Names the charon run in session keys: from its epoch, so it survives adoption and changes with a restart. */
  private runId = '';
  /** The charon run whose configuration is loaded and whose events are watched. */
  private loadedRunId = '';
  /** The charon run for which the previous instance's IKEv2 sessions were taken over. */
  private restoredFor = '';
  private snapshotWritten = '';
  private saving: Promise<void> = Promise.resolve();
  private monitor: ViciSession | undefined;
  private listeners: { ike: number; nat: number } | undefined;
  private users = new Set<string>();
  private maxSessions = new Map<string, number>();
  private written = new Map<string, string>();
  private readonly tracked = new Map<string, TrackedIke>();
  /**
   * An IKE rekey gives the IKE_SA a new unique id while its CHILD_SAs (and their counters) move
   * over: `<runId>:<new id>` → the id the session was first seen under, so its key stays the same.
   */
  private readonly originOf = new Map<string, string>();
  /** Session key → the IKE_SA's unique id now (for terminate). */
  private readonly currentOf = new Map<string, string>();
  /** Keys already reported ended: a list-sas answer in flight must not bring one back. */
  private readonly endedKeys = new Set<string>();
  private readonly pppSeen = new Map<string, { rx: number; tx: number }>();
  private readonly ended: EndedRecordFolder;

  constructor(private readonly ctx: PluginContext<L2tpConfig>) {
    // The operator's publicHost wins; else the address core knows customers dial.
    this.config = { ...ctx.config, publicHost: ctx.config.publicHost ?? ctx.publicHost };
    this.serverId = ctx.serverId;
    const stateDir = assertSafePath(ctx.stateDir, 'l2tp state directory');
    for (const d of this.config.dns) assertIp(d, 'dns');
    if (this.config.publicHost !== undefined) assertHost(this.config.publicHost, 'publicHost');
    if (this.config.listenHost !== undefined) assertIp(this.config.listenHost, 'listenHost');
    this.serverCommonName = assertCommonName(this.config.serverCommonName ?? `l2tp.${this.serverId}`, 'serverCommonName');
    this.serverIdentity = this.config.publicHost ?? this.serverCommonName.replace(/_/g, '-');
    const pool = parseIpv4Subnet(ctx.clientPool, 'clientPool');
    if (pool.prefix > 28) throw invalid(`clientPool ${ctx.clientPool} is too small: L2TP and IKEv2 each take half of it`);
    // Halves of one pool: L2TP's pppd addresses below, IKEv2's virtual IPs above, never overlapping.
    const low = nthSubnet(ctx.clientPool, pool.prefix + 1, 0);
    const [lo, hi] = ipv4Range(low);
    this.pools = { ikev2: nthSubnet(ctx.clientPool, pool.prefix + 1, 1), localIp: intToIpv4(lo + 1), rangeStart: intToIpv4(lo + 2), rangeEnd: intToIpv4(hi - 1) };
    const p = (...parts: string[]) => path.posix.join(stateDir, ...parts);
    this.paths = {
      strongswanConf: p('strongswan.conf'),
      swanctlDir: p('swanctl'),
      swanctlConf: p('swanctl', 'swanctl.conf'),
      cert: p('swanctl', 'x509', 'server.crt'),
      key: p('swanctl', 'private', 'server.key'),
      ca: p('swanctl', 'x509ca', 'panel-ca.crt'),
      vici: p('charon.vici'),
      charonLog: p('charon.log'),
      charonLauncher: p('charon-launch'),
      charonPid: p('charon.pid'),
      charonOut: p('charon.out'),
      xl2tpdConf: p('xl2tpd.conf'),
      xl2tpdSecrets: p('l2tp-secrets'),
      xl2tpdPid: p('xl2tpd.pid'),
      xl2tpdCtl: p('xl2tpd.ctl'),
      // Not xl2tpd.pid: xl2tpd refuses to start when its own pid file names a live process.
      xl2tpdRunPid: p('xl2tpd-run.pid'),
      xl2tpdOut: p('xl2tpd.out'),
      pppOptions: p('options.xl2tpd'),
      ipUp: p('ppp-ip-up.sh'),
      ipDown: p('ppp-ip-down.sh'),
      sessions: p('ppp-sessions'),
      ended: p('ended'),
      reported: p('ended-reported.json'),
      ikeSessions: p('ike-sessions.json'),
      chapSecrets: assertSafePath(this.config.chapSecretsPath, 'chapSecretsPath'),
    };
    this.ended = new EndedRecordFolder({
      host: ctx.host,
      dir: this.paths.ended,
      reportedPath: this.paths.reported,
      isRecord: (n) => IKE_ENDED_RE.test(n) || PPP_ENDED_RE.test(n),
      parse: (name, text) => {
        const session = this.sessionOfRecord(name, text);
        return session && { session, reason: 'disconnected' };
      },
      report: (e) => ctx.sessionEnded(e),
      logger: ctx.logger,
      timeoutMs: this.config.commandTimeoutMs,
    });
    if (Buffer.byteLength(this.paths.vici) >= MAX_SOCKET_PATH) throw invalid(`vici socket path ${this.paths.vici} is too long; use a shorter state directory`);
  }

  async availability(): Promise<Availability> {
    const probe = new AvailabilityProbe(this.ctx.host);
    await probe.answers([this.config.charonPath, '--version'], /strongSwan/i);
    await probe.answers([this.config.swanctlPath, '--help'], /swanctl/i);
    if (this.config.l2tp) {
      await probe.answers([this.config.xl2tpdPath, '-v'], /xl2tpd/i);
      await probe.exists(this.config.pppdPath);
    }
    // The launcher execs charon under its own path as argv[0] (bash's exec -a).
    await probe.answers(['bash', '--version'], /bash/i);
    if (this.config.privateRun) await probe.answers(['unshare', '--version'], /unshare/);
    if (this.config.userspaceEsp) await probe.exists('/dev/net/tun');
    return probe.verdict();
  }

  /**
   * Makes charon and pppd allow exactly `state.users` with the PSK in `state.settings`: rewrites
   * swanctl.conf and chap-secrets, (re)starts or reloads what changed, then cuts everyone else.
   */
  async apply(state: DesiredState): Promise<void> {
    const listeners = this.parseListeners(state?.listeners ?? []);
    const users: SwanctlUser[] = [];
    const maxSessions = new Map<string, number>();
    for (const u of state?.users ?? []) {
      if (!u || typeof u.username !== 'string' || !USERNAME_PATTERN.test(u.username)) {
        this.ctx.logger.warn({ username: u?.username }, 'user skipped: not a valid username');
        continue;
      }
      if (typeof u.password !== 'string' || !u.password) {
        this.ctx.logger.warn({ username: u.username }, 'user skipped: no L2TP password');
        continue;
      }
      try {
        chapWord(u.password, 'password');
      } catch {
        this.ctx.logger.warn({ username: u.username }, 'user skipped: the password cannot be written to chap-secrets (control character or longer than 255)');
        continue;
      }
      users.push({ username: u.username, password: u.password });
      if (Number.isInteger(u.maxSessions) && u.maxSessions! >= 0) maxSessions.set(u.username, u.maxSessions!);
    }
    const rawPsk = state?.settings?.ipsec_psk;
    const psk = typeof rawPsk === 'string' && rawPsk.length ? rawPsk : undefined;
    await this.lock.run(async () => {
      this.users = new Set(users.map((u) => u.username));
      this.maxSessions = maxSessions;
      await this.ensureDirs();
      await this.ensureCertificate();
      const strongswanChanged = await this.write(this.paths.strongswanConf, this.renderStrongswan(listeners), 0o644);
      const launcherChanged = await this.write(
        this.paths.charonLauncher,
        renderCharonLauncher({ charonPath: this.config.charonPath, strongswanConf: this.paths.strongswanConf, privateRun: this.config.privateRun }),
        0o755,
      );
      const swanctlChanged = await this.write(this.paths.swanctlConf, this.renderSwanctl(users, psk), 0o600);
      this.listeners = listeners;
      let xl2tpdChanged = false;
      if (this.config.l2tp) {
        await this.write(this.paths.chapSecrets, renderChapSecrets(users, this.config.pppName), 0o600);
        await this.write(this.paths.ipUp, renderPppHook('up', { sessionsDir: this.paths.sessions, endedDir: this.paths.ended }), 0o700);
        await this.write(this.paths.ipDown, renderPppHook('down', { sessionsDir: this.paths.sessions, endedDir: this.paths.ended }), 0o700);
        await this.write(this.paths.pppOptions, renderPppOptions({ ipUp: this.paths.ipUp, ipDown: this.paths.ipDown, pppName: this.config.pppName, dns: this.config.dns, mtu: this.config.mtu }), 0o644);
        await this.write(this.paths.xl2tpdSecrets, '# L2TP tunnel secrets: none (IPsec protects the tunnel).\n', 0o600);
        xl2tpdChanged = await this.write(this.paths.xl2tpdConf, this.renderXl2tpd(), 0o644);
      }
      // A charon left running by the previous instance is adopted as it is (SAs untouched) unless
      // what it was started with changed meanwhile.
      const restartCharon = async (c: ProcessSupervisor) => {
        await c.restart();
        await this.waitReady();
      };
      if (!this.charon) {
        this.charon = this.charonSupervisor();
        this.charon.start();
        await this.waitReady();
        if (this.charon.adopted && (strongswanChanged || launcherChanged)) await restartCharon(this.charon);
      } else if (strongswanChanged || launcherChanged) await restartCharon(this.charon);
      if (this.loadedRunId !== this.runId || swanctlChanged) await this.loadConfig();
      if (this.config.l2tp) {
        if (!this.xl2tpd) {
          const sup = this.xl2tpdSupervisor();
          this.xl2tpd = sup;
          await startAndSee(sup, this.config.startTimeoutMs);
          if (xl2tpdChanged && sup.adopted) await sup.restart();
        } else if (xl2tpdChanged) await this.xl2tpd.restart();
      }
    });
    await this.cutWhere((username) => !this.users.has(username), 'cutting removed users');
  }

  /**
   * Stops charon and xl2tpd for good (the protocol or node is removed), also when they were
   * left running by an earlier instance and this one never applied; every session ends and is
   * reported with its final counters.
   */
  stop(): Promise<void> {
    return this.lock.run(async () => {
      // An instance that never applied still owns the daemons a detached one left behind.
      const x = this.xl2tpd ?? (this.config.l2tp ? ((await this.leftRunning(() => this.xl2tpdSupervisor(), this.xl2tpdSpec())) ?? undefined) : undefined);
      this.xl2tpd = undefined;
      // xl2tpd's SIGTERM ends its pppd children, which run ip-down with their final counters.
      if (x) await x.stop();
      const c = this.charon ?? ((await this.leftRunning(() => this.charonSupervisor(), this.charonSpec())) ?? undefined);
      if (c && !this.charon) {
        // Its sessions as the detached instance left them, brought up to date, end with it.
        await this.restoreIke(this.runId).catch(() => undefined);
        await this.pollIke().catch(() => undefined);
      }
      this.charon = undefined;
      if (c) await c.stop();
      // Give the watcher a moment for the child-updown events charon sends while it shuts down.
      await new Promise((r) => setTimeout(r, 200));
      this.monitor?.close();
      this.monitor = undefined;
      for (const t of this.tracked.values()) if (!t.ended) await this.recordIkeEnded(t).catch(() => undefined);
      await this.pollPpp().catch(() => undefined);
      await this.foldEnded().catch((err) => this.ctx.logger.warn({ err: (err as Error).message }, 'reading ended L2TP/IKEv2 sessions failed'));
      // Every session of the snapshot has ended with its run: none is for a next instance to take over.
      await this.ctx.host.remove(this.paths.ikeSessions).catch(() => undefined);
      this.snapshotWritten = '';
    });
  }

  /**
   * The panel is going away (shutdown, restart, upgrade): stops polling and watching, closes
   * the vici connection, and leaves charon, xl2tpd, their SAs and pppd sessions running. What
   * it followed of each IKEv2 session (first unique id, CHILD_SA counters) stays on the host
   * for the instance that adopts them.
   */
  detach(): Promise<void> {
    return this.lock.run(async () => {
      const monitor = this.monitor;
      this.monitor = undefined;
      monitor?.close();
      if (this.charon && this.runId) await this.saveIke(this.runId).catch((err) => this.ctx.logger.warn({ err: (err as Error).message }, 'saving the IKEv2 sessions for the next instance failed'));
      const x = this.xl2tpd;
      this.xl2tpd = undefined;
      if (x) await x.detach();
      const c = this.charon;
      this.charon = undefined;
      if (c) await c.detach();
    });
  }

  /**
   * A supervisor holding the daemon an earlier instance left running, or null when there is
   * none: looked at first, so that nothing is started only to be stopped.
   */
  private async leftRunning(make: () => ProcessSupervisor, spec: { argv: readonly string[]; pidFile: string }): Promise<ProcessSupervisor | null> {
    const text = (await this.ctx.host.readFile(spec.pidFile).catch(() => null))?.toString('utf8').trim();
    if (!text || !/^\d{1,10}$/.test(text)) return null;
    const r = await this.ctx.host.run(['cat', `/proc/${text}/cmdline`], { timeoutMs: this.config.commandTimeoutMs }).catch(() => null);
    const argv = r?.code === 0 ? r.stdout.split('\0') : [];
    if (argv[argv.length - 1] === '') argv.pop();
    const [want0, ...wantRest] = spec.argv;
    const [have0, ...haveRest] = argv;
    if (have0 === undefined || path.posix.basename(have0) !== path.posix.basename(want0!) || haveRest.join('\0') !== wantRest.join('\0')) return null;
    // Should it end just now, the supervisor starts a new run instead, which the caller stops.
    const sup = make();
    await startAndSee(sup, this.config.startTimeoutMs);
    return sup;
  }

  async ports(): Promise<PortNeed[]> {
    const l = this.listeners;
    if (!l) return [];
    // 1701/udp is not claimed: xl2tpd must be reached only through IPsec transport mode, never opened to the world.
    return [
      { port: l.ike, protocol: 'udp', purpose: `IKE ${l.ike}/udp (strongSwan)` },
      { port: l.nat, protocol: 'udp', purpose: `IPsec NAT-T ${l.nat}/udp (strongSwan)` },
    ];
  }

  /** IKEv2 sessions from charon's SAs and L2TP sessions from pppd's hooks; then the ended records. */
  async pollSessions(): Promise<SessionPoll> {
    if (!this.charon) throw unavailable(`charon is not started on ${this.serverId}`);
    await this.lock.run(async () => {
      if (this.loadedRunId !== this.runId) {
        await this.waitReady();
        await this.loadConfig();
      }
    });
    // Before events are watched: a session the previous instance followed is taken over, not seen anew.
    await this.restoreIke(this.runId);
    await this.ensureMonitor();
    const sessions = [...(await this.pollIke()), ...(await this.pollPpp())];
    await this.foldEnded();
    await this.enforceMaxSessions(sessions);
    return { kind: 'sessions', sessions };
  }

  /** Cuts every session of a user, or one session by key. */
  async disconnect(target: { username: string } | { sessionKey: string }): Promise<void> {
    if ('username' in target) {
      if (typeof target.username !== 'string' || !USERNAME_PATTERN.test(target.username)) throw invalid(`username must match ${USERNAME_PATTERN.source}`);
      await this.cutWhere((u) => u === target.username, `disconnect ${target.username}`);
      return;
    }
    const key = String(target.sessionKey);
    const ppp = /^(.*):ppp:(\d{1,10})-\d{1,15}$/.exec(key);
    if (ppp && ppp[1] === this.serverId) {
      await this.signalPpp(Number(ppp[2]));
      return;
    }
    const ike = /^(.*):([a-z0-9]{4,32}):(\d{1,15})$/.exec(key);
    if (!ike || ike[1] !== this.serverId || ike[2] !== this.runId) throw notFound(`no L2TP/IKEv2 session ${JSON.stringify(key)} on ${this.serverId}`);
    await this.terminateIke(this.currentOf.get(key) ?? ike[3]!);
  }

  /** A strongSwan profile (`.sswan`) for IKEv2 with EAP-MSCHAPv2, with the panel CA to verify the gateway. */
  async renderClientConfig(user: ClientUser, endpoints: readonly ClientEndpoint[]): Promise<string> {
    const username = user?.username;
    if (typeof username !== 'string' || !USERNAME_PATTERN.test(username)) throw invalid(`username must match ${USERNAME_PATTERN.source}`);
    const hostName = endpoints[0]?.host ?? this.config.publicHost;
    if (hostName === undefined) throw invalid('no endpoint for the profile: pass one or set publicHost');
    return renderClientProfile({
      name: `${username} @ ${hostName} (IKEv2)`,
      host: hostName,
      port: this.listeners?.ike ?? 500,
      serverIdentity: this.serverIdentity,
      username,
      caCertificatePem: await this.ctx.pki.caCertificate(),
    });
  }

  /**
   * What a built-in IKEv2 client (iOS, macOS, Windows, Android) must be told besides the
   * credentials: the gateway's identity ("Remote ID"), which its certificate carries as a SAN.
   */
  async customerFacts(): Promise<readonly CustomerFact[]> {
    return [{ key: 'ikev2_remote_id', label: 'IKEv2 remote ID (server identity)', value: this.serverIdentity }];
  }

  /** For tests and /health. */
  describe(): {
    charonPid: number | undefined;
    xl2tpdPid: number | undefined;
    charonAdopted: boolean;
    xl2tpdAdopted: boolean;
    runId: string;
    viciSocket: string;
    endedDir: string;
    sessionsDir: string;
    ikev2Pool: string;
    l2tpLocalIp: string;
  } {
    return {
      charonPid: this.charon?.pid,
      xl2tpdPid: this.xl2tpd?.pid,
      charonAdopted: this.charon?.adopted ?? false,
      xl2tpdAdopted: this.xl2tpd?.adopted ?? false,
      runId: this.runId,
      viciSocket: this.paths.vici,
      endedDir: this.paths.ended,
      sessionsDir: this.paths.sessions,
      ikev2Pool: this.pools.ikev2,
      l2tpLocalIp: this.pools.localIp,
    };
  }

  // ---- configuration ----

  private parseListeners(list: DesiredState['listeners']): { ike: number; nat: number } {
    const udp: number[] = [];
    for (const [i, l] of list.entries()) {
      const port = assertPort(l?.port, `listeners[${i}].port`);
      if (assertTransport(l?.protocol, `listeners[${i}].protocol`) !== 'udp') throw invalid('IPsec listens on UDP only');
      udp.push(port);
    }
    if (udp.length > 2) throw invalid('IPsec takes two UDP listeners: IKE and NAT-T');
    return { ike: udp[0] ?? 500, nat: udp[1] ?? 4500 };
  }

  private renderStrongswan(l: { ike: number; nat: number }): string {
    return renderStrongswanConf({
      viciSocket: this.paths.vici,
      ikePort: l.ike,
      natPort: l.nat,
      userspaceEsp: this.config.userspaceEsp,
      extraPlugins: [],
      logPath: this.paths.charonLog,
      logLevel: this.config.logLevel,
    });
  }

  private renderSwanctl(users: readonly SwanctlUser[], psk: string | undefined): string {
    return renderSwanctlConf({
      ...(psk !== undefined ? { psk } : {}),
      users,
      serverIdentity: this.serverIdentity,
      certFile: 'server.crt',
      ikev2Pool: this.pools.ikev2,
      trafficSelectors: this.config.trafficSelectors,
      dns: this.config.dns,
      ...(this.config.listenHost !== undefined ? { listenAddress: this.config.listenHost } : {}),
      ikeProposals: this.config.ikeProposals,
      espProposals: this.config.espProposals,
      l2tp: this.config.l2tp,
    });
  }

  private renderXl2tpd(): string {
    return renderXl2tpdConf({
      port: this.config.l2tpPort,
      ...(this.config.listenHost !== undefined ? { listenAddress: this.config.listenHost } : {}),
      rangeStart: this.pools.rangeStart,
      rangeEnd: this.pools.rangeEnd,
      localIp: this.pools.localIp,
      pppOptionsPath: this.paths.pppOptions,
      pppName: this.config.pppName,
    });
  }

  /** Writes atomically when the content differs from what is on the host; returns whether it did. */
  private async write(file: string, content: string, mode: number): Promise<boolean> {
    if (this.written.get(file) === content) return false;
    const onDisk = (await this.ctx.host.readFile(file).catch(() => null))?.toString('utf8');
    this.written.set(file, content);
    if (onDisk === content) return false;
    await this.ctx.host.writeFileAtomic(file, content, mode);
    return true;
  }

  private async ensureDirs(): Promise<void> {
    const { host } = this.ctx;
    await host.mkdirp(path.posix.dirname(this.paths.strongswanConf), 0o700);
    await host.mkdirp(this.paths.swanctlDir, 0o700);
    for (const d of SWANCTL_DIRS) await host.mkdirp(path.posix.join(this.paths.swanctlDir, d), 0o700);
    await host.mkdirp(this.paths.ended, 0o700);
    await host.mkdirp(this.paths.sessions, 0o700);
    // No mode: /etc/ppp belongs to the system; only a missing directory is made.
    if (this.config.l2tp) await host.mkdirp(path.posix.dirname(this.paths.chapSecrets));
  }

  /** The gateway certificate from the panel PKI (SANs: its identity and CN), and the CA that issued it. */
  private async ensureCertificate(): Promise<void> {
    const dns = new Set<string>();
    const ips: string[] = [];
    for (const name of [this.serverIdentity, this.serverCommonName.replace(/_/g, '-')]) {
      if (net.isIP(name)) ips.push(name);
      else dns.add(name);
    }
    const bundle = await this.ctx.pki.serverCertificate(this.serverCommonName, { dnsNames: [...dns], ...(ips.length ? { ipAddresses: ips } : {}) });
    await this.write(this.paths.key, bundle.privateKey, 0o600);
    await this.write(this.paths.cert, bundle.certificate, 0o644);
    await this.write(this.paths.ca, await this.ctx.pki.caCertificate(), 0o644);
  }

  private swanctl(args: string[]): Promise<import('../../core').RunResult> {
    return runChecked(this.ctx.host, [this.config.swanctlPath, ...args, '--uri', `unix://${this.paths.vici}`], {
      timeoutMs: this.config.commandTimeoutMs,
      env: { SWANCTL_DIR: this.paths.swanctlDir, STRONGSWAN_CONF: this.paths.strongswanConf },
    });
  }

  /** Loads connections, pools and secrets; `--clear` drops secrets no longer in the file. */
  private async loadConfig(): Promise<void> {
    const runId = this.runId;
    await this.swanctl(['--load-all', '--clear', '--noprompt']);
    this.loadedRunId = runId;
  }

  // ---- daemons ----

  /**
   * charon runs detached (its keeper, not the panel, is its parent) through the launcher, so
   * the keeper's pid is charon's and an instance created later on this host adopts it.
   */
  private charonSpec(): { argv: string[]; pidFile: string; logFile: string } {
    return { argv: [this.paths.charonLauncher], pidFile: this.paths.charonPid, logFile: this.paths.charonOut };
  }

  private charonSupervisor(): ProcessSupervisor {
    const { host } = this.ctx;
    const spec = this.charonSpec();
    const supervisor = new ProcessSupervisor({
      host,
      argv: spec.argv,
      name: `charon ${this.serverId}`,
      logger: this.ctx.logger.child({ plugin: 'l2tp-ipsec' }),
      initialBackoffMs: this.config.restartInitialMs,
      maxBackoffMs: this.config.restartMaxMs,
      detached: { pidFile: spec.pidFile, logFile: spec.logFile },
      startTimeoutMs: this.config.startTimeoutMs,
      // Not run on adoption: the running charon keeps its socket.
      beforeStart: async () => {
        this.monitor?.close();
        this.monitor = undefined;
        await host.remove(this.paths.vici);
      },
    });
    supervisor.on('spawn', (_pid, run) => {
      if (!run.epoch) return;
      this.runId = runIdOfEpoch(run.epoch);
      // The instance that started it loaded its configuration; apply reloads only what changed.
      if (run.adopted) this.loadedRunId = this.runId;
    });
    supervisor.on('exit', () => {
      // SAs die with charon: what was tracked ends with its last counters.
      for (const t of this.tracked.values()) if (!t.ended) void this.recordIkeEnded(t).catch(() => undefined);
    });
    return supervisor;
  }

  private xl2tpdSpec(): { argv: string[]; pidFile: string; logFile: string } {
    const p = this.paths;
    return {
      argv: [this.config.xl2tpdPath, '-D', '-c', p.xl2tpdConf, '-s', p.xl2tpdSecrets, '-p', p.xl2tpdPid, '-C', p.xl2tpdCtl],
      pidFile: p.xl2tpdRunPid,
      logFile: p.xl2tpdOut,
    };
  }

  private xl2tpdSupervisor(): ProcessSupervisor {
    const { host } = this.ctx;
    const p = this.paths;
    const spec = this.xl2tpdSpec();
    return new ProcessSupervisor({
      host,
      argv: spec.argv,
      name: `xl2tpd ${this.serverId}`,
      logger: this.ctx.logger.child({ plugin: 'l2tp-ipsec' }),
      initialBackoffMs: this.config.restartInitialMs,
      maxBackoffMs: this.config.restartMaxMs,
      detached: { pidFile: spec.pidFile, logFile: spec.logFile },
      startTimeoutMs: this.config.startTimeoutMs,
      beforeStart: async () => {
        await host.remove(p.xl2tpdPid);
        await host.remove(p.xl2tpdCtl);
      },
    });
  }

  /** Until charon answers on vici (bounded by startTimeoutMs, real time). */
  private async waitReady(): Promise<void> {
    const end = Date.now() + this.config.startTimeoutMs;
    let last = '';
    for (;;) {
      let s: ViciSession | undefined;
      try {
        s = await ViciSession.open(this.ctx.host, this.paths.vici);
        await s.request('version', {}, 2_000);
        if (this.charon?.isRunning) return;
      } catch (e) {
        last = (e as Error).message;
      } finally {
        s?.close();
      }
      if (Date.now() > end) throw unavailable(`charon on ${this.serverId} did not answer on vici within ${this.config.startTimeoutMs} ms: ${last} ${this.charon?.lastExit?.tail.join(' | ') ?? ''}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  // ---- IKEv2 sessions ----

  private key(runId: string, uniqueId: string): string {
    return `${this.serverId}:${runId}:${uniqueId}`;
  }

  private async vici<T>(fn: (s: ViciSession) => Promise<T>): Promise<T> {
    const s = await ViciSession.open(this.ctx.host, this.paths.vici);
    try {
      return await fn(s);
    } finally {
      s.close();
    }
  }

  private async listSas(): Promise<ViciMessage[]> {
    const { events } = await this.vici((s) => s.request('list-sas', { noblock: 'yes' }, this.config.commandTimeoutMs, 'list-sa'));
    return events;
  }

  private track(runId: string, sa: ReturnType<typeof parseIkeSas>[number]): TrackedIke | null {
    let sessionId = this.originOf.get(`${runId}:${sa.uniqueId}`);
    if (sessionId === undefined) {
      sessionId = this.sessionOfChildren(runId, sa) ?? sa.uniqueId;
      if (sessionId !== sa.uniqueId) this.originOf.set(`${runId}:${sa.uniqueId}`, sessionId);
    }
    const key = this.key(runId, sessionId);
    if (this.endedKeys.has(key)) return null;
    this.currentOf.set(key, sa.uniqueId);
    let t = this.tracked.get(key);
    if (!t) {
      const now = Math.floor(this.ctx.clock.now().getTime() / 1000);
      t = { runId, uniqueId: sessionId, username: sa.username, remoteAddress: sa.remoteAddress, connectedAt: now - (sa.establishedSecAgo ?? 0), children: new Map(), ended: false };
      this.tracked.set(key, t);
    }
    for (const c of sa.children) {
      const prev = t.children.get(c.id);
      // Counters only grow; an event read after a poll must not take bytes back.
      t.children.set(c.id, { rx: Math.max(prev?.rx ?? 0, c.rxBytes), tx: Math.max(prev?.tx ?? 0, c.txBytes) });
    }
    return t;
  }

  /**
   * An IKE_SA seen under an id no session has: an IKE rekey nobody watched (the panel was away,
   * or its ike-rekey event is still on the way) moved a followed session's CHILD_SAs to it. A
   * CHILD_SA belongs to one IKE_SA at a time, so a shared one names the session.
   */
  private sessionOfChildren(runId: string, sa: ReturnType<typeof parseIkeSas>[number]): string | undefined {
    if (!sa.children.length || this.tracked.has(this.key(runId, sa.uniqueId))) return undefined;
    for (const t of this.tracked.values()) {
      if (t.runId === runId && !t.ended && sa.children.some((c) => t.children.has(c.id))) return t.uniqueId;
    }
    return undefined;
  }

  /**
   * Takes over, once per charon run, the IKEv2 sessions the previous instance left on the host:
   * those of this run are followed on under the same keys, counters and rekey mapping; those
   * of an earlier run died with it while no instance watched and end with their last counters.
   */
  private async restoreIke(runId: string): Promise<void> {
    if (!runId || this.restoredFor === runId) return;
    this.restoredFor = runId;
    const text = (await this.ctx.host.readFile(this.paths.ikeSessions).catch(() => null))?.toString('utf8');
    const snap = text === undefined ? null : parseIkeSnapshot(text);
    if (!snap) return;
    for (const s of snap.sessions) {
      const key = this.key(snap.runId, s.uniqueId);
      if (this.tracked.has(key) || this.endedKeys.has(key)) continue;
      const t: TrackedIke = {
        runId: snap.runId,
        uniqueId: s.uniqueId,
        username: s.username,
        remoteAddress: s.remoteAddress,
        connectedAt: s.connectedAt,
        children: new Map(s.children.map(([id, rx, tx]) => [id, { rx, tx }])),
        ended: false,
      };
      if (snap.runId !== runId) {
        await this.recordIkeEnded(t);
        continue;
      }
      this.tracked.set(key, t);
      this.currentOf.set(key, s.current);
      if (s.current !== s.uniqueId) this.originOf.set(`${runId}:${s.current}`, s.uniqueId);
    }
  }

  /** What the next instance needs to follow this run's sessions on (written when it changed, one write at a time). */
  private saveIke(runId: string): Promise<void> {
    const next = this.saving.then(() => this.writeIkeSnapshot(runId));
    this.saving = next.catch(() => undefined);
    return next;
  }

  private async writeIkeSnapshot(runId: string): Promise<void> {
    const snap: IkeSnapshot = { v: 1, runId, sessions: [] };
    for (const [key, t] of this.tracked) {
      if (t.ended || t.runId !== runId) continue;
      snap.sessions.push({
        uniqueId: t.uniqueId,
        current: this.currentOf.get(key) ?? t.uniqueId,
        username: t.username,
        remoteAddress: t.remoteAddress,
        connectedAt: t.connectedAt,
        children: [...t.children].map(([id, c]) => [id, c.rx, c.tx]),
      });
    }
    const text = JSON.stringify(snap);
    if (text === this.snapshotWritten) return;
    await this.ctx.host.writeFileAtomic(this.paths.ikeSessions, text, 0o600);
    this.snapshotWritten = text;
  }

  private totals(t: TrackedIke): { rx: number; tx: number } {
    let rx = 0;
    let tx = 0;
    for (const c of t.children.values()) {
      rx += c.rx;
      tx += c.tx;
    }
    return { rx, tx };
  }

  private async pollIke(): Promise<LiveSession[]> {
    const runId = this.runId;
    await this.restoreIke(runId);
    // Only sessions known before the listing can be missing from it; one that came up meanwhile is not.
    const before = new Set(this.tracked.keys());
    const events = await this.listSas();
    const seen = new Set<string>();
    const out: LiveSession[] = [];
    for (const msg of events) {
      for (const sa of parseIkeSas(msg)) {
        if (sa.connection !== IKEV2_CONN || sa.state !== 'ESTABLISHED') continue;
        const t = this.track(runId, sa);
        if (!t || t.ended) continue;
        const key = this.key(runId, t.uniqueId);
        seen.add(key);
        const { rx, tx } = this.totals(t);
        out.push({ sessionKey: key, username: t.username, protocol: 'l2tp', serverId: this.serverId, remoteAddress: t.remoteAddress, connectedAt: t.connectedAt, rxBytes: rx, txBytes: tx });
      }
    }
    // Gone without an event we saw (the watcher was reconnecting, or no instance was attached): ends with the last counters read.
    for (const [key, t] of [...this.tracked]) if (before.has(key) && !t.ended && !seen.has(key)) await this.recordIkeEnded(t);
    await this.saveIke(runId);
    return out;
  }

  private async ensureMonitor(): Promise<void> {
    if (this.monitor && !this.monitor.closed) return;
    const runId = this.runId;
    const s = await ViciSession.open(this.ctx.host, this.paths.vici);
    s.onEvent = (name, msg) => this.onEvent(runId, name, msg);
    s.onClose = () => {
      if (this.monitor === s) this.monitor = undefined;
    };
    try {
      for (const e of ['child-updown', 'child-rekey', 'ike-updown', 'ike-rekey']) await s.register(e, this.config.commandTimeoutMs);
    } catch (e) {
      s.close();
      throw e;
    }
    this.monitor = s;
  }

  private onEvent(runId: string, name: string, msg: ViciMessage): void {
    try {
      if (name === 'ike-rekey') {
        for (const v of Object.values(msg)) {
          if (typeof v !== 'object' || Array.isArray(v)) continue;
          const oldId = typeof v['old'] === 'object' && !Array.isArray(v['old']) ? v['old']['uniqueid'] : undefined;
          const newId = typeof v['new'] === 'object' && !Array.isArray(v['new']) ? v['new']['uniqueid'] : undefined;
          if (typeof oldId !== 'string' || typeof newId !== 'string' || !/^\d{1,15}$/.test(oldId) || !/^\d{1,15}$/.test(newId)) continue;
          const origin = this.originOf.get(`${runId}:${oldId}`) ?? oldId;
          this.originOf.set(`${runId}:${newId}`, origin);
          this.currentOf.set(this.key(runId, origin), newId);
        }
        return;
      }
      if (name === 'child-rekey') {
        // The old CHILD_SA's final counters are in its `old` section.
        for (const [conn, v] of Object.entries(msg)) {
          if (typeof v !== 'object' || Array.isArray(v)) continue;
          const children = v['child-sas'];
          if (!children || typeof children !== 'object' || Array.isArray(children)) continue;
          const flat: ViciMessage = {};
          for (const [cname, c] of Object.entries(children)) {
            if (c && typeof c === 'object' && !Array.isArray(c)) {
              const old = c['old'];
              const nu = c['new'];
              if (old && typeof old === 'object' && !Array.isArray(old)) flat[`${cname}-old`] = old;
              if (nu && typeof nu === 'object' && !Array.isArray(nu)) flat[`${cname}-new`] = nu;
            }
          }
          for (const sa of parseIkeSas({ [conn]: { ...v, 'child-sas': flat } })) if (sa.connection === IKEV2_CONN) this.track(runId, sa);
        }
        return;
      }
      const up = msg['up'] === 'yes';
      for (const sa of parseIkeSas(msg)) {
        if (sa.connection !== IKEV2_CONN) continue;
        const t = this.track(runId, sa);
        if (!t || up || t.ended) continue;
        if (name === 'child-updown' && sa.state !== 'ESTABLISHED') void this.recordIkeEnded(t).catch((e) => this.ctx.logger.warn({ err: (e as Error).message }, 'recording an ended IKEv2 session failed'));
        if (name === 'ike-updown') {
          // child-updown for its CHILD_SAs follows at once; end it in any case if none comes.
          setTimeout(() => void this.recordIkeEnded(t).catch(() => undefined), 1_000).unref();
        }
      }
    } catch (e) {
      this.ctx.logger.warn({ err: (e as Error).message, event: name }, 'ignoring a vici event');
    }
  }

  /** Writes the ended session's record on the host (durable first), then folds it into sessionEnded. */
  private async recordIkeEnded(t: TrackedIke): Promise<void> {
    if (t.ended) return;
    t.ended = true;
    const { rx, tx } = this.totals(t);
    const record: IkeEndedRecord = { v: 1, runId: t.runId, uniqueId: t.uniqueId, username: t.username, remoteAddress: t.remoteAddress, connectedAt: t.connectedAt, rxBytes: rx, txBytes: tx };
    await this.ctx.host.writeFileAtomic(path.posix.join(this.paths.ended, `ike-${t.runId}-${t.uniqueId}.rec`), JSON.stringify(record), 0o600);
    const key = this.key(t.runId, t.uniqueId);
    this.endedKeys.add(key);
    this.tracked.delete(key);
    this.currentOf.delete(key);
    // So that the next instance does not take it for a session that ended unseen.
    if (t.runId === this.runId) await this.saveIke(t.runId);
    await this.foldEnded();
  }

  private async terminateIke(uniqueId: string): Promise<void> {
    const { response } = await this.vici((s) => s.request('terminate', { 'ike-id': uniqueId, timeout: '3000' }, this.config.commandTimeoutMs + 3_000));
    // "no matching SAs" when it is already gone: the cut is done either way.
    if (response['success'] !== 'yes') this.ctx.logger.debug({ uniqueId, errmsg: response['errmsg'] }, 'vici terminate did not confirm');
  }

  // ---- L2TP (pppd) sessions ----

  private async pppSessions(): Promise<Array<{ name: string; s: NonNullable<ReturnType<typeof parsePppSession>> }>> {
    const r = await this.ctx.host.run(['find', this.paths.sessions, '-maxdepth', '1', '-type', 'f', '-name', '*.up', '-printf', '%f\\n'], { timeoutMs: this.config.commandTimeoutMs });
    if (r.code !== 0) return [];
    const out = [];
    for (const name of r.stdout.split('\n').filter((n) => /^\d{1,10}\.up$/.test(n))) {
      const text = (await this.ctx.host.readFile(path.posix.join(this.paths.sessions, name)).catch(() => null))?.toString('utf8');
      const s = text === undefined ? null : parsePppSession(text);
      if (s) out.push({ name, s });
    }
    return out;
  }

  private async pppAlive(pid: number): Promise<boolean> {
    const r = await this.ctx.host.run(['kill', '-0', String(pid)], { timeoutMs: this.config.commandTimeoutMs });
    return r.code === 0;
  }

  private pppKey(s: { pid: number; startedAt: number }): string {
    return `${this.serverId}:ppp:${s.pid}-${s.startedAt}`;
  }

  private async pollPpp(): Promise<LiveSession[]> {
    const out: LiveSession[] = [];
    for (const { name, s } of await this.pppSessions()) {
      const key = this.pppKey(s);
      if (!(await this.pppAlive(s.pid))) {
        // pppd died without ip-down (SIGKILL): end it with the last counters seen, once.
        const seen = this.pppSeen.get(key) ?? { rx: 0, tx: 0 };
        const rec = ['v1', s.pid, s.ifname, s.username, s.remoteAddress, s.startedAt, seen.rx, seen.tx, ''].join('\n');
        const endedName = `ppp-${s.pid}-${s.startedAt}.rec`;
        if (!(await this.ctx.host.exists(path.posix.join(this.paths.ended, endedName)))) await this.ctx.host.writeFileAtomic(path.posix.join(this.paths.ended, endedName), rec, 0o600);
        await this.ctx.host.remove(path.posix.join(this.paths.sessions, name));
        this.pppSeen.delete(key);
        continue;
      }
      // Read through the host (in its network namespace): /sys shows that namespace's interfaces.
      const r = await this.ctx.host.run(['cat', `/sys/class/net/${s.ifname}/statistics/rx_bytes`, `/sys/class/net/${s.ifname}/statistics/tx_bytes`], { timeoutMs: this.config.commandTimeoutMs });
      const [rx, tx] = r.code === 0 ? r.stdout.trim().split('\n').map(Number) : [NaN, NaN];
      const prev = this.pppSeen.get(key) ?? { rx: 0, tx: 0 };
      const now = { rx: Number.isSafeInteger(rx) ? Math.max(prev.rx, rx!) : prev.rx, tx: Number.isSafeInteger(tx) ? Math.max(prev.tx, tx!) : prev.tx };
      this.pppSeen.set(key, now);
      out.push({ sessionKey: key, username: s.username, protocol: 'l2tp', serverId: this.serverId, remoteAddress: s.remoteAddress, connectedAt: s.startedAt, rxBytes: now.rx, txBytes: now.tx });
    }
    return out;
  }

  /** SIGTERM, never SIGHUP: pppd takes SIGHUP as "redial" and the session would come back. */
  private async signalPpp(pid: number): Promise<void> {
    const r = await this.ctx.host.run(['kill', '-TERM', String(pid)], { timeoutMs: this.config.commandTimeoutMs });
    if (r.code !== 0) this.ctx.logger.debug({ pid }, 'pppd already gone');
  }

  // ---- cuts ----

  private async cutWhere(match: (username: string) => boolean, what: string): Promise<void> {
    if (!this.charon) return;
    try {
      for (const msg of await this.listSas()) {
        for (const sa of parseIkeSas(msg)) if (sa.connection === IKEV2_CONN && match(sa.username)) await this.terminateIke(sa.uniqueId);
      }
      for (const { s } of await this.pppSessions()) if (match(s.username)) await this.signalPpp(s.pid);
    } catch (e) {
      throw unavailable(`${what} on ${this.serverId} failed: ${(e as Error).message}`);
    }
  }

  /** A user over its room under `max_clients` loses its newest sessions (charon and pppd cannot cap per user). */
  private async enforceMaxSessions(sessions: LiveSession[]): Promise<void> {
    const byUser = new Map<string, LiveSession[]>();
    for (const s of sessions) byUser.set(s.username, [...(byUser.get(s.username) ?? []), s]);
    for (const [user, list] of byUser) {
      const max = this.maxSessions.get(user);
      if (max === undefined || list.length <= max) continue;
      const extra = [...list].sort((a, b) => b.connectedAt - a.connectedAt).slice(0, list.length - max);
      for (const s of extra) await this.disconnect({ sessionKey: s.sessionKey }).catch(() => undefined);
    }
  }

  // ---- ended records ----

  private foldEnded(): Promise<void> {
    return this.ended.fold();
  }

  private sessionOfRecord(name: string, text: string): LiveSession | null {
    if (IKE_ENDED_RE.test(name)) {
      const r = parseIkeEnded(text);
      if (!r) return null;
      return { sessionKey: this.key(r.runId, r.uniqueId), username: r.username, protocol: 'l2tp', serverId: this.serverId, remoteAddress: r.remoteAddress, connectedAt: r.connectedAt, rxBytes: r.rxBytes, txBytes: r.txBytes };
    }
    const r = parsePppEnded(text);
    if (!r) return null;
    return { sessionKey: this.pppKey(r), username: r.username, protocol: 'l2tp', serverId: this.serverId, remoteAddress: r.remoteAddress, connectedAt: r.startedAt, rxBytes: r.rxBytes, txBytes: r.txBytes };
  }
}

/** Starts (or adopts) and resolves at its first run, or after `timeoutMs` without one (the supervisor keeps trying). */
function startAndSee(sup: ProcessSupervisor, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, timeoutMs);
    function done() {
      clearTimeout(timer);
      sup.off('spawn', done);
      resolve();
    }
    sup.on('spawn', done);
    sup.start();
  });
}

function parseIkeSnapshot(text: string): IkeSnapshot | null {
  let o: Partial<IkeSnapshot>;
  try {
    o = JSON.parse(text) as Partial<IkeSnapshot>;
  } catch {
    return null;
  }
  if (!o || o.v !== 1 || typeof o.runId !== 'string' || !RUN_ID_RE.test(o.runId) || !Array.isArray(o.sessions)) return null;
  const id = (v: unknown) => typeof v === 'string' && /^\d{1,15}$/.test(v);
  const count = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  const sessions = o.sessions.filter(
    (s) =>
      s &&
      id(s.uniqueId) &&
      id(s.current) &&
      typeof s.username === 'string' &&
      USERNAME_PATTERN.test(s.username) &&
      typeof s.remoteAddress === 'string' &&
      s.remoteAddress.length <= 64 &&
      count(s.connectedAt) &&
      Array.isArray(s.children) &&
      s.children.every((c) => Array.isArray(c) && c.length === 3 && typeof c[0] === 'string' && c[0].length <= 20 && count(c[1]) && count(c[2])),
  );
  return { v: 1, runId: o.runId, sessions };
}

/** The L2TP/IPsec (and IKEv2) protocol plugin. `create()` returns an {@link L2tpIpsecPlugin}. */
const l2tpPlugin = defineProtocolPlugin<L2tpConfig>({
  id: 'l2tp',
  apiVersion: '2.0',
  capabilities: L2TP_CAPABILITIES,
  requirements: [
    // Without the standard plugins charon cannot negotiate; gcrypt (extra) brings MSCHAPv2's MD4/DES.
    {
      program: 'charon',
      alsoAt: ['/usr/lib/ipsec/charon', '/usr/libexec/ipsec/charon'],
      debianPackages: ['strongswan-charon', 'libcharon-extra-plugins', 'libcharon-extauth-plugins', 'libstrongswan-extra-plugins', 'libstrongswan-standard-plugins'],
    },
    { program: 'swanctl', debianPackages: ['strongswan-swanctl'] },
    { program: 'xl2tpd', debianPackages: ['xl2tpd'] },
    { program: 'pppd', alsoAt: ['/usr/sbin/pppd'], debianPackages: ['ppp'] },
  ],
  configSchema: l2tpConfigSchema,
  create: (ctx) => new L2tpIpsecPlugin(ctx),
});

export default l2tpPlugin;
