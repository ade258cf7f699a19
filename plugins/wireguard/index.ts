import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { z } from 'zod';
import {
  AvailabilityProbe,
  assertHost,
  assertIp,
  assertPort,
  assertSafePath,
  defineProtocolPlugin,
  intToIpv4,
  invalid,
  ipv4Range,
  ipv4ToInt,
  notFound,
  parseIpv4Subnet,
  ProcessSupervisor,
  supervisorBackoffConfig,
  runChecked,
  SerialLock,
  unavailable,
  USERNAME_PATTERN,
  type Availability,
  type ClientEndpoint,
  type ClientUser,
  type DesiredState,
  type PluginCapabilities,
  type PluginContext,
  type PortNeed,
  type ProtocolPluginInstance,
  type SessionPoll,
} from '../../core';
import { ONLINE_WINDOW_SEC, parseDump, PeerLedger, RECENT_DUMP_MARGIN_SEC, RECENT_DUMP_SCRIPT, type EndedPeriod } from './dump';
import { assertWgKey, hostAddress, renderClientConfig, renderPeers, WG_KEY_PATTERN, type PeerEntry } from './render';
import { uapiAddPeers, uapiRemovePeers, uapiRequest } from './uapi';

export { parseDump, PeerLedger, ONLINE_WINDOW_SEC } from './dump';
export { renderClientConfig, renderPeers, renderInterface } from './render';

/** Plugin settings; every field has a default, so `{}` is a valid configuration. */
export const wireGuardConfigSchema = z.object({
  /** `auto`: the kernel module when the host has it (`/sys/module/wireguard`), else `wireguard-go`. */
  implementation: z.enum(['auto', 'kernel', 'userspace']).default('auto'),
  /** Interface names are `<prefix><n>` (n = listener index); at most 15 characters in all. */
  interfacePrefix: z.string().regex(/^[a-z][a-z0-9]{0,11}$/).default('pgwg'),
  wgPath: z.string().default('wg'),
  wireguardGoPath: z.string().default('wireguard-go'),
  ipPath: z.string().default('ip'),
  /** DNS servers written into client configs. */
  dns: z.array(z.string()).default(['1.1.1.1']),
  persistentKeepalive: z.number().int().min(0).max(65535).default(25),
  mtu: z.number().int().min(1280).max(9000).optional(),
  /** Endpoint host of client configs when core passes no endpoint. */
  publicHost: z.string().optional(),
  /** A peer is online while its latest handshake is younger than this (WireGuard's 180 s). */
  onlineWindowSec: z.number().int().min(10).max(3600).default(ONLINE_WINDOW_SEC),
  ...supervisorBackoffConfig,
  /** How long a start may take until the interface answers. */
  startTimeoutMs: z.number().int().min(100).max(120_000).default(15_000),
  /** UAPI socket directory of wireguard-go (fixed by wg and wireguard-go). */
  socketDir: z.string().default('/var/run/wireguard'),
});

export type WireGuardConfig = z.infer<typeof wireGuardConfigSchema>;

/** What the WireGuard plugin declares to core: no login hook, raw dumps for the parser, QR-able configs. */
export const WIREGUARD_CAPABILITIES: PluginCapabilities = {
  gatesLogins: false,
  reportsEndedSessions: true,
  poll: 'wg-dump',
  takesListeners: true,
  settings: [],
  clientConfig: { extension: 'conf', mediaType: 'text/plain', qr: true },
};

/** Most peers per `wg set … peer X remove …` argv (keeps it far below ARG_MAX). */
const REMOVE_CHUNK = 500;

interface WantedPeer {
  username: string;
  publicKey: string;
  /** The tunnel address (host). */
  address: string;
  /** `material.address` as core gave it, to recognise an unchanged user without checking it again. */
  given: string;
  /** The apply that listed it last. */
  epoch: number;
}

/** One interface (one listener). */
interface Iface {
  name: string;
  index: number;
  port: number;
  supervisor: ProcessSupervisor | null;
  /** Configured and answering. */
  ready: boolean;
  spawns: number;
  ledger: PeerLedger;
  /** Peers on the interface as the plugin put them: public key → peer. */
  peers: Map<string, WantedPeer>;
  /** Wanted peers a `disconnect` removed: the next apply puts them back. */
  cut: Set<string>;
  /** A change failed half-way: compare the interface with the whole wanted set next time. */
  fullSync: boolean;
  /**
   * The next poll reads every peer, not only recent ones: after a start or an adoption (the
   * ledger must see every counter once) and after a failed poll (a peer may have left the
   * recent window meanwhile).
   */
  fullDumpDue?: boolean;
}

/**
 * WireGuard on one host: one interface per listener (the kernel module, or a supervised
 * `wireguard-go`), whose peers are exactly the users allowed to connect now. Changes go in
 * place, peer by peer (`wg addconf` for additions, `wg set … remove` for removals), so no other
 * peer notices. Each peer has a preshared key kept in the state directory, keyed by its public
 * key (a revoked user's new key gets a new one). Accounting reads `wg show <if> dump`; see
 * dump.ts for how peers become sessions.
 *
 * @example
 * const wg = wireguardPlugin.create(ctx);
 * await wg.apply({ listeners: [{ port: 51820, protocol: 'udp' }], users: [{ username: 'alice', material: { publicKey, address: '10.66.0.2' } }], settings: {} });
 * const conf = await wg.renderClientConfig!({ username: 'alice', material: { publicKey, privateKey, address: '10.66.0.2' } }, [{ host: 'vpn.example.com', port: 51820, protocol: 'udp' }]);
 */
export class WireGuardPlugin implements ProtocolPluginInstance {
  private readonly config: WireGuardConfig;
  private readonly stateDir: string;
  private readonly pool: { network: string; prefix: number; first: number; last: number };
  /** The server's side of every tunnel: the pool's first host. */
  readonly serverAddress: string;
  private readonly ifaces = new Map<number, Iface>();
  private readonly wanted = new Map<string, WantedPeer>();
  /** address → public key of the wanted peer holding it. */
  private readonly addressOwner = new Map<string, string>();
  private epoch = 0;
  /** Public key → username for the parser, rebuilt at the next poll after a change. */
  private peerNames = new Map<string, string>();
  private namesDirty = false;
  private listeners: number[] = [];
  /** apply / stop / restarts / cuts run one at a time. */
  private readonly lock = new SerialLock();
  /** The key stores have their own lock, so a download never waits for a long apply. */
  private readonly keyLock = new SerialLock();
  private serverKeys: { privateKey: string; publicKey: string } | null = null;
  private readonly pskShards = new Map<string, Map<string, string>>();
  private kernel: boolean | null = null;
  private readonly paths: { serverKey: string; serverPub: string; pskDir: string; tmpDir: string; runDir: string };

  constructor(private readonly ctx: PluginContext<WireGuardConfig>) {
    this.config = ctx.config;
    this.stateDir = assertSafePath(ctx.stateDir, 'WireGuard state directory');
    assertSafePath(this.config.socketDir, 'socketDir');
    for (const d of this.config.dns) assertIp(d, 'dns');
    if (this.config.publicHost !== undefined) assertHost(this.config.publicHost, 'publicHost');
    const subnet = parseIpv4Subnet(ctx.clientPool, 'WireGuard client pool');
    const [first, last] = ipv4Range(ctx.clientPool);
    this.pool = { network: subnet.network, prefix: subnet.prefix, first, last };
    this.serverAddress = intToIpv4(first + 1);
    this.paths = {
      serverKey: path.posix.join(this.stateDir, 'server.key'),
      serverPub: path.posix.join(this.stateDir, 'server.pub'),
      pskDir: path.posix.join(this.stateDir, 'psk'),
      tmpDir: path.posix.join(this.stateDir, 'tmp'),
      runDir: path.posix.join(this.stateDir, 'run'),
    };
  }

  async availability(): Promise<Availability> {
    const probe = new AvailabilityProbe(this.ctx.host);
    await probe.answers([this.config.wgPath, '--version'], /^wireguard-tools v/m);
    if (!(await this.useKernel())) {
      await probe.answers([this.config.wireguardGoPath, '--version'], /^wireguard-go v/m);
      await probe.exists('/dev/net/tun');
    }
    return probe.verdict();
  }

  /**
   * Makes the host match `state`: one interface per UDP listener, and on each exactly the
   * peers of `state.users`. Removed peers' last counters are read and reported before they go.
   */
  async apply(state: DesiredState): Promise<void> {
    const ports: number[] = [];
    for (const [i, l] of (state?.listeners ?? []).entries()) {
      const port = assertPort(l?.port, `listeners[${i}].port`);
      if (l.protocol !== 'udp') {
        this.ctx.logger.warn({ port, protocol: l.protocol }, 'WireGuard listens on UDP only; listener skipped');
        continue;
      }
      if (ports.includes(port)) throw invalid(`listener ${port}/udp is listed twice`);
      ports.push(port);
    }
    const users = state?.users ?? [];
    await this.lock.run(async () => {
      this.listeners = ports;
      const change = this.takeState(users);
      await this.reconcileInterfaces();
      for (const iface of this.ifaces.values()) {
        try {
          if (!iface.ready) await this.bringUp(iface);
          else if (iface.fullSync) await this.syncPeers(iface);
          else await this.applyChange(iface, change);
          iface.fullSync = false;
        } catch (e) {
          // What the interface holds is uncertain now: the next apply compares it in full.
          iface.fullSync = true;
          throw e;
        }
      }
    });
  }

  /**
   * Folds the desired users into `wanted` and says what changed. Users applied before with the
   * same name, key and address were checked then and cost one map lookup: with 10,000 peers,
   * checking and copying them all again would cost more than the change itself.
   */
  private takeState(users: DesiredState['users']): { added: WantedPeer[]; removed: string[] } {
    const epoch = ++this.epoch;
    const fresh: Array<{ peer: WantedPeer; replaces: WantedPeer | undefined }> = [];
    for (const u of users) {
      const publicKey = u?.material?.publicKey;
      const given = u?.material?.address;
      const known = typeof publicKey === 'string' ? this.wanted.get(publicKey) : undefined;
      if (known && known.epoch === epoch) {
        this.ctx.logger.warn({ username: u.username }, 'user skipped: its public key is already used by another user');
        continue;
      }
      if (known && known.given === given && known.username === u.username) {
        known.epoch = epoch;
        continue;
      }
      try {
        if (typeof u?.username !== 'string' || !USERNAME_PATTERN.test(u.username)) throw invalid('bad username');
        assertWgKey(publicKey, 'publicKey');
        const address = hostAddress(given, 'address');
        const n = ipv4ToInt(address);
        if (n <= this.pool.first + 1 || n >= this.pool.last) throw invalid(`address ${address} is outside the client pool ${this.ctx.clientPool}`);
        if (known && known.address === address) {
          // Only the name changed: nothing to do on the interface.
          known.username = u.username;
          known.given = given!;
          known.epoch = epoch;
          this.namesDirty = true;
          continue;
        }
        fresh.push({ peer: { username: u.username, publicKey: publicKey!, address, given: given!, epoch }, replaces: known });
      } catch (e) {
        this.ctx.logger.warn({ username: u?.username, err: (e as Error).message }, 'user skipped: its WireGuard material is unusable');
      }
    }
    const removed: string[] = [];
    const replaced = new Set(fresh.filter((f) => f.replaces).map((f) => f.peer.publicKey));
    for (const [key, p] of this.wanted) {
      if (p.epoch !== epoch && !replaced.has(key)) removed.push(key);
    }
    for (const key of removed) this.forgetWanted(key);
    const added: WantedPeer[] = [];
    const addresses = new Set<string>();
    for (const { peer, replaces } of fresh) {
      const owner = this.addressOwner.get(peer.address);
      const holder = owner === undefined || owner === peer.publicKey ? undefined : this.wanted.get(owner);
      if ((holder && holder.epoch === epoch) || addresses.has(peer.address)) {
        this.ctx.logger.warn({ username: peer.username }, 'user skipped: its address is already used by another user');
        if (replaces) {
          this.forgetWanted(peer.publicKey);
          removed.push(peer.publicKey);
        }
        continue;
      }
      if (replaces) {
        this.forgetWanted(peer.publicKey);
        removed.push(peer.publicKey);
      }
      addresses.add(peer.address);
      this.wanted.set(peer.publicKey, peer);
      this.addressOwner.set(peer.address, peer.publicKey);
      added.push(peer);
    }
    if (added.length || removed.length) this.namesDirty = true;
    return { added, removed };
  }

  private forgetWanted(key: string): void {
    const p = this.wanted.get(key);
    if (!p) return;
    this.wanted.delete(key);
    if (this.addressOwner.get(p.address) === key) this.addressOwner.delete(p.address);
  }

  /** Applies one change to an interface that held the previous state (plus what a cut took away). */
  private async applyChange(iface: Iface, change: { added: readonly WantedPeer[]; removed: readonly string[] }): Promise<void> {
    const remove = change.removed.filter((k) => iface.peers.has(k));
    if (remove.length) await this.removePeers(iface, remove, 'removed');
    const add = [...change.added];
    for (const key of iface.cut) {
      const w = this.wanted.get(key);
      if (w && !iface.peers.has(key) && !add.includes(w)) add.push(w);
    }
    iface.cut.clear();
    if (add.length) await this.addPeers(iface, add);
  }

  /** Ends every interface, also those a previous instance left running that this one never adopted. */
  stop(): Promise<void> {
    return this.lock.run(async () => {
      const names = new Set<string>();
      for (const iface of [...this.ifaces.values()]) {
        names.add(iface.name);
        await this.stopIface(iface, 'server-stopped');
      }
      if (await this.useKernel()) return;
      await this.stopLeftRuns(names);
    });
  }

  /**
   * wireguard-go runs a detached earlier instance left (pid files under the run dir) and this
   * one did not take over: the protocol or node is being removed after a panel restart. Their
   * open periods are reported ended (keys from the kept ledger) before the daemon goes.
   */
  private async stopLeftRuns(done: ReadonlySet<string>): Promise<void> {
    const listing = await this.ctx.host.run(['ls', '-1', '--', this.paths.runDir], { timeoutMs: 15_000 }).catch(() => null);
    if (!listing || listing.code !== 0) return;
    const pidName = new RegExp(`^(${this.config.interfacePrefix}\\d{1,4})\\.pid$`);
    for (const file of listing.stdout.split('\n')) {
      const name = pidName.exec(file.trim())?.[1];
      if (!name || done.has(name)) continue;
      const index = Number(name.slice(this.config.interfacePrefix.length));
      const iface: Iface = { name, index, port: 0, supervisor: null, ready: false, spawns: 0, ledger: new PeerLedger(`wg:${name}:0`), peers: new Map(), cut: new Set(), fullSync: false };
      // A supervisor that only adopts: it is never allowed to start a run of its own.
      let settle!: (adopted: boolean) => void;
      const found = new Promise<boolean>((resolve) => (settle = resolve));
      const supervisor = new ProcessSupervisor({
        host: this.ctx.host,
        argv: [this.config.wireguardGoPath, '-f', name],
        name: `wireguard-go ${name}`,
        detached: { pidFile: path.posix.join(this.paths.runDir, `${name}.pid`), logFile: path.posix.join(this.paths.runDir, `${name}.log`) },
        beforeStart: async () => {
          settle(false);
          throw new Error('not started: only a run left by an earlier instance is ended');
        },
      });
      supervisor.once('spawn', () => settle(true));
      supervisor.start();
      const timer = setTimeout(() => settle(false), 20_000);
      const adopted = await found;
      clearTimeout(timer);
      if (adopted && supervisor.epoch) {
        try {
          const scope = `wg:${name}:${supervisor.epoch}`;
          const snapshot = await this.ctx.host.readFile(this.ledgerPath(iface)).then((b) => JSON.parse(b.toString('utf8')) as unknown, () => null);
          iface.ledger = PeerLedger.restore(snapshot, scope, this.config.onlineWindowSec) ?? new PeerLedger(scope, this.config.onlineWindowSec);
          await this.observe(iface, { full: true });
          await Promise.all(iface.ledger.endAll('server-stopped').map((e) => this.report(e, this.usernameOf(iface, e.publicKey))));
        } catch (e) {
          this.ctx.logger.warn({ interface: name, err: (e as Error).message }, 'could not read final counters before stopping');
        }
        this.ctx.logger.info({ interface: name, pid: supervisor.pid }, 'ending a wireguard-go an earlier instance left running');
      }
      await supervisor.stop();
      await this.ctx.host.remove(this.ledgerPath(iface)).catch(() => undefined);
    }
  }

  /**
   * The panel goes away (shutdown, restart, upgrade): polling stops, and wireguard-go, the
   * interface, its addresses and peers stay as they are, so no tunnel notices. The ledger's
   * snapshot is kept beside the interface, and the next instance on this host and state dir
   * adopts it all with the same session keys. Bytes a peer moves from now on are counted by that
   * instance, except those of a daemon that dies (or a host that reboots) before it polls.
   */
  detach(): Promise<void> {
    return this.lock.run(async () => {
      const list = [...this.ifaces.values()];
      this.ifaces.clear();
      for (const iface of list) {
        iface.supervisor?.removeAllListeners();
        if (iface.ready) await this.keepLedger(iface).catch((e: Error) => this.ctx.logger.warn({ interface: iface.name, err: e.message }, 'could not keep the session ledger'));
        iface.ready = false;
        await iface.supervisor?.detach();
      }
    });
  }

  async ports(): Promise<PortNeed[]> {
    return this.listeners.map((port) => ({ port, protocol: 'udp' as const, purpose: `WireGuard ${port}/udp` }));
  }

  /**
   * Each ready interface's dump, reduced to its online peers (see dump.ts), scope
   * `wg:<interface>:<daemon epoch>`. Periods that ended since the last poll are reported first.
   */
  async pollSessions(): Promise<SessionPoll> {
    const texts: Array<{ scope: string; text: string }> = [];
    for (const iface of [...this.ifaces.values()]) {
      if (!iface.ready) continue;
      const text = await this.observe(iface);
      // Keys go to accounting only once a panel restarted now would hand over the same ones.
      await this.keepLedger(iface);
      texts.push({ scope: iface.ledger.scope, text });
    }
    if (this.namesDirty) {
      this.peerNames = new Map([...this.wanted.values()].map((p) => [p.publicKey, p.username]));
      this.namesDirty = false;
    }
    return { kind: 'status-text', format: 'wg-dump', texts, peerNames: this.peerNames };
  }

  /**
   * WireGuard cannot end a session but by removing the peer: the user's peers are removed (their
   * last counters reported first) and come back with the next applied state that lists them.
   */
  async disconnect(target: { username: string } | { sessionKey: string }): Promise<void> {
    await this.lock.run(async () => {
      if ('username' in target) {
        if (typeof target.username !== 'string' || !USERNAME_PATTERN.test(target.username)) throw invalid(`username must match ${USERNAME_PATTERN.source}`);
        for (const iface of this.ifaces.values()) {
          const keys = [...this.wanted.values()].filter((p) => p.username === target.username && iface.peers.has(p.publicKey)).map((p) => p.publicKey);
          if (keys.length && iface.ready) {
            await this.removePeers(iface, keys, 'disconnected');
            for (const k of keys) iface.cut.add(k);
          }
        }
        return;
      }
      const key = String(target.sessionKey);
      const cut = key.lastIndexOf(':');
      const iface = [...this.ifaces.values()].find((i) => key.startsWith(`${i.ledger.scope}:`));
      const publicKey = key.slice(cut + 1);
      if (!iface || !WG_KEY_PATTERN.test(publicKey)) throw notFound(`no WireGuard session ${JSON.stringify(key)} on ${this.ctx.serverId}`);
      if (iface.peers.has(publicKey) && iface.ready) {
        await this.removePeers(iface, [publicKey], 'disconnected');
        iface.cut.add(publicKey);
      }
    });
  }

  /**
   * A complete client config for the user: its private key and address, this server's public
   * key, the user's preshared key (made on first use), and the endpoint (the first given, or
   * `publicHost` with the first listener).
   */
  async renderClientConfig(user: ClientUser, endpoints: readonly ClientEndpoint[]): Promise<string> {
    const username = user?.username;
    if (typeof username !== 'string' || !USERNAME_PATTERN.test(username)) throw invalid(`username must match ${USERNAME_PATTERN.source}`);
    const material = user.material ?? {};
    const privateKey = assertWgKey(material.privateKey, 'privateKey');
    const publicKey = assertWgKey(material.publicKey, 'publicKey');
    const endpoint = endpoints.find((e) => e.protocol === 'udp') ?? endpoints[0];
    const host = endpoint?.host ?? this.config.publicHost;
    const port = endpoint?.port ?? this.listeners[0];
    if (host === undefined || port === undefined) throw invalid('no endpoint for the config: pass one or set publicHost and a listener');
    const [server, psks] = await Promise.all([this.ensureServerKeys(), this.ensurePsks([publicKey])]);
    return renderClientConfig({
      title: `${username} @ ${this.ctx.serverId}`,
      privateKey,
      address: material.address ?? '',
      dns: this.config.dns,
      serverPublicKey: server.publicKey,
      presharedKey: psks.get(publicKey)!,
      endpointHost: host,
      endpointPort: port,
      persistentKeepalive: this.config.persistentKeepalive,
      mtu: this.config.mtu,
    });
  }

  /** Interfaces (tests, /health): name, port, pid, scope, peers, restarts. */
  describe(): Array<{ name: string; port: number; pid: number | undefined; ready: boolean; scope: string; peers: number; restarts: number }> {
    return [...this.ifaces.values()].map((i) => ({
      name: i.name,
      port: i.port,
      pid: i.supervisor?.pid,
      ready: i.ready,
      scope: i.ledger.scope,
      peers: i.peers.size,
      restarts: i.supervisor?.restarts ?? 0,
    }));
  }

  /** This server's public key (made on first use). */
  async serverPublicKey(): Promise<string> {
    return (await this.ensureServerKeys()).publicKey;
  }

  // ---- internals ----

  private async useKernel(): Promise<boolean> {
    if (this.config.implementation !== 'auto') return this.config.implementation === 'kernel';
    this.kernel ??= await this.ctx.host.exists('/sys/module/wireguard').catch(() => false);
    return this.kernel;
  }

  private wg(args: string[], stdin?: string) {
    return runChecked(this.ctx.host, [this.config.wgPath, ...args], { timeoutMs: 60_000, stdin });
  }

  private ip(args: string[]) {
    return runChecked(this.ctx.host, [this.config.ipPath, ...args], { timeoutMs: 30_000 });
  }

  /** Starts interfaces for new listeners and stops those of listeners that are gone. */
  private async reconcileInterfaces(): Promise<void> {
    for (const iface of [...this.ifaces.values()]) {
      if (!this.listeners.includes(iface.port)) await this.stopIface(iface, 'listener-removed');
    }
    for (const port of this.listeners) {
      if ([...this.ifaces.values()].some((i) => i.port === port)) continue;
      let index = 0;
      while (this.ifaces.has(index)) index++;
      const name = `${this.config.interfacePrefix}${index}`;
      const iface: Iface = { name, index, port, supervisor: null, ready: false, spawns: 0, ledger: new PeerLedger(`wg:${name}:0`), peers: new Map(), cut: new Set(), fullSync: false };
      this.ifaces.set(index, iface);
      if (!(await this.useKernel())) iface.supervisor = this.supervise(iface);
    }
  }

  private socketOf(iface: Iface): string {
    return path.posix.join(this.config.socketDir, `${iface.name}.sock`);
  }

  private supervise(iface: Iface): ProcessSupervisor {
    const { host } = this.ctx;
    const socket = this.socketOf(iface);
    const supervisor = new ProcessSupervisor({
      host,
      // -f: stay in the foreground, so the keeper is its parent and records its pid and exit.
      argv: [this.config.wireguardGoPath, '-f', iface.name],
      name: `wireguard-go ${iface.name}`,
      logger: this.ctx.logger.child({ interface: iface.name }),
      initialBackoffMs: this.config.restartInitialMs,
      maxBackoffMs: this.config.restartMaxMs,
      // The host keeps the daemon, so a panel restart or a lost SSH channel cuts no tunnel.
      detached: { pidFile: path.posix.join(this.paths.runDir, `${iface.name}.pid`), logFile: path.posix.join(this.paths.runDir, `${iface.name}.log`) },
      startTimeoutMs: this.config.startTimeoutMs,
      // A socket left by a killed run would make wg talk to nobody.
      beforeStart: () => host.remove(socket),
    });
    supervisor.on('exit', () => {
      // The interface and its counters are gone with the process. Open periods end with what
      // was read last (bytes since that poll are lost: WireGuard has no disconnect hook), and
      // the next run is a new epoch, so a new scope.
      if (iface.ready) for (const e of iface.ledger.endAll('daemon-exited')) void this.report(e, this.usernameOf(iface, e.publicKey));
      iface.ready = false;
    });
    supervisor.on('spawn', () => {
      // The first run is brought up by apply; later ones (restarts) here, in turn with apply.
      if (iface.spawns++ === 0) return;
      void this.lock
        .run(async () => {
          if (this.ifaces.get(iface.index) === iface && !iface.ready) await this.bringUp(iface);
        })
        .catch((e: Error) => this.ctx.logger.error({ interface: iface.name, err: e.message }, 'configuring the restarted interface failed'));
    });
    supervisor.start();
    return supervisor;
  }

  /**
   * Makes one interface run serve: started now, or found running (adopted after a panel
   * restart). Key and port are set only when they differ, the server address (the pool route on
   * the first interface only: one route per pool) and link state are idempotent, and the peers
   * are compared with what the interface holds, so an adopted interface keeps its peers, their
   * handshakes and counters. The ledger is the run's: restored from the snapshot kept beside it
   * when it is of this run (same keys as before the restart), a new one at zero otherwise.
   */
  private async bringUp(iface: Iface): Promise<void> {
    const { host } = this.ctx;
    let epoch: string;
    if (iface.supervisor) {
      const socket = this.socketOf(iface);
      const end = Date.now() + this.config.startTimeoutMs;
      while (!(iface.supervisor.epoch !== undefined && (await host.exists(socket)))) {
        if (Date.now() > end) throw unavailable(`wireguard-go ${iface.name} did not open its UAPI socket within ${this.config.startTimeoutMs} ms${iface.supervisor.lastExit ? ` (last exit: ${iface.supervisor.lastExit.tail.slice(-3).join(' | ')})` : ''}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      epoch = iface.supervisor.epoch!;
    } else {
      // The kernel keeps the interface without any process: one that exists is adopted. Its
      // ifindex names the run (a re-created interface gets a new one).
      // Read by a program on the host, so the interface is looked for in the host's own network namespace.
      const ifindexOf = async () => {
        const r = await host.run(['cat', `/sys/class/net/${iface.name}/ifindex`], { timeoutMs: 15_000 });
        return r.code === 0 && /^\d{1,10}\n?$/.test(r.stdout) ? r.stdout.trim() : null;
      };
      let ifindex = await ifindexOf();
      if (ifindex === null) {
        await this.ip(['link', 'add', iface.name, 'type', 'wireguard']);
        ifindex = await ifindexOf();
      }
      if (ifindex === null) throw unavailable(`${iface.name}: no ifindex after creating it`);
      epoch = `k${ifindex}`;
    }
    const keys = await this.ensureServerKeys();
    const held = parseDump((await this.wg(['show', iface.name, 'dump'])).stdout);
    if (held.device?.publicKey !== keys.publicKey || held.device?.listenPort !== iface.port) {
      await this.wg(['set', iface.name, 'listen-port', String(iface.port), 'private-key', this.paths.serverKey]);
    }
    const prefix = iface.index === 0 ? this.pool.prefix : 32;
    await this.ip(['address', 'replace', `${this.serverAddress}/${prefix}`, 'dev', iface.name]);
    await this.ip(['link', 'set', iface.name, ...(this.config.mtu ? ['mtu', String(this.config.mtu)] : []), 'up']);
    const scope = `wg:${iface.name}:${epoch}`;
    const snapshot = await host
      .readFile(this.ledgerPath(iface))
      .then((b) => JSON.parse(b.toString('utf8')) as unknown)
      .catch(() => null);
    const restored = PeerLedger.restore(snapshot, scope, this.config.onlineWindowSec);
    iface.ledger = restored ?? new PeerLedger(scope, this.config.onlineWindowSec);
    iface.fullDumpDue = true;
    iface.peers = new Map();
    for (const p of held.peers) {
      const address = /^(\d{1,3}(?:\.\d{1,3}){3})\/32$/.exec(p.allowedIps)?.[1] ?? '';
      iface.peers.set(p.publicKey, { username: this.wanted.get(p.publicKey)?.username ?? '', publicKey: p.publicKey, address, given: address, epoch: 0 });
    }
    iface.cut.clear();
    await this.syncPeers(iface);
    await this.keepLedger(iface);
    iface.ready = true;
    this.ctx.logger.info(
      { interface: iface.name, port: iface.port, peers: iface.peers.size, kept: held.peers.length, epoch, ledger: restored ? 'restored' : 'new', publicKey: keys.publicKey },
      held.peers.length ? 'WireGuard interface adopted' : 'WireGuard interface up',
    );
  }

  private ledgerPath(iface: Iface): string {
    return path.posix.join(this.paths.runDir, `${iface.name}.ledger.json`);
  }

  /** Writes the ledger's snapshot beside the interface when a period began or ended since the last. */
  private async keepLedger(iface: Iface): Promise<void> {
    if (!iface.ledger.dirty) return;
    const snapshot = iface.ledger.snapshot();
    try {
      await this.ctx.host.mkdirp(this.paths.runDir, 0o700);
      await this.ctx.host.writeFileAtomic(this.ledgerPath(iface), `${JSON.stringify(snapshot)}\n`, 0o600);
    } catch (e) {
      iface.ledger.dirty = true;
      throw e;
    }
  }

  private usernameOf(iface: Iface, publicKey: string): string {
    return iface.peers.get(publicKey)?.username || this.wanted.get(publicKey)?.username || this.peerNames.get(publicKey) || '';
  }

  /** Adds what is missing, removes what is no longer wanted (or changed address). */
  private async syncPeers(iface: Iface): Promise<void> {
    const remove: string[] = [];
    for (const [key, p] of iface.peers) {
      const w = this.wanted.get(key);
      if (!w || w.address !== p.address) remove.push(key);
      else if (w.username !== p.username) p.username = w.username;
    }
    if (remove.length) await this.removePeers(iface, remove, 'removed');
    const add = [...this.wanted.values()].filter((w) => !iface.peers.has(w.publicKey));
    if (add.length) await this.addPeers(iface, add);
  }

  private async addPeers(iface: Iface, peers: readonly WantedPeer[]): Promise<void> {
    if (!peers.length) return;
    const psks = await this.ensurePsks(peers.map((p) => p.publicKey));
    const entries: PeerEntry[] = peers.map((p) => ({ publicKey: p.publicKey, presharedKey: psks.get(p.publicKey)!, address: p.address }));
    if (iface.supervisor) {
      await uapiRequest(this.ctx.host, this.socketOf(iface), uapiAddPeers(entries));
    } else {
      // The batch holds preshared keys: a private file, removed once wg has read it.
      const file = path.posix.join(this.paths.tmpDir, `add-${iface.name}-${randomBytes(6).toString('hex')}.conf`);
      await this.ctx.host.mkdirp(this.paths.tmpDir, 0o700);
      await this.ctx.host.writeFileAtomic(file, renderPeers(entries), 0o600);
      try {
        await this.wg(['addconf', iface.name, file]);
      } finally {
        await this.ctx.host.remove(file).catch(() => undefined);
      }
    }
    for (const p of peers) iface.peers.set(p.publicKey, { ...p });
  }

  /** Reads the interface once, reports the final counters of the peers going, then removes them. */
  private async removePeers(iface: Iface, keys: readonly string[], reason: string): Promise<void> {
    await this.observe(iface, { full: true });
    const reports: Array<Promise<void>> = [];
    for (const key of keys) {
      const ended = iface.ledger.takeEnded(key, reason);
      if (ended) reports.push(this.report(ended, this.usernameOf(iface, key)));
    }
    // The counters go with the peer: they are handed over (durably, when the panel can) first.
    await Promise.all(reports);
    if (iface.supervisor) {
      await uapiRequest(this.ctx.host, this.socketOf(iface), uapiRemovePeers(keys));
    } else {
      for (let i = 0; i < keys.length; i += REMOVE_CHUNK) {
        const argv = ['set', iface.name];
        for (const key of keys.slice(i, i + REMOVE_CHUNK)) argv.push('peer', key, 'remove');
        await this.wg(argv);
      }
    }
    for (const key of keys) iface.peers.delete(key);
    await this.keepLedger(iface).catch((e: Error) => this.ctx.logger.warn({ interface: iface.name, err: e.message }, 'could not keep the session ledger'));
  }

  /** One dump through the ledger; ended periods are reported, the online peers' text returned. */
  private async observe(iface: Iface, options: { full?: boolean } = {}): Promise<string> {
    const full = options.full === true || iface.fullDumpDue !== false;
    let stdout: string;
    try {
      stdout = full
        ? (await this.wg(['show', iface.name, 'dump'])).stdout
        : (
            await runChecked(this.ctx.host, ['sh', '-c', RECENT_DUMP_SCRIPT, 'polygate-wg-recent', this.config.wgPath, iface.name, String(this.config.onlineWindowSec + RECENT_DUMP_MARGIN_SEC)], {
              timeoutMs: 60_000,
            })
          ).stdout;
    } catch (err) {
      iface.fullDumpDue = true;
      throw err;
    }
    if (full) iface.fullDumpDue = false;
    // Handshake times in the dump are the host's wall clock, not domain time (which tests
    // freeze): a peer's age is judged against real time.
    const seen = iface.ledger.observe(stdout, Math.floor(Date.now() / 1000), { partial: !full });
    for (const e of seen.ended) void this.report(e, this.usernameOf(iface, e.publicKey));
    if (seen.malformed) this.ctx.logger.warn({ interface: iface.name, malformed: seen.malformed }, 'unexpected lines in wg show dump');
    return seen.text;
  }

  /**
   * Hands one ended period to the panel; resolves either way (a failure is logged: the counters
   * exist nowhere else, and reporting the same key again later would be harmless).
   */
  private report(e: EndedPeriod, username: string): Promise<void> {
    return this.ctx
      .sessionEnded({
      session: {
        sessionKey: e.sessionKey,
        username,
        protocol: 'wireguard',
        serverId: this.ctx.serverId,
        remoteAddress: e.remoteAddress,
        connectedAt: 0,
        rxBytes: e.rx,
        txBytes: e.tx,
      },
      reason: e.reason,
    })
      .catch((err: Error) => this.ctx.logger.error({ sessionKey: e.sessionKey, err: err.message }, 'the panel did not take an ended WireGuard session'));
  }

  private async stopIface(iface: Iface, reason: string): Promise<void> {
    if (iface.ready) {
      try {
        await this.observe(iface, { full: true });
        await Promise.all(iface.ledger.endAll(reason).map((e) => this.report(e, this.usernameOf(iface, e.publicKey))));
      } catch (e) {
        this.ctx.logger.warn({ interface: iface.name, err: (e as Error).message }, 'could not read final counters before stopping');
      }
    }
    iface.ready = false;
    this.ifaces.delete(iface.index);
    // wireguard-go removes its interface and socket on SIGTERM.
    if (iface.supervisor) {
      iface.supervisor.removeAllListeners();
      await iface.supervisor.stop();
    } else await this.ip(['link', 'del', iface.name]).catch(() => undefined);
    await this.ctx.host.remove(this.ledgerPath(iface)).catch(() => undefined);
  }

  /** The server key pair, made once with `wg genkey` / `wg pubkey` and kept (private 0600). */
  private ensureServerKeys(): Promise<{ privateKey: string; publicKey: string }> {
    return this.keyLock.run(async () => {
      if (this.serverKeys) return this.serverKeys;
      const { host } = this.ctx;
      await host.mkdirp(this.stateDir, 0o700);
      let privateKey: string | null = null;
      try {
        privateKey = (await host.readFile(this.paths.serverKey)).toString('utf8').trim();
      } catch {
        /* first start */
      }
      if (!privateKey || !WG_KEY_PATTERN.test(privateKey)) {
        privateKey = assertWgKey((await this.wg(['genkey'])).stdout.trim(), 'wg genkey output');
        await host.writeFileAtomic(this.paths.serverKey, `${privateKey}\n`, 0o600);
      }
      const publicKey = assertWgKey((await this.wg(['pubkey'], `${privateKey}\n`)).stdout.trim(), 'wg pubkey output');
      await host.writeFileAtomic(this.paths.serverPub, `${publicKey}\n`, 0o644);
      this.serverKeys = { privateKey, publicKey };
      return this.serverKeys;
    });
  }

  /**
   * Preshared keys by peer public key, made on first use (32 random bytes, what `wg genpsk`
   * prints) and kept in 256 shard files (0600) so adding one user rewrites one small file.
   */
  private ensurePsks(publicKeys: readonly string[]): Promise<Map<string, string>> {
    return this.keyLock.run(async () => {
      const { host } = this.ctx;
      const out = new Map<string, string>();
      const dirty = new Set<string>();
      for (const key of publicKeys) {
        const shard = createHash('sha256').update(key).digest('hex').slice(0, 2);
        let entries = this.pskShards.get(shard);
        if (!entries) {
          entries = new Map();
          try {
            const parsed = JSON.parse((await host.readFile(this.shardPath(shard))).toString('utf8')) as Record<string, string>;
            for (const [k, v] of Object.entries(parsed)) if (WG_KEY_PATTERN.test(k) && WG_KEY_PATTERN.test(v)) entries.set(k, v);
          } catch {
            /* no shard yet */
          }
          this.pskShards.set(shard, entries);
        }
        let psk = entries.get(key);
        if (!psk) {
          psk = randomBytes(32).toString('base64');
          entries.set(key, psk);
          dirty.add(shard);
        }
        out.set(key, psk);
      }
      if (dirty.size) await host.mkdirp(this.paths.pskDir, 0o700);
      for (const shard of dirty) {
        await host.writeFileAtomic(this.shardPath(shard), `${JSON.stringify(Object.fromEntries(this.pskShards.get(shard)!))}\n`, 0o600);
      }
      return out;
    });
  }

  private shardPath(shard: string): string {
    return path.posix.join(this.paths.pskDir, `${shard}.json`);
  }
}

/** The WireGuard protocol plugin. `create()` returns a {@link WireGuardPlugin}. */
const wireguardPlugin = defineProtocolPlugin<WireGuardConfig>({
  id: 'wireguard',
  apiVersion: '2.0',
  capabilities: WIREGUARD_CAPABILITIES,
  requirements: [
    { program: 'wg', debianPackages: ['wireguard-tools'] },
    { program: 'wireguard-go', debianPackages: ['wireguard-go'], unlessKernelModule: 'wireguard' },
  ],
  configSchema: wireGuardConfigSchema,
  create: (ctx) => new WireGuardPlugin(ctx),
});

export default wireguardPlugin;
