import type { LiveSessions, LiveConnection } from '../accounting/live-sessions';
import type { AccountingMetrics } from '../accounting/metrics';
import type { CoreContext } from '../context';
import type { Logger } from '../logger';
import type { PluginRegistry } from '../plugin/registry';
import type { AuthorizeRequest, AuthorizeResult } from '../plugin/types';
import { authorizeDecision, decide, type CutReason, type Decision, type ResellerFacts, type UserFacts } from './policy';
import { loadFacts, type FactsSnapshot } from './user-facts';

/** Which polls have happened, so a cut is judged only by a poll that started after it. */
export interface PollClock {
  /** Increases with every poll round started. */
  current(): number;
  /** The round of the last successful poll of a source (0 when never). */
  lastPolled(sourceId: string): number;
}

interface PendingCut {
  id: string;
  username: string;
  sourceId: string;
  /** Set for a single-session cut (max_clients). */
  connection?: LiveConnection;
  reason: CutReason;
  attempts: number;
  /** Poll round current when the last disconnect was sent. */
  issuedAt: number;
  firstAtMs: number;
}

export interface EnforcementResult {
  decisions: Decision[];
  /** Disconnects sent in this pass (new cuts and retries). */
  sent: number;
  /** Cuts whose session was gone on the next poll. */
  confirmed: number;
  /** Cuts whose session was still there on the next poll (retried). */
  persisting: number;
}

/** After this many attempts a persisting session is logged as an error, not a warning. */
const ESCALATE_AFTER = 3;

/**
 * Makes plugins cut the sessions the policy says must end, then checks on the next poll that
 * they did: a session still there is cut again and logged (warning, then error). Also answers
 * plugins' authorize calls, counting connections across every protocol and server plus the
 * ones authorized since the last poll of that server (so two simultaneous logins cannot both
 * take the last slot).
 */
export class Enforcer {
  private readonly pending = new Map<string, PendingCut>();
  /** username → poll round and source of each connection authorized but not yet seen in a poll. */
  private readonly grants = new Map<string, Array<{ round: number; sourceId: string }>>();
  private queue: Promise<unknown> = Promise.resolve();
  private readonly logger: Logger;

  constructor(
    private readonly ctx: CoreContext,
    private readonly registry: PluginRegistry,
    private readonly live: LiveSessions,
    private readonly polls: PollClock,
    private readonly metrics?: AccountingMetrics,
  ) {
    this.logger = ctx.logger.child({ component: 'enforcement' });
  }

  /** Cuts awaiting confirmation (for tests and /health). */
  pendingCuts(): Array<{ username: string; sourceId: string; reason: CutReason; attempts: number; sessionKey?: string }> {
    return [...this.pending.values()].map((p) => ({ username: p.username, sourceId: p.sourceId, reason: p.reason, attempts: p.attempts, sessionKey: p.connection?.pluginKey }));
  }

  async authorize(request: AuthorizeRequest): Promise<AuthorizeResult> {
    const facts = await loadFacts([request.username]);
    const user = facts.users.get(request.username);
    const reseller = user?.sub_admin_id != null ? facts.resellers.get(user.sub_admin_id) : null;
    const sourceId = `${request.protocol}@${request.serverId}`;
    const grants = (this.grants.get(request.username) ?? []).filter((g) => this.grantLives(g));
    const verdict = authorizeDecision(request, {
      user,
      reseller,
      liveConnections: this.connectionCount(request.username, grants),
      now: this.ctx.clock.now(),
      openSecret: (s) => this.ctx.secrets.open(s),
    });
    if (verdict.allowed) {
      grants.push({ round: this.polls.current(), sourceId });
      this.grants.set(request.username, grants);
    } else if (grants.length) {
      this.grants.set(request.username, grants);
    } else {
      this.grants.delete(request.username);
    }
    this.logger.debug({ username: request.username, protocol: request.protocol, serverId: request.serverId, verdict }, 'authorize');
    return verdict;
  }

  /**
   * The user's connections as authorize must count them: per source, the settled ones plus
   * the larger of its grants and its connections seen only once (a grant stands for its own
   * connection until that is settled, so counting both would count it twice; a source that
   * never asks, such as ocserv, has no grants, and a session it shows once counts at once).
   */
  private connectionCount(username: string, grants: ReadonlyArray<{ sourceId: string }>): number {
    const bySource = new Map<string, { settled: number; fresh: number; grants: number }>();
    const entry = (sourceId: string) => bySource.get(sourceId) ?? bySource.set(sourceId, { settled: 0, fresh: 0, grants: 0 }).get(sourceId)!;
    for (const c of this.live.sessionsOf(username)) entry(c.sourceId)[this.settled(c) ? 'settled' : 'fresh']++;
    for (const g of grants) entry(g.sourceId).grants++;
    let n = 0;
    for (const e of bySource.values()) n += e.settled + Math.max(e.fresh, e.grants);
    return n;
  }

  /** Drops grants that polls have since accounted for. */
  pruneGrants(): void {
    for (const [username, list] of this.grants) {
      const kept = list.filter((g) => this.grantLives(g));
      if (kept.length) this.grants.set(username, kept);
      else this.grants.delete(username);
    }
  }

  /**
   * A grant stands in for its connection until that connection is settled (listed by two
   * polls of its server), or for two polls when it never showed up (the login failed).
   */
  private grantLives(g: { round: number; sourceId: string }): boolean {
    return this.polls.lastPolled(g.sourceId) <= g.round + 1;
  }

  private settled(c: LiveConnection): boolean {
    return c.firstSeenRound < this.polls.lastPolled(c.sourceId);
  }

  /**
   * Decides for every connected user (after a tick) or for the named ones (after a change),
   * sends the cuts, and — in a full pass — confirms or retries earlier cuts.
   * `facts` may be given when the caller already read them.
   */
  enforce(scope: { usernames?: Iterable<string>; facts?: FactsSnapshot } = {}): Promise<EnforcementResult> {
    const run = this.queue.then(() => this.pass(scope));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async pass(scope: { usernames?: Iterable<string>; facts?: FactsSnapshot }): Promise<EnforcementResult> {
    const full = scope.usernames === undefined;
    const connections = this.live.connectionsByUser();
    const subject = new Map<string, readonly LiveConnection[]>();
    if (full) {
      for (const [u, conns] of connections) if (u !== '') subject.set(u, conns);
    } else {
      for (const u of scope.usernames!) {
        const conns = connections.get(u);
        if (u !== '' && conns?.length) subject.set(u, conns);
      }
    }
    const result: EnforcementResult = { decisions: [], sent: 0, confirmed: 0, persisting: 0 };
    if (subject.size === 0 && !full) return result;

    const facts = scope.facts ?? (subject.size ? await loadFacts(subject.keys()) : { users: new Map<string, UserFacts>(), resellers: new Map<number, ResellerFacts>() });
    const decisions = decide(
      subject,
      (u) => facts.users.get(u),
      (id) => facts.resellers.get(id),
      this.ctx.clock.now(),
      (c) => this.settled(c as LiveConnection),
    );
    result.decisions = decisions;

    const wanted = new Map<string, Omit<PendingCut, 'attempts' | 'issuedAt' | 'firstAtMs'>>();
    for (const d of decisions) {
      if (d.kind === 'cut_user') {
        for (const sourceId of new Set(d.connections.map((c) => c.sourceId))) {
          const id = `user:${d.username}@${sourceId}`;
          wanted.set(id, { id, username: d.username, sourceId, reason: d.reason });
        }
      } else {
        for (const c of d.connections as LiveConnection[]) {
          const id = `conn:${c.key}`;
          wanted.set(id, { id, username: d.username, sourceId: c.sourceId, connection: c, reason: d.reason });
        }
      }
    }

    const sends: Array<Promise<void>> = [];
    for (const [id, want] of wanted) {
      const prev = this.pending.get(id);
      if (!prev) {
        const cut: PendingCut = { ...want, attempts: 1, issuedAt: this.polls.current(), firstAtMs: Date.now() };
        this.pending.set(id, cut);
        this.logger.info({ username: cut.username, source: cut.sourceId, reason: cut.reason, sessionKey: cut.connection?.pluginKey }, 'cutting session(s)');
        this.metrics?.disconnects.inc({ reason: cut.reason });
        sends.push(this.send(cut));
        result.sent++;
      } else if (this.polls.lastPolled(prev.sourceId) > prev.issuedAt) {
        // A poll that began after the cut still shows the session.
        prev.attempts++;
        prev.issuedAt = this.polls.current();
        prev.reason = want.reason;
        const level = prev.attempts > ESCALATE_AFTER ? 'error' : 'warn';
        this.logger[level](
          { username: prev.username, source: prev.sourceId, reason: prev.reason, attempts: prev.attempts, sessionKey: prev.connection?.pluginKey, sinceMs: Date.now() - prev.firstAtMs },
          'cut session still present on the next poll; cutting again',
        );
        this.metrics?.persistingCuts.inc();
        this.metrics?.disconnects.inc({ reason: prev.reason });
        sends.push(this.send(prev));
        result.sent++;
        result.persisting++;
      }
    }

    if (full) {
      for (const [id, cut] of this.pending) {
        if (wanted.has(id)) continue;
        const stillThere = cut.connection
          ? this.live.get(cut.sourceId, cut.connection.key) !== undefined
          : this.live.sessionsOf(cut.username).some((c) => c.sourceId === cut.sourceId);
        if (!stillThere && this.polls.lastPolled(cut.sourceId) <= cut.issuedAt && this.registry.available().some((p) => p.id === cut.sourceId)) {
          continue; // not polled since the cut; judge it next time
        }
        this.pending.delete(id);
        if (!stillThere) {
          result.confirmed++;
          this.logger.info({ username: cut.username, source: cut.sourceId, reason: cut.reason, attempts: cut.attempts }, 'cut confirmed: session gone');
        } else {
          this.logger.info({ username: cut.username, source: cut.sourceId }, 'cut no longer needed (user may connect again)');
        }
      }
    }
    await Promise.all(sends);
    return result;
  }

  private async send(cut: PendingCut): Promise<void> {
    const plugin = this.registry.available().find((p) => p.id === cut.sourceId);
    if (!plugin) {
      this.logger.warn({ username: cut.username, source: cut.sourceId }, 'cannot cut: plugin unavailable; will retry');
      return;
    }
    try {
      await plugin.instance.disconnect(cut.connection ? { sessionKey: cut.connection.pluginKey } : { username: cut.username });
      this.registry.noteOutcome(plugin.id, null);
    } catch (err) {
      this.registry.noteOutcome(plugin.id, err);
      this.logger.warn({ err, username: cut.username, source: cut.sourceId }, 'disconnect failed; will retry after the next poll');
    }
  }
}
