import { createHash } from 'node:crypto';
import path from 'node:path';
import type { CoreContext } from '../context';
import type { Host } from '../hosts/host';
import { forEachFactsPage, loadResellers } from '../enforcement/user-facts';
import type { Logger } from '../logger';
import type { PanelPki } from '../pki';
import type { PluginRegistry, RegisteredPlugin } from '../plugin/registry';
import type { DesiredState, DesiredUser, ProtocolId, ProtocolPluginInstance, ServerSettingKey } from '../plugin/types';
import { MATERIAL_COLUMNS } from '../protocols/table';
import { nodeServerId } from '../services/servers';
import type { Services } from '../services';
import { desiredUsers, nextChangeAt } from './desired-state';

export interface ReconcilerOptions {
  /** Changes arriving within this window are applied in one pass. */
  debounceMs?: number;
  /** First retry after a failed pass; doubles up to `maxBackoffMs`. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Longest wait before re-checking time-based changes (expiry, resets) even when none is known. */
  maxTimerMs?: number;
  /** How many servers are applied to at once in one pass (each server's plugins one after another). */
  serverConcurrency?: number;
  /**
   * How often the digest each host stores of the state it last took is read back and compared
   * (drift: a wiped or restored state dir, another panel); 0 = only when a node changes. Default 10 min.
   */
  driftCheckMs?: number;
  /**
   * Where servers known at construction keep their digests (the main server: its host and
   * `<data dir>/plugins/<protocol>`); nodes are registered by NodeRuntime as they attach.
   */
  digestPlaces?: Readonly<Record<string, DigestPlace>>;
  /**
   * How long a pass waits for one host. A host still applying after that (unreachable node,
   * hung daemon) goes on in the background and later passes skip it until it is done, so one
   * slow node never holds back the changes of the others. Default 20 s.
   */
  slowHostMs?: number;
}

/** Where a server's plugins keep their files: the stored digest of what each took lives there. */
export interface DigestPlace {
  host: Host;
  stateDirOf(protocol: ProtocolId): string;
}

/** The file, in a plugin's state dir, holding the digest of the last state that plugin took. */
export const APPLIED_DIGEST_FILE = 'applied-state.sha256';

/** Who holds live connections where (the accounting engine's live sessions). */
export interface ConnectionSources {
  sessionsOf(username: string): ReadonlyArray<{ sourceId: string }>;
}

type PluginSyncState = { state: 'ok' } | { state: 'degraded'; reason: string };

type Available = RegisteredPlugin & { instance: ProtocolPluginInstance };

/**
 * Makes every running plugin match the database with one declarative `apply` per plugin and
 * host: the users it must let in (see desired-state.ts), its listeners, and the server
 * settings it declared (the IPsec PSK, the CA's revocation list). Runs at start, after every
 * change that matters, after accounting ticks that change who may connect, and when time
 * alone does (an expiry passing); debounced, serialized, retried with backoff, and a plugin's
 * state is applied again only when it differs from what it last took, so a change reaches
 * exactly the hosts whose state it changes. Hosts are applied side by side (a bounded number
 * at a time); each keeps the digest of the state it took beside its plugin's files, and a
 * drift check compares that one small file instead of re-applying everything.
 */
export class Reconciler {
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private timeTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private dirty = false;
  private backoffMs: number;
  private stopped = false;
  private readonly unsubscribe: Array<() => void> = [];
  private readonly syncState = new Map<string, PluginSyncState>();
  /**
   * plugin id → the instance that took a state and that state's digest. Keyed with the instance
   * so a replaced one (a node re-attached, a plugin reloaded) is never taken for its predecessor.
   */
  private readonly applied = new Map<string, { instance: ProtocolPluginInstance; digest: string }>();
  /** Where each server's digests are stored (nodes register theirs when attached). */
  private readonly places = new Map<string, DigestPlace>();
  /** Servers whose stored digests the next pass reads back (drift check). */
  private readonly verify = new Set<string>();
  private driftTimer: NodeJS.Timeout | undefined;
  /** The pass queued behind the running one: every change until it starts joins it. */
  private queued: Promise<void> | null = null;
  private readonly counters = { passes: 0, applies: 0, driftApplies: 0 };
  /** Hosts being applied to, by server id: a later pass skips a busy one and comes back when it is done. */
  private readonly lanes = new Map<string, Promise<void>>();
  /** Servers a pass skipped because their lane was busy. */
  private readonly behind = new Set<string>();
  /** Lanes running now, under `serverConcurrency`, and those waiting for a slot. */
  private activeLanes = 0;
  private readonly waitingLanes: Array<() => void> = [];
  /** Whether the armed timer is a retry after a failure (a new change does not wait for it). */
  private timerIsRetry = false;
  private readonly opts: Required<ReconcilerOptions>;
  /** Connection sources per user at the last pass, for login-less plugins' max_clients. */
  private lastConnections = '';
  private nextTimeChange: Date | null = null;

  constructor(
    private readonly ctx: CoreContext,
    private readonly services: Services,
    private readonly plugins: PluginRegistry,
    private readonly pki: PanelPki,
    private readonly connections: ConnectionSources & { connectionsByUser(): ReadonlyMap<string, ReadonlyArray<{ sourceId: string }>> },
    options: ReconcilerOptions = {},
  ) {
    this.opts = { debounceMs: 200, initialBackoffMs: 1000, maxBackoffMs: 60_000, maxTimerMs: 60 * 60_000, serverConcurrency: 8, driftCheckMs: 10 * 60_000, digestPlaces: {}, slowHostMs: 20_000, ...options };
    for (const [serverId, place] of Object.entries(this.opts.digestPlaces)) this.places.set(serverId, place);
    this.backoffMs = this.opts.initialBackoffMs;
    this.log = ctx.logger.child({ component: 'reconciler' });
    ctx.status.register('reconciler', () => {
      const bad = [...this.syncState.entries()].filter(([, s]) => s.state === 'degraded') as Array<[string, { reason: string }]>;
      return bad.length ? { state: 'degraded', reason: bad.map(([id, s]) => `${id}: ${s.reason}`).join('; ') } : { state: 'ok' };
    });
  }

  /** Subscribes to domain events and runs the first pass (awaited, so start-up errors show at once). */
  async start(): Promise<void> {
    const schedule = () => this.schedule();
    const { events } = this.ctx;
    this.unsubscribe.push(
      events.on('users.changed', schedule),
      // Removed users and renewed keys reach plugins at once; certificates follow when the CA is done.
      events.on('users.deleted', ({ usernames }) => {
        schedule();
        void this.revokeCertificates(usernames);
      }),
      events.on('users.revoked', ({ username }) => {
        schedule();
        void this.revokeCertificates([username]).then(() => this.endRevokedSessions(username));
      }),
      events.on('ports.changed', schedule),
      // A node that changed (edited, back from an outage) is checked against what it stores.
      events.on('nodes.changed', ({ nodeId }) => {
        this.verify.add(nodeServerId(nodeId));
        schedule();
      }),
      events.on('sub_admins.changed', schedule),
      events.on('sub_admins.deleted', schedule),
      events.on('settings.changed', schedule),
      events.on('pki.changed', schedule),
      events.on('usage.committed', ({ statusChanged }) => this.afterTick(statusChanged)),
    );
    if (this.opts.driftCheckMs > 0) {
      this.driftTimer = setInterval(() => this.checkDrift(), this.opts.driftCheckMs);
      this.driftTimer.unref?.();
    }
    await this.syncNow().catch((err) => {
      this.schedule(this.backoffMs);
      throw err;
    });
  }

  /**
   * Stores, on `serverId`'s own host, the digest of the state each of its plugins took, so a
   * drift check costs one small read per plugin (NodeRuntime registers each node it attaches).
   */
  placeDigests(serverId: string, place: DigestPlace | null): void {
    if (place) this.places.set(serverId, place);
    else this.places.delete(serverId);
  }

  /**
   * Reads back the digests stored on the servers (all, or one) in the next pass: a plugin whose
   * host holds another digest than the one it took gets one full apply.
   */
  checkDrift(serverId?: string): void {
    const servers = serverId !== undefined ? [serverId] : [...this.places.keys()];
    if (servers.length === 0) return;
    for (const s of servers) this.verify.add(s);
    this.schedule(0);
  }

  /** Passes run and applies made since start (tests, benchmarks). */
  stats(): { passes: number; applies: number; driftApplies: number } {
    return { ...this.counters };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe.splice(0).forEach((off) => off());
    if (this.timer) clearTimeout(this.timer);
    if (this.timeTimer) clearTimeout(this.timeTimer);
    if (this.driftTimer) clearInterval(this.driftTimer);
    await this.running.catch(() => undefined);
    await this.lanesSettled(this.opts.slowHostMs);
  }

  /**
   * One full pass that starts after the call (after any pass in progress). Calls made while a
   * pass waits to start share it, so a burst of changes costs one pass, not one each. Rejects
   * if a plugin failed to apply.
   */
  syncNow(): Promise<void> {
    if (this.queued) return this.queued;
    const pass = this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = null;
        return this.pass();
      });
    this.queued = pass;
    this.running = pass;
    return pass;
  }

  /** Resolves once no pass is scheduled or running (tests). */
  async idle(): Promise<void> {
    for (let i = 0; i < 1000 && (this.timer || this.dirty || this.lanes.size > 0); i++) {
      await new Promise((r) => setTimeout(r, 10));
      if (!this.timer && !this.dirty && this.lanes.size === 0) break;
    }
    await this.running.catch(() => undefined);
  }

  /**
   * Applies a changed server setting now and names the nodes whose plugins took it (the
   * settings API's answer counts them). A plugin that failed is not counted.
   */
  async applySetting(key: string): Promise<string[]> {
    await this.syncNow().catch(() => undefined);
    // A node counts once every plugin there that uses the setting took it.
    const took = new Map<string, boolean>();
    for (const p of this.plugins.available()) {
      if (p.serverId === 'main' || !p.capabilities?.settings.includes(key as ServerSettingKey)) continue;
      took.set(p.serverId, (took.get(p.serverId) ?? true) && this.syncState.get(p.id)?.state === 'ok');
    }
    return [...took].filter(([, ok]) => ok).map(([server]) => server);
  }

  /**
   * Resolves once `serverId` is no longer applying (a pass stops waiting for a slow host; a
   * node's provisioning or sync job must not). When the lane was busy with an older state, the
   * pass it brings is awaited too. Each apply has its own time limit (the registry's).
   */
  async hostSettled(serverId: string): Promise<void> {
    for (let round = 0; round < 3; round++) {
      const lane = this.lanes.get(serverId);
      if (!lane) return;
      await lane.catch(() => undefined);
      await this.syncNow().catch(() => undefined);
    }
  }

  /** How the last pass went for one plugin (`protocol@server`); undefined before its first pass. */
  syncStateOf(pluginId: string): PluginSyncState | undefined {
    return this.syncState.get(pluginId);
  }

  /** The instant the last pass found time alone would next change who may connect (tests, /health). */
  nextTimeBasedChange(): Date | null {
    return this.nextTimeChange;
  }

  /**
   * A tick changes who may connect to login-less daemons when a status changed (limit
   * crossed, activation), when time passed a known change, or when connections moved between
   * protocols (max_clients counts across them). Gating daemons need none of it: authorize
   * and enforcement already cover them.
   */
  private afterTick(statusChanged: readonly string[]): void {
    if (!this.plugins.available().some((p) => p.capabilities && !p.capabilities.gatesLogins)) return;
    const due = this.nextTimeChange !== null && this.ctx.clock.now().getTime() >= this.nextTimeChange.getTime();
    if (statusChanged.length > 0 || due || this.connectionDigest() !== this.lastConnections) this.schedule();
  }

  private connectionDigest(): string {
    const parts: string[] = [];
    for (const [username, list] of this.connections.connectionsByUser()) {
      if (list.length) parts.push(`${username}:${list.map((c) => c.sourceId).sort().join(',')}`);
    }
    return parts.sort().join(';');
  }

  private schedule(delayMs = this.opts.debounceMs, retry = false): void {
    if (this.stopped) return;
    this.dirty = true;
    // A change does not wait out a retry's backoff: the host that failed is tried again, the
    // change reaches the others now.
    if (this.timer && this.timerIsRetry && !retry) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.timer) return;
    this.timerIsRetry = retry;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerIsRetry = false;
      this.dirty = false;
      this.syncNow().then(
        () => {
          this.backoffMs = this.opts.initialBackoffMs;
        },
        () => {
          const wait = this.backoffMs;
          this.backoffMs = Math.min(this.backoffMs * 2, this.opts.maxBackoffMs);
          this.log.warn({ retryInMs: wait }, 'sync failed; retrying');
          this.schedule(wait, true);
        },
      );
    }, delayMs);
    this.timer.unref?.();
  }

  /** Wakes up when time alone changes the answer (an expiry passes), even with no tick or event. */
  private armTimeTimer(at: Date | null): void {
    if (this.timeTimer) clearTimeout(this.timeTimer);
    this.timeTimer = undefined;
    if (this.stopped || !at) return;
    const wait = Math.min(Math.max(at.getTime() - this.ctx.clock.now().getTime(), 0) + 50, this.opts.maxTimerMs);
    this.timeTimer = setTimeout(() => {
      this.timeTimer = undefined;
      this.schedule(0);
    }, wait);
    this.timeTimer.unref?.();
  }

  private async pass(): Promise<void> {
    const plugins = this.plugins.available();
    const failures: string[] = [];
    if (plugins.length === 0) return;
    const now = this.ctx.clock.now();
    this.lastConnections = this.connectionDigest();
    const resellers = await loadResellers('all');
    const settings = await this.settingsFor(plugins);
    // Users are read a page at a time and each plugin's desired users (small objects) collected:
    // a pass over 100k users never holds every user's facts at once.
    const wanted = new Map<string, DesiredUser[]>(plugins.map((p) => [p.id, []]));
    let nextChange: number = Number.POSITIVE_INFINITY;
    await forEachFactsPage(MATERIAL_COLUMNS, (page) => {
      const material = new Map(page.map((u) => [u.facts.username, u.extra as Record<string, string | null>]));
      const users = page.map((u) => u.facts);
      const due = nextChangeAt(users, now);
      if (due) nextChange = Math.min(nextChange, due.getTime());
      for (const plugin of plugins) {
        wanted.get(plugin.id)!.push(
          ...desiredUsers({
            protocol: plugin.protocol,
            serverId: plugin.serverId,
            gatesLogins: plugin.capabilities!.gatesLogins,
            users,
            resellerOf: (id) => resellers.get(id),
            materialOf: (u) => material.get(u),
            connectionSourcesOf: (u) => this.connections.sessionsOf(u).map((c) => c.sourceId),
            now,
            openSecret: (s) => this.ctx.secrets.open(s),
          }),
        );
      }
    });
    this.nextTimeChange = Number.isFinite(nextChange) ? new Date(nextChange) : null;
    this.armTimeTimer(this.nextTimeChange);
    // Listeners come from the database (one reader on SQLite): read them all before the
    // hosts are driven in parallel.
    const states = new Map<string, DesiredState>();
    for (const plugin of plugins) {
      const caps = plugin.capabilities!;
      states.set(plugin.id, {
        users: wanted.get(plugin.id)!.sort((a, b) => (a.username < b.username ? -1 : a.username > b.username ? 1 : 0)),
        listeners: caps.takesListeners ? await this.services.servers.listenersOf(plugin.protocol, plugin.serverId) : [],
        settings: Object.fromEntries(caps.settings.filter((k) => settings[k] !== undefined).map((k) => [k, settings[k]!])),
      });
    }
    const verify = new Set(this.verify);
    this.verify.clear();
    // One host's plugins one after another (they share its connection), hosts side by side:
    // three nodes cost about as long as the slowest one, not the sum.
    const byServer = new Map<string, Available[]>();
    for (const plugin of plugins) byServer.set(plugin.serverId, [...(byServer.get(plugin.serverId) ?? []), plugin]);
    const started: Array<{ serverId: string; pending: Set<string>; done: Promise<void> }> = [];
    /** Set once this pass stops waiting: a host failing after that schedules its own retry. */
    let gaveUp = false;
    for (const [serverId, list] of byServer) {
      if (this.lanes.has(serverId)) {
        // Still busy with an earlier state: it gets this one once it is done.
        this.behind.add(serverId);
        if (verify.has(serverId)) this.verify.add(serverId);
        continue;
      }
      const pending = new Set(list.map((p) => p.id));
      let failed = false;
      const done = this.inLane(async () => {
        for (const plugin of list) {
          const failure = await this.applyOne(plugin, states.get(plugin.id)!, verify.has(serverId));
          pending.delete(plugin.id);
          if (failure) {
            failed = true;
            failures.push(failure);
          }
        }
      }).finally(() => {
        this.lanes.delete(serverId);
        if (this.behind.delete(serverId)) this.schedule(0);
        else if (gaveUp && failed) this.schedule(this.backoffMs, true);
      });
      this.lanes.set(serverId, done);
      started.push({ serverId, pending, done });
    }
    const allDone = await settleWithin(Promise.all(started.map((l) => l.done)), this.opts.slowHostMs);
    if (!allDone) {
      gaveUp = true;
      for (const lane of started) {
        if (lane.pending.size === 0) continue;
        const reason = `still applying after ${this.opts.slowHostMs} ms; later changes reach it once it is done`;
        for (const id of lane.pending) this.syncState.set(id, { state: 'degraded', reason });
        this.log.warn({ server: lane.serverId, plugins: [...lane.pending] }, 'a host is slow to apply; the others go on without it');
      }
    }
    this.counters.passes++;
    if (failures.length) throw new Error(failures.join('; '));
  }

  /** Runs one host's applies once a slot is free (at most `serverConcurrency` hosts at once). */
  private async inLane(fn: () => Promise<void>): Promise<void> {
    if (this.activeLanes >= this.opts.serverConcurrency) await new Promise<void>((resolve) => this.waitingLanes.push(resolve));
    this.activeLanes++;
    try {
      await fn();
    } finally {
      this.activeLanes--;
      this.waitingLanes.shift()?.();
    }
  }

  /** Waits for the hosts still applying, at most `ms`. */
  private async lanesSettled(ms: number): Promise<void> {
    if (this.lanes.size > 0) await settleWithin(Promise.all([...this.lanes.values()]), ms);
  }

  /**
   * Applies one plugin's state unless the same instance already took exactly it. A fresh
   * instance (panel start, node re-attached) always gets its first apply: that is where a
   * plugin starts or adopts its daemons and learns its users, so skipping it would leave a
   * host unserved. With `verify`, the digest stored on the host is read back first: a host
   * that holds something else (wiped or restored state dir, another panel) drifted and gets a
   * full apply. Returns the failure, if any.
   */
  private async applyOne(plugin: Available, state: DesiredState, verify: boolean): Promise<string | null> {
    try {
      const digest = digestOf(state);
      const held = this.applied.get(plugin.id);
      let known = held && held.instance === plugin.instance ? held.digest : undefined;
      // Only a host that would otherwise be skipped is worth the read.
      if (known === digest && verify) {
        const stored = await this.readStored(plugin);
        if (stored !== undefined && stored !== known) {
          this.log.warn({ plugin: plugin.id, stored: stored?.slice(0, 12) ?? null, applied: known.slice(0, 12) }, 'the host holds another state than the one it took; applying it in full');
          this.counters.driftApplies++;
          known = undefined;
        }
      }
      if (known !== digest) {
        await this.claimPorts(plugin, state.listeners);
        await plugin.instance.apply(state);
        this.counters.applies++;
        this.applied.set(plugin.id, { instance: plugin.instance, digest });
        // Anything else it listens on (beyond the listeners it was given) is claimed and opened too.
        await this.claimPorts(plugin, await plugin.instance.ports());
        await this.writeStored(plugin, digest);
        this.log.debug({ plugin: plugin.id, users: state.users.length, listeners: state.listeners.length }, 'desired state applied');
      }
      this.syncState.set(plugin.id, { state: 'ok' });
      return null;
    } catch (err) {
      const reason = (err as Error).message;
      this.applied.delete(plugin.id);
      this.syncState.set(plugin.id, { state: 'degraded', reason });
      this.log.error({ plugin: plugin.id, err: reason }, 'plugin apply failed');
      return `${plugin.id}: ${reason}`;
    }
  }

  private digestPath(plugin: Available): { host: Host; file: string } | null {
    const place = this.places.get(plugin.serverId);
    return place ? { host: place.host, file: path.posix.join(place.stateDirOf(plugin.protocol), APPLIED_DIGEST_FILE) } : null;
  }

  /** The digest the host stores; null when it has none, undefined when it cannot be read (unreachable: nothing to conclude). */
  private async readStored(plugin: Available): Promise<string | null | undefined> {
    const where = this.digestPath(plugin);
    if (!where) return undefined;
    try {
      if (!(await where.host.exists(where.file))) return null;
      return (await where.host.readFile(where.file)).toString('utf8').trim();
    } catch (err) {
      this.log.debug({ plugin: plugin.id, err: (err as Error).message }, 'stored digest unreadable; drift check skipped');
      return undefined;
    }
  }

  /** Best effort: a host that cannot keep the digest only costs a full apply at the next check. */
  private async writeStored(plugin: Available, digest: string): Promise<void> {
    const where = this.digestPath(plugin);
    if (!where) return;
    try {
      await where.host.mkdirp(path.posix.dirname(where.file));
      await where.host.writeFileAtomic(where.file, `${digest}\n`, 0o600);
    } catch (err) {
      this.log.warn({ plugin: plugin.id, err: (err as Error).message }, 'storing the applied digest on the host failed');
    }
  }

  /**
   * Listeners are claimed in the port registry before the daemon binds them, so a collision
   * (ocserv on 443/tcp beside an OpenVPN custom port) is refused with the owner's name instead
   * of failing inside the daemon; the firewall then opens what the registry holds.
   */
  private async claimPorts(plugin: Available, ports: ReadonlyArray<{ port: number; protocol: 'tcp' | 'udp' }>): Promise<void> {
    if (ports.length === 0) return;
    const claims = ports.map((l) => ({ server: plugin.serverId, port: l.port, protocol: l.protocol, owner: plugin.protocol }));
    const before = await this.services.portRegistry.list();
    await this.ctx.db.transaction((transaction) => this.services.portRegistry.claim(claims, transaction));
    const held = new Set(before.map((c) => `${c.server}/${c.port}/${c.protocol}`));
    if (claims.some((c) => !held.has(`${c.server}/${c.port}/${c.protocol}`))) this.ctx.events.emit('ports.changed', {});
  }

  private async settingsFor(plugins: readonly Available[]): Promise<Partial<Record<ServerSettingKey, string>>> {
    const wanted = new Set(plugins.flatMap((p) => p.capabilities?.settings ?? []));
    const out: Partial<Record<ServerSettingKey, string>> = {};
    if (wanted.has('ipsec_psk')) out.ipsec_psk = (await this.services.settings.ipsecPsk()) ?? undefined;
    if (wanted.has('pki_crl')) out.pki_crl = await this.pki.crl();
    return out;
  }

  /**
   * After a revoke every daemon holds the user's new credentials; the sessions opened with the
   * old ones end now (a client that comes back must use what the new page shows). One shot:
   * unlike enforcement's cuts there is no state that keeps the user out afterwards.
   */
  private async endRevokedSessions(username: string): Promise<void> {
    await this.idle();
    const sources = new Set(this.connections.sessionsOf(username).map((c) => c.sourceId));
    for (const plugin of this.plugins.available()) {
      if (!sources.has(plugin.id)) continue;
      try {
        await plugin.instance.disconnect({ username });
        this.log.info({ username, source: plugin.id }, 'sessions opened with revoked credentials ended');
      } catch (err) {
        this.log.warn({ username, source: plugin.id, err: (err as Error).message }, 'ending revoked sessions failed; the next apply keeps the old credentials out');
      }
    }
  }

  /**
   * A deleted or revoked user's certificate goes into the CRL at once (its profile stops
   * working on every server on the next connection attempt) and a later user of the same name
   * gets a fresh one; then every plugin gets the new list.
   */
  private async revokeCertificates(usernames: readonly string[]): Promise<void> {
    for (const username of usernames) {
      try {
        await this.pki.revokeClient(username);
        this.log.info({ username }, 'client certificate revoked');
      } catch (err) {
        this.log.error({ username, err: (err as Error).message }, 'revoking the client certificate failed');
      }
    }
    this.ctx.events.emit('pki.changed', {});
    this.schedule();
  }
}

/**
 * A state's fingerprint, hashed a thousand users at a time: no 100k-user JSON string in
 * memory, and not one hash call per user either (those calls were most of a pass's cost).
 */
function digestOf(state: DesiredState): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify([state.listeners, state.settings]));
  for (let i = 0; i < state.users.length; i += 1000) hash.update(JSON.stringify(state.users.slice(i, i + 1000)));
  return hash.digest('hex');
}

/** Whether `promise` settled within `ms` (it goes on either way). */
async function settleWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
    timer.unref?.();
  });
  try {
    return await Promise.race([promise.then(() => true, () => true), late]);
  } finally {
    clearTimeout(timer);
  }
}
