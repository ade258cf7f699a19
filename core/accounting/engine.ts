import { performance } from 'node:perf_hooks';
import type { CoreContext } from '../context';
import { statusOf } from '../enforcement/policy';
import { Enforcer, type EnforcementResult, type PollClock } from '../enforcement/enforcer';
import { FactsCache, loadFacts, loadResellers, type FactsSnapshot } from '../enforcement/user-facts';
import type { Logger } from '../logger';
import { pluginSourceId, type PluginRegistry, type RegisteredPlugin } from '../plugin/registry';
import type { AuthorizeRequest, AuthorizeResult, ProtocolId, SessionEnded, SessionPoll } from '../plugin/types';
import type { UserStatus } from '../services/user-status';
import { AfterCommit } from './after-commit';
import { AccountingJournal, type JournalEntry, type PendingEnded } from './journal';
import { LiveSessions, type LiveConnection } from './live-sessions';
import { AccountingMetrics } from './metrics';
import { createSessionTracker, RowFlag, trackerInfo, type SessionTracker, type TickResult } from './tracker';
import { isCounter, toTrackerPolls, trackerKeyOf } from './poll-intake';
import { buildUsage, Usage } from './usage-sums';
import { UserDirectory } from './user-directory';
import { BatchedUsageWriter, emptyTickWrite, isEmptyWrite, utcDay, type TickWrite } from './writer';

export interface AccountingEngineOptions {
  /** Use the TypeScript tracker even when the addon is built. */
  forceFallback?: boolean;
  /** How long a vanished or ended session is remembered (late events, stale rows). Default 1 h. */
  tombstoneRetentionMs?: number;
  /** Periodic resets are looked for at most this often (domain clock). Default 60 s. */
  resetCheckIntervalMs?: number;
  /** Also export Node process metrics (CPU, heap…) in /metrics. */
  processMetrics?: boolean;
  /**
   * Test hook: awaited after the polls are folded and before the commit (the crash test stops
   * the process here). See `setCommitHook`.
   */
  beforeCommit?: (write: TickWrite) => Promise<void> | void;
}

/** Where a commit hook runs: before the transaction opens, or inside it after every write. */
export type CommitHookStage = 'before-transaction' | 'inside-transaction';

export interface TickReport {
  tick: number;
  durationMs: number;
  committed: boolean;
  /** Sources polled successfully. */
  polled: string[];
  failed: Array<{ source: string; error: string }>;
  /** Users whose usage changed. */
  usersChanged: number;
  bytes: number;
  endedFolded: number;
  vanished: number;
  enforcement: EnforcementResult | null;
  /** Users whose status changed because of this tick (usage, activation, periodic reset). */
  statusChanged: string[];
  resetUsers: string[];
}

/** A session the tracker no longer holds as live (it vanished or ended), remembered for a while. */
interface Tombstone {
  key: string;
  scope: string;
  protocol: ProtocolId;
  serverId: string;
  user: string;
  rx: number;
  tx: number;
  connectedAt: number;
  /** True when a disconnect event gave final counters; false when it merely vanished. */
  ended: boolean;
  atMs: number;
}

interface PolledSource {
  plugin: RegisteredPlugin;
  poll?: SessionPoll;
  error?: string;
}

const sameConnection = (a: number, b: number | undefined) => !a || !b || a === b;

/**
 * Accounting and enforcement, one loop: every tick polls every plugin on every host, turns the
 * cumulative counters into deltas with the tracker (native addon or fallback), folds disconnect
 * events, and commits usage, per-day history, reseller and node totals and the journal in
 * one transaction. Then it activates flexible_days users at their first session,
 * applies periodic resets, announces status changes, and enforces who may stay connected.
 *
 * Exactly-once: the journal (`accounting_journal`) always equals the counters the committed
 * usage reflects, because both change in the same transaction. After a crash or a failed commit
 * the tracker is rebuilt from the journal, so the next poll counts exactly what was not counted.
 */
export class AccountingEngine {
  readonly live = new LiveSessions();
  readonly metrics: AccountingMetrics;
  readonly enforcer: Enforcer;
  readonly journal: AccountingJournal;
  private readonly tracker: SessionTracker;
  private readonly writer: BatchedUsageWriter;
  private readonly directory = new UserDirectory();
  private readonly facts = new FactsCache();
  private readonly tombs = new Map<string, Tombstone>();
  /**
   * sourceId → the tracker scopes of its last complete poll (one per daemon of a status-text
   * plugin, the source itself for parsed sessions): where a disconnect of a session the
   * tracker never saw belongs.
   */
  private readonly sourceScopes = new Map<string, readonly string[]>();
  private readonly logger: Logger;
  private initialized: Promise<void> | null = null;
  private running: Promise<TickReport> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private tickNo = 0;
  private pollRound = 0;
  private readonly lastPolledRound = new Map<string, number>();
  private endedWrites: Promise<void> = Promise.resolve();
  /** Disconnect events whose insert failed; counted from memory by the next tick. */
  private unsavedEnded: Array<Omit<PendingEnded, 'id'>> = [];
  private readonly unsubscribe: Array<() => void> = [];
  private readonly retentionMs: number;
  private readonly afterCommit: AfterCommit;
  private commitHook: { hook: (write: TickWrite) => Promise<void> | void; stage: CommitHookStage } | null = null;
  /** Why the last tick could not commit (cleared by the next commit); shown in /health. */
  private lastCommitError: string | null = null;

  constructor(
    private readonly ctx: CoreContext,
    readonly registry: PluginRegistry,
    options: AccountingEngineOptions = {},
  ) {
    this.logger = ctx.logger.child({ component: 'accounting' });
    this.tracker = createSessionTracker({ forceFallback: options.forceFallback });
    this.retentionMs = options.tombstoneRetentionMs ?? 60 * 60_000;
    this.afterCommit = new AfterCommit(ctx, this.facts, this.live, this.logger, options.resetCheckIntervalMs ?? 60_000);
    if (options.beforeCommit) this.commitHook = { hook: options.beforeCommit, stage: 'before-transaction' };
    this.writer = new BatchedUsageWriter(ctx.db.sequelize);
    this.journal = new AccountingJournal();
    this.metrics = new AccountingMetrics(
      {
        sessions: () => [...this.live.countsBySource().values()],
        usersByStatus: () => this.usersByStatus(),
        plugins: () => this.registry.list().map((p) => ({ protocol: p.protocol, serverId: p.serverId, available: p.state === 'available' })),
      },
      this.tracker.implementation,
      { defaultMetrics: options.processMetrics },
    );
    const pollClock: PollClock = { current: () => this.pollRound, lastPolled: (s) => this.lastPolledRound.get(s) ?? 0 };
    this.enforcer = new Enforcer(ctx, registry, this.live, pollClock, this.metrics);
    registry.setHooks({ authorize: (r) => this.authorize(r), sessionEnded: (e) => this.sessionEnded(e) });
    const info = trackerInfo(this.tracker);
    ctx.status.register('accounting', () => {
      if (this.lastCommitError) return { state: 'degraded', reason: `last accounting commit failed: ${this.lastCommitError}` };
      return info.implementation === 'native' ? { state: 'ok' } : { state: 'degraded', reason: `TypeScript fallback tracker in use: ${info.reason}` };
    });
  }

  get implementation(): 'native' | 'fallback' {
    return this.tracker.implementation;
  }

  /** Loads the journal into the tracker and subscribes to domain changes. Idempotent. */
  init(): Promise<void> {
    this.initialized ??= (async () => {
      await this.reloadFromJournal();
      const onUsers = ({ usernames }: { usernames: string[] }) => {
        this.directory.invalidate(usernames);
        this.facts.invalidateUsers(usernames);
        this.afterCommit.forget(usernames);
        this.enforceSoon(usernames);
      };
      this.unsubscribe.push(
        this.ctx.events.on('users.changed', onUsers),
        this.ctx.events.on('users.deleted', onUsers),
        this.ctx.events.on('sub_admins.changed', ({ subAdminId }) => {
          this.facts.invalidateReseller(subAdminId);
          this.enforceReseller(subAdminId);
        }),
        this.ctx.events.on('sub_admins.deleted', ({ subAdminId }) => {
          this.directory.clear();
          this.facts.invalidateAll();
          this.enforceReseller(subAdminId);
        }),
      );
    })();
    return this.initialized;
  }

  /** Starts the tick loop (every `config.accountingIntervalMs`). */
  async start(): Promise<void> {
    await this.init();
    this.stopped = false;
    const interval = this.ctx.config.accountingIntervalMs;
    const loop = async () => {
      if (this.stopped) return;
      try {
        await this.tick();
      } catch (err) {
        this.logger.error({ err }, 'accounting tick failed');
      }
      if (!this.stopped) {
        this.timer = setTimeout(loop, interval);
        this.timer.unref?.();
      }
    };
    this.timer = setTimeout(loop, interval);
    this.timer.unref?.();
  }

  /** Stops the loop and waits for the running tick and pending event writes. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
    await this.endedWrites;
    this.unsubscribe.splice(0).forEach((off) => off());
  }

  /** One accounting round; concurrent callers share the running one. */
  tick(): Promise<TickReport> {
    this.running ??= this.runTick().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  authorize(request: AuthorizeRequest): Promise<AuthorizeResult> {
    return this.enforcer.authorize(request);
  }

  /**
   * A plugin reports a disconnect with final counters. The connection leaves the live view at
   * once; the event is made durable immediately and counted by the next tick. Resolves once it
   * is durable; rejects when it could not be stored (it is then counted from memory, and the
   * plugin keeps its own record to report again: a repeat counts nothing twice, since the tick
   * adds only final counters minus those the journal already holds for the session).
   */
  sessionEnded(ended: SessionEnded): Promise<void> {
    const s = ended.session;
    if (!s || typeof s.sessionKey !== 'string' || !s.sessionKey || !isCounter(s.rxBytes) || !isCounter(s.txBytes)) {
      this.logger.warn({ ended }, 'ignoring a malformed session-ended event');
      return Promise.resolve();
    }
    const sourceId = pluginSourceId(s.protocol, s.serverId);
    const key = trackerKeyOf(sourceId, s.sessionKey);
    this.live.remove(sourceId, key);
    this.metrics.endedEvents.inc();
    const event: Omit<PendingEnded, 'id'> = {
      key,
      protocol: s.protocol,
      serverId: s.serverId,
      username: typeof s.username === 'string' ? s.username : '',
      connectedAt: isCounter(s.connectedAt) ? s.connectedAt : 0,
      rx: s.rxBytes,
      tx: s.txBytes,
      reason: String(ended.reason ?? ''),
      receivedAtMs: this.ctx.clock.now().getTime(),
    };
    let stored = true;
    this.endedWrites = this.endedWrites.then(async () => {
      try {
        await this.journal.recordEnded(event);
      } catch (err) {
        stored = false;
        this.logger.error({ err, key }, 'could not store a disconnect event; it is kept in memory for the next tick');
        this.unsavedEnded.push(event);
      }
    });
    return this.endedWrites.then(() => {
      if (!stored) throw new Error(`the disconnect of ${key} is not stored yet`);
    });
  }

  /**
   * Test seam: `hook` is awaited on every tick between the poll and the commit, either before
   * the transaction opens or inside it once every statement ran (nothing committed yet).
   */
  setCommitHook(hook: ((write: TickWrite) => Promise<void> | void) | null, stage: CommitHookStage = 'before-transaction'): void {
    this.commitHook = hook ? { hook, stage } : null;
  }

  /** Resolves once every disconnect event reported so far is durable. */
  async flushEvents(): Promise<void> {
    await this.endedWrites;
  }

  /** Runs enforcement now for the named users (used after changes; the tick covers the rest). */
  enforceUsers(usernames: Iterable<string>): Promise<EnforcementResult> {
    return this.enforcer.enforce({ usernames });
  }

  // -------------------------------------------------------------------------------------------

  private enforceSoon(usernames: string[]): void {
    const online = usernames.filter((u) => this.live.connectionsOf(u) > 0);
    if (!online.length) return;
    this.enforcer.enforce({ usernames: online }).catch((err) => this.logger.error({ err }, 'enforcement after a change failed'));
  }

  private enforceReseller(subAdminId: number): void {
    (async () => {
      const online = [...this.live.connectionsByUser().keys()].filter(Boolean);
      if (!online.length) return;
      const owners = await this.directory.resolve(online);
      const theirs = online.filter((u) => {
        const e = owners.get(u);
        return !e || e.subAdminId === subAdminId;
      });
      if (theirs.length) await this.enforcer.enforce({ usernames: theirs });
    })().catch((err) => this.logger.error({ err, subAdminId }, 'enforcement after a reseller change failed'));
  }

  /** The tracker scope a key belongs to: the longest known scope of its source that prefixes it. */
  private scopeOfKey(sourceId: string, key: string): string {
    let best = sourceId;
    for (const scope of this.sourceScopes.get(sourceId) ?? []) {
      if (scope.length > best.length && key.startsWith(`${scope}:`)) best = scope;
    }
    return best;
  }

  private async reloadFromJournal(): Promise<void> {
    const rows = await this.journal.load();
    this.tracker.reset();
    this.tombs.clear();
    for (const r of rows) {
      const { protocol, serverId } = parseSourceId(r.sourceId);
      const scopes = this.sourceScopes.get(r.sourceId) ?? [];
      if (!scopes.includes(r.scope)) this.sourceScopes.set(r.sourceId, [...scopes, r.scope]);
      // Tombstones go in as "ended" so stale rows of them are ignored by the tracker itself.
      this.tracker.seed({ key: r.key, scope: r.scope, user: r.user, rx: r.rx, tx: r.tx, connectedAt: r.connectedAt, ended: r.ended });
      if (r.ended) {
        this.tombs.set(r.key, { key: r.key, scope: r.scope, protocol, serverId, user: r.user, rx: r.rx, tx: r.tx, connectedAt: r.connectedAt, ended: true, atMs: r.seenAtMs });
      }
    }
    if (rows.length) this.logger.info({ sessions: rows.length, tombstones: this.tombs.size }, 'accounting resumed from the journal');
  }

  private async runTick(): Promise<TickReport> {
    await this.init();
    const t0 = performance.now();
    const now = this.ctx.clock.now();
    const nowMs = now.getTime();
    const tick = ++this.tickNo;
    const round = ++this.pollRound;
    const report: TickReport = {
      tick,
      durationMs: 0,
      committed: false,
      polled: [],
      failed: [],
      usersChanged: 0,
      bytes: 0,
      endedFolded: 0,
      vanished: 0,
      enforcement: null,
      statusChanged: [],
      resetUsers: [],
    };

    // 1. Poll every available plugin, each on its own: one failure never spoils the others.
    const plugins = this.registry.available();
    const polled: PolledSource[] = await Promise.all(
      plugins.map(async (plugin) => {
        try {
          const poll = await plugin.instance.pollSessions();
          this.registry.noteOutcome(plugin.id, null);
          return { plugin, poll };
        } catch (err) {
          this.registry.noteOutcome(plugin.id, err);
          return { plugin, error: (err as Error).message };
        }
      }),
    );

    // 2. Disconnect events reported so far (durable rows, plus any kept in memory).
    await this.endedWrites;
    const pending = await this.journal.pendingEnded();
    const unsaved = this.unsavedEnded.splice(0);

    // 3. Fold polls, then disconnect events, through the tracker; 4. sums; 5. commit. Any
    // failure from here to the commit puts the tracker back to the journal's committed state.
    const usage = new Usage();
    const write = emptyTickWrite(utcDay(now), nowMs);
    const newLive = new Map<string, Map<string, LiveConnection>>();
    let changed = new Map<number, { username: string; rx: number; tx: number }>();
    let committed = false;
    try {
      const reseed: Tombstone[] = [];
      for (const p of polled) {
        let result: TickResult;
        try {
          if (p.error !== undefined || !p.poll) throw new Error(p.error ?? 'no poll');
          const trackerPolls = toTrackerPolls(p.plugin.id, p.plugin.protocol, p.plugin.serverId, p.poll);
          result = this.tracker.tick(trackerPolls); // validates before it changes anything
        } catch (err) {
          report.failed.push({ source: p.plugin.id, error: (err as Error).message });
          this.registry.noteOutcome(p.plugin.id, err);
          this.metrics.pollFailures.inc({ protocol: p.plugin.protocol, server: p.plugin.serverId });
          this.logger.warn({ source: p.plugin.id, err: (err as Error).message }, 'poll failed or was malformed; its sessions keep their last counters');
          continue;
        }
        newLive.set(p.plugin.id, this.fold(p.plugin, result, usage, reseed, nowMs, report));
        report.polled.push(p.plugin.id);
      }
      for (const t of reseed) {
        this.tracker.seed({ key: t.key, scope: t.scope, user: t.user, rx: t.rx, tx: t.tx, connectedAt: t.connectedAt, ended: true });
      }
      for (const e of [...pending, ...unsaved.map((u) => ({ ...u, id: 0 }))]) {
        this.foldEnded(e, usage, nowMs, newLive);
        if (e.id) write.consumedEndedIds.push(e.id);
        report.endedFolded++;
      }

      // Tombstones past retention: nothing will refer to them any more.
      for (const [key, t] of this.tombs) {
        if (nowMs - t.atMs <= this.retentionMs) continue;
        this.tombs.delete(key);
        this.tracker.forget(key);
        this.journal.delete(pluginSourceId(t.protocol, t.serverId), key);
      }

      changed = await buildUsage(usage, this.directory, this.logger, write, report);

      write.journal = this.journal.takeDirty();
      const hook = this.commitHook;
      if (hook?.stage === 'before-transaction') await hook.hook(write);
      if (!isEmptyWrite(write) || hook?.stage === 'inside-transaction') {
        const w0 = performance.now();
        const written = await this.ctx.db.transaction(async (transaction) => {
          const handle = await this.writer.write(write, transaction);
          if (hook?.stage === 'inside-transaction') await hook.hook(write);
          return handle;
        });
        written.commit();
        this.metrics.writeDuration.observe((performance.now() - w0) / 1000);
      }
      committed = true;
      this.lastCommitError = null;
    } catch (err) {
      this.lastCommitError = (err as Error).message;
      this.metrics.tickFailures.inc();
      this.logger.error({ err }, 'accounting commit failed; the tracker returns to the journal and the next tick retries');
      this.unsavedEnded.push(...unsaved);
      this.writer.reset();
      this.directory.clear();
      await this.reloadFromJournal().catch((e) => this.logger.error({ err: e }, 'reloading the journal failed'));
    }
    report.committed = committed;

    // 6. Live view (facts about connections, whatever happened to the commit).
    for (const [sourceId, conns] of newLive) {
      this.live.replaceSource(sourceId, conns);
      this.lastPolledRound.set(sourceId, round);
    }
    const known = new Set(this.registry.available().map((p) => p.id));
    for (const [sourceId] of this.live.countsBySource()) if (!known.has(sourceId)) this.live.dropSource(sourceId);
    this.live.reindex();
    this.enforcer.pruneGrants();

    if (committed) {
      for (const [, s] of usage.bySource) {
        for (const [, [rx, tx]] of s.users) {
          this.metrics.bytes.inc({ protocol: s.protocol, server: s.serverId, direction: 'rx' }, rx);
          this.metrics.bytes.inc({ protocol: s.protocol, server: s.serverId, direction: 'tx' }, tx);
        }
      }
      // 7. Activation, periodic resets, status changes, enforcement.
      const after = await this.afterCommit.run(now, changed, new Map(write.resellers.map((r) => [r.id, r.bytes])), report);
      report.enforcement = await this.enforcer.enforce({ facts: after });
      // Announced after enforcement has acted, so listeners see the cuts already under way.
      // Not `users.changed`: that would bring the engine back here (a second enforcement pass
      // and a dropped facts cache) for what this pass has just decided.
      // Every tick, even one that moved nothing: time passing and connections moving between
      // protocols change who login-less daemons may hold (the reconciler judges cheaply).
      const moved = [...changed.values()].map((c) => c.username);
      this.ctx.events.emit('usage.committed', { usernames: [...new Set(moved)].sort(), statusChanged: report.statusChanged });
    }

    report.durationMs = performance.now() - t0;
    this.metrics.tickDuration.observe(report.durationMs / 1000);
    if (report.failed.length || report.endedFolded || report.vanished) {
      this.logger.debug({ tick, polled: report.polled.length, failed: report.failed.length, ended: report.endedFolded, vanished: report.vanished }, 'tick');
    }
    return report;
  }

  /** Feeds one plugin's poll to the tracker and collects deltas, journal entries and connections. */
  private fold(
    plugin: RegisteredPlugin,
    r: TickResult,
    usage: Usage,
    reseed: Tombstone[],
    nowMs: number,
    report: TickReport,
  ): Map<string, LiveConnection> {
    const sourceId = plugin.id;
    const { protocol, serverId } = plugin;
    const previous = this.live.previous(sourceId);
    const conns = new Map<string, LiveConnection>();
    const wallNow = Date.now();
    let poll = 0;
    for (let row = 0; row < r.rowCount; row++) {
      while (poll < r.polls.length - 1 && row >= r.polls[poll].rowStart + r.polls[poll].rowCount) poll++;
      const scope = r.polls[poll].scope;
      const flags = r.flags[row];
      const key = r.keyAt(row);
      const user = r.userNames[r.user[row]];
      const rx = r.rx[row];
      const tx = r.tx[row];
      const connectedAt = r.connectedAt[row];
      let rxd = r.rxDelta[row];
      let txd = r.txDelta[row];
      let checkpoint = rxd > 0 || txd > 0;
      let stale = false;
      const tomb = this.tombs.get(key);
      if (tomb) {
        if (flags & RowFlag.New && sameConnection(tomb.connectedAt, connectedAt)) {
          // The tracker had forgotten it: count only what lies beyond the remembered counters.
          if (rx <= tomb.rx && tx <= tomb.tx) {
            rxd = 0;
            txd = 0;
            stale = tomb.ended;
          } else if (rx >= tomb.rx && tx >= tomb.tx) {
            rxd = rx - tomb.rx;
            txd = tx - tomb.tx;
          }
        }
        if (stale) {
          reseed.push(tomb);
        } else {
          this.tombs.delete(key);
          checkpoint = true;
        }
      }
      if (stale) continue;
      usage.add(sourceId, protocol, serverId, user, rxd, txd);
      if (checkpoint) this.journal.record(sourceId, key, scope, user, rx, tx, connectedAt, nowMs);
      if (flags & RowFlag.Repeat) continue;
      const prev = previous?.get(key);
      if (prev && prev.connectedAt === connectedAt && prev.username === user) {
        // The same connection as last poll: keep its object (25k of them per tick otherwise).
        prev.rx = rx;
        prev.tx = tx;
        conns.set(key, prev);
        continue;
      }
      conns.set(key, {
        key,
        sourceId,
        username: user,
        connectedAt,
        firstSeenMs: prev && prev.connectedAt === connectedAt ? prev.firstSeenMs : wallNow,
        firstSeenRound: prev && prev.connectedAt === connectedAt ? prev.firstSeenRound : this.pollRound,
        protocol,
        serverId,
        pluginKey: key.slice(sourceId.length + 1),
        rx,
        tx,
      });
    }
    for (const v of r.vanished) {
      const t: Tombstone = { key: v.key, scope: v.scope, protocol, serverId, user: v.user, rx: v.rx, tx: v.tx, connectedAt: v.connectedAt, ended: false, atMs: nowMs };
      this.tombs.set(v.key, t);
      this.journal.set(sourceId, journalEntryOf(t));
      report.vanished++;
    }
    // A plugin's poll lists every daemon it runs. When all of them answered completely, a
    // session tracked under a scope the poll no longer has (an instance that was removed
    // without reporting its sessions ended) is gone, like a vanished one.
    const scopes = r.polls.map((x) => x.scope);
    const complete = r.polls.every((x) => x.complete && x.malformed === 0);
    if (complete) {
      for (const e of this.journal.entriesOf(sourceId)) {
        if (e.ended || scopes.includes(e.scope) || conns.has(e.key)) continue;
        const t: Tombstone = { key: e.key, scope: e.scope, protocol, serverId, user: e.user, rx: e.rx, tx: e.tx, connectedAt: e.connectedAt, ended: false, atMs: nowMs };
        this.tracker.forget(e.key);
        this.tombs.set(e.key, t);
        this.journal.set(sourceId, journalEntryOf(t));
        report.vanished++;
      }
      this.sourceScopes.set(sourceId, scopes);
    } else {
      const bad = r.polls.filter((x) => x.malformed > 0 || !x.complete).map((x) => ({ scope: x.scope, malformed: x.malformed, complete: x.complete }));
      this.logger.warn({ source: sourceId, polls: bad }, 'incomplete status from the plugin; nobody vanishes from those daemons this tick');
    }
    return conns;
  }

  /** Counts one disconnect event: final counters minus what was already counted. */
  private foldEnded(e: PendingEnded, usage: Usage, nowMs: number, newLive: Map<string, Map<string, LiveConnection>>): void {
    const protocol = e.protocol as ProtocolId;
    const sourceId = pluginSourceId(protocol, e.serverId);
    const scope = this.scopeOfKey(sourceId, e.key);
    const tomb = this.tombs.get(e.key);
    const r = this.tracker.ended(e.key, e.rx, e.tx, { user: e.username, connectedAt: e.connectedAt || undefined, scope });
    let rxd = e.rx;
    let txd = e.tx;
    let finalRx = e.rx;
    let finalTx = e.tx;
    let connectedAt = e.connectedAt;
    let user = e.username;
    if (r?.known) {
      rxd = r.rxDelta;
      txd = r.txDelta;
      finalRx = r.rx;
      finalTx = r.tx;
      connectedAt = r.connectedAt;
      user = r.user || e.username;
    } else if (tomb && sameConnection(tomb.connectedAt, e.connectedAt)) {
      user = tomb.user || e.username;
      connectedAt = tomb.connectedAt || e.connectedAt;
      if (e.rx <= tomb.rx && e.tx <= tomb.tx) {
        rxd = 0;
        txd = 0;
        finalRx = tomb.rx;
        finalTx = tomb.tx;
      } else if (e.rx >= tomb.rx && e.tx >= tomb.tx) {
        rxd = e.rx - tomb.rx;
        txd = e.tx - tomb.tx;
      }
      if (finalRx !== e.rx || finalTx !== e.tx) {
        this.tracker.seed({ key: e.key, scope, user, rx: finalRx, tx: finalTx, connectedAt, ended: true });
      }
    }
    usage.add(sourceId, protocol, e.serverId, user, rxd, txd);
    const t: Tombstone = { key: e.key, scope, protocol, serverId: e.serverId, user, rx: finalRx, tx: finalTx, connectedAt, ended: true, atMs: nowMs };
    this.tombs.set(e.key, t);
    this.journal.set(sourceId, journalEntryOf(t));
    newLive.get(sourceId)?.delete(e.key);
    this.live.remove(sourceId, e.key);
  }

  /**
   * Zeroes usage of users whose data_limit_reset_strategy period has passed (see
   * `AfterCommit.applyPeriodicResets`).
   */
  applyPeriodicResets(now: Date, facts?: FactsSnapshot): Promise<{ reset: string[]; flipped: string[] }> {
    return this.afterCommit.applyPeriodicResets(now, facts);
  }

  private async usersByStatus(): Promise<Record<UserStatus, number>> {
    const counts: Record<UserStatus, number> = { active: 0, disabled: 0, limited: 0, expired: 0, on_hold: 0 };
    const facts = await loadFacts('all');
    const resellers = await loadResellers('all');
    const now = this.ctx.clock.now();
    for (const u of facts.users.values()) {
      counts[statusOf(u, u.sub_admin_id == null ? null : resellers.get(u.sub_admin_id), now)]++;
    }
    return counts;
  }
}

function journalEntryOf(t: Tombstone): JournalEntry {
  return { key: t.key, scope: t.scope, user: t.user, rx: t.rx, tx: t.tx, connectedAt: t.connectedAt, ended: true, seenAtMs: t.atMs };
}

function parseSourceId(sourceId: string): { protocol: ProtocolId; serverId: string } {
  const at = sourceId.indexOf('@');
  return { protocol: sourceId.slice(0, at) as ProtocolId, serverId: sourceId.slice(at + 1) };
}

