import type { Sequelize, Transaction } from 'sequelize';
import type { JournalShardWrite } from './journal';

/** Bytes to add to one user's counters (rx = upload, tx = download). */
export interface UserUsageDelta {
  userId: number;
  rx: number;
  tx: number;
}

/** Bytes to add to one user's history row for (server, protocol, day). */
export interface DailyUsageDelta {
  userId: number;
  serverId: string;
  protocol: string;
  rx: number;
  tx: number;
}

export interface CounterDelta {
  id: number;
  bytes: number;
}

/** Everything one tick persists, applied in one transaction. */
export interface TickWrite {
  /** `YYYY-MM-DD` (UTC) the day's history rows belong to. */
  day: string;
  nowMs: number;
  users: UserUsageDelta[];
  daily: DailyUsageDelta[];
  resellers: CounterDelta[];
  nodes: CounterDelta[];
  /** Journal shards rewritten by this tick (see AccountingJournal). */
  journal: JournalShardWrite[];
  /** `accounting_ended` rows counted by this tick. */
  consumedEndedIds: number[];
}

export const emptyTickWrite = (day: string, nowMs: number): TickWrite => ({
  day,
  nowMs,
  users: [],
  daily: [],
  resellers: [],
  nodes: [],
  journal: [],
  consumedEndedIds: [],
});

export const isEmptyWrite = (w: TickWrite): boolean =>
  !w.users.length && !w.daily.length && !w.resellers.length && !w.nodes.length && !w.journal.length && !w.consumedEndedIds.length;

/** Rows per statement: large enough to amortise parsing, small enough to keep SQL text modest. */
const CHUNK = 5000;

type Rows = Array<Record<string, unknown>>;
type Exec = (sql: string, params?: unknown[], wantRows?: boolean) => Promise<Rows>;

/**
 * Persists a tick with a handful of set-based statements — `UPDATE … FROM (VALUES …)` keyed by
 * integer ids, `INSERT … ON CONFLICT` for rows not seen yet (and for the narrow `user_usage`
 * counters, which a user only has once it has used bytes) — never a statement per user.
 * Numbers are checked to be safe integers (`int`, which throws otherwise) and inlined — they
 * are computed counters and row ids, never client text, and inlining them keeps 100 kB
 * statements cheap to prepare; every string (server ids, protocols, days, the journal's JSON)
 * goes in as a bound parameter.
 *
 * It remembers the ids of today's history rows so later ticks update them by id; ids learned
 * inside a transaction only count once `commit()` of the returned handle is called after the
 * transaction committed.
 */
export class BatchedUsageWriter {
  /** dailyKey(user, server, protocol) → usage_daily.id, for `dailyIdsDay` only. */
  private dailyIds = new Map<number, number>();
  private dailyIdsDay = '';
  /** `serverId\0protocol` → small integer, so history keys are numbers (fast map keys). */
  private readonly sourceIndex = new Map<string, number>();

  constructor(private readonly sequelize: Sequelize) {}

  /** Forget cached row ids (after a failed commit, or when rows may have been deleted). */
  reset(): void {
    this.dailyIds.clear();
  }

  async write(input: TickWrite, transaction: Transaction): Promise<{ commit(): void }> {
    const w = normalize(input);
    const exec = this.executor(transaction);
    const pg = this.sequelize.getDialect() === 'postgres';

    for (const part of chunks(w.users)) {
      let values = '';
      for (const u of part) values += `${values ? ',' : ''}(${int(u.userId)},${int(u.rx)},${int(u.tx)})`;
      await exec(
        `INSERT INTO user_usage (user_id, upload_bytes, download_bytes) VALUES ${values} ` +
          'ON CONFLICT (user_id) DO UPDATE SET upload_bytes = user_usage.upload_bytes + excluded.upload_bytes, download_bytes = user_usage.download_bytes + excluded.download_bytes',
      );
    }

    if (this.dailyIdsDay !== w.day) {
      this.dailyIds = new Map();
      this.dailyIdsDay = w.day;
    }
    // One row per (user, server, protocol): merged here if the caller sent more.
    const daily = new Map<number, DailyUsageDelta>();
    for (const d of w.daily) {
      if (d.rx === 0 && d.tx === 0) continue;
      const k = this.dailyKey(d.userId, d.serverId, d.protocol);
      const prev = daily.get(k);
      daily.set(k, prev ? { ...prev, rx: prev.rx + d.rx, tx: prev.tx + d.tx } : d);
    }
    const known: Array<[id: number, delta: DailyUsageDelta]> = [];
    const fresh: DailyUsageDelta[] = [];
    let ordered = true;
    for (const [k, d] of daily) {
      const id = this.dailyIds.get(k);
      if (id === undefined) {
        fresh.push(d);
      } else {
        if (known.length && known[known.length - 1]![0] > id) ordered = false;
        known.push([id, d]);
      }
    }
    if (!ordered) known.sort((a, b) => a[0] - b[0]); // b-tree order: each page is visited once
    for (const part of chunks(known)) {
      let values = '';
      for (const [id, d] of part) values += `${values ? ',' : ''}(${int(id)},${int(d.rx)},${int(d.tx)})`;
      await exec('UPDATE usage_daily SET rx = usage_daily.rx + d.column2, tx = usage_daily.tx + d.column3 ' + `FROM (VALUES ${values}) AS d WHERE usage_daily.id = d.column1`);
    }
    const learned: Array<[number, number]> = [];
    for (const part of chunks(fresh)) {
      // Strings repeat (a few servers × protocols): one parameter per distinct string.
      const params: unknown[] = [];
      const slots = new Map<string, string>();
      const str = (v: string) => {
        let slot = slots.get(v);
        if (slot === undefined) {
          params.push(v);
          slot = pg ? `$${params.length}::text` : `?${params.length}`;
          slots.set(v, slot);
        }
        return slot;
      };
      const day = str(w.day);
      const values = part.map((d) => `(${int(d.userId)},${str(d.serverId)},${str(d.protocol)},${day},${int(d.rx)},${int(d.tx)})`).join(',');
      const rows = await exec(
        `INSERT INTO usage_daily (user_id, server_id, protocol, day, rx, tx) VALUES ${values} ` +
          'ON CONFLICT (user_id, server_id, protocol, day) DO UPDATE SET rx = usage_daily.rx + excluded.rx, tx = usage_daily.tx + excluded.tx ' +
          'RETURNING id, user_id, server_id, protocol',
        params,
        true,
      );
      for (const r of rows) learned.push([this.dailyKey(Number(r.user_id), String(r.server_id), String(r.protocol)), Number(r.id)]);
    }

    await this.addCounters('sub_admins', 'used_traffic_bytes', w.resellers, exec);
    await this.addCounters('nodes', 'total_traffic_bytes', w.nodes, exec);

    for (const part of chunks(w.journal, 200)) {
      const params: unknown[] = [];
      const values = part
        .map((j) => {
          params.push(j.sourceId, j.shard, j.part, j.data, w.nowMs);
          const n = params.length;
          return pg ? `($${n - 4},$${n - 3}::integer,$${n - 2},$${n - 1},$${n}::bigint)` : '(?,?,?,?,?)';
        })
        .join(',');
      await exec(
        `INSERT INTO accounting_journal (source_id, shard, part, data, updated_at_ms) VALUES ${values} ` +
          'ON CONFLICT (source_id, shard, part) DO UPDATE SET data = excluded.data, updated_at_ms = excluded.updated_at_ms',
        params,
      );
    }

    for (const part of chunks(w.consumedEndedIds)) {
      await exec(`DELETE FROM accounting_ended WHERE id IN (${part.map(int).join(',')})`);
    }

    const day0 = w.day;
    return {
      commit: () => {
        if (this.dailyIdsDay !== day0) return;
        for (const [k, id] of learned) this.dailyIds.set(k, id);
      },
    };
  }

  private dailyKey(userId: number, serverId: string, protocol: string): number {
    const name = `${serverId}\u0000${protocol}`;
    let index = this.sourceIndex.get(name);
    if (index === undefined) this.sourceIndex.set(name, (index = this.sourceIndex.size));
    return userId * 1_048_576 + index;
  }

  private async addCounters(table: 'sub_admins' | 'nodes', column: string, deltas: CounterDelta[], exec: Exec): Promise<void> {
    for (const part of chunks(deltas.filter((d) => d.bytes > 0))) {
      const values = part.map((d) => `(${int(d.id)},${int(d.bytes)})`).join(',');
      await exec(`UPDATE ${table} SET ${column} = ${table}.${column} + d.column2 FROM (VALUES ${values}) AS d WHERE ${table}.id = d.column1`);
    }
  }

  /**
   * Statements go straight to the transaction's driver connection: Sequelize's query path
   * lower-cases and regex-scans every SQL text, which costs more than SQLite's own work on
   * statements this size.
   */
  private executor(transaction: Transaction): Exec {
    const conn = (transaction as unknown as { connection?: unknown }).connection as
      | {
          all?: (sql: string, params: unknown[], cb: (err: Error | null, rows: Rows) => void) => void;
          exec?: (sql: string, cb: (err: Error | null) => void) => void;
          query?: (sql: string, params?: unknown[]) => Promise<{ rows: Rows }>;
        }
      | undefined;
    const dialect = this.sequelize.getDialect();
    if (dialect === 'sqlite' && typeof conn?.all === 'function' && typeof conn.exec === 'function') {
      const all = conn.all.bind(conn);
      const run = conn.exec.bind(conn);
      // exec() skips the prepared-statement object, which costs real time for 100 kB statements.
      return (sql, params = [], wantRows = false) =>
        new Promise((resolve, reject) => {
          if (!wantRows && params.length === 0) run(sql, (err) => (err ? reject(err) : resolve([])));
          else all(sql, params, (err, rows) => (err ? reject(err) : resolve(rows ?? [])));
        });
    }
    if (dialect === 'postgres' && typeof conn?.query === 'function') {
      const query = conn.query.bind(conn);
      return async (sql, params) => (await query(sql, params)).rows ?? [];
    }
    return async (sql, params) => {
      const [rows] = await this.sequelize.query(sql, { transaction, bind: params, raw: true });
      return Array.isArray(rows) ? (rows as Rows) : [];
    };
  }
}

/**
 * One row per key (PostgreSQL refuses an upsert that touches a row twice, and UPDATE … FROM
 * with two matching rows applies only one of them), zero deltas dropped, users in id order.
 * The engine already sends one row per key; merging only happens when it did not.
 */
function normalize(w: TickWrite): TickWrite {
  let users = w.users;
  const ids = new Set<number>();
  let duplicate = false;
  let sorted = true;
  let prevId = -Infinity;
  for (const u of users) {
    if (u.userId <= prevId) {
      sorted = false;
      if (ids.has(u.userId)) duplicate = true;
    }
    ids.add(u.userId);
    prevId = u.userId;
  }
  if (duplicate) {
    const m = new Map<number, UserUsageDelta>();
    for (const u of users) {
      const prev = m.get(u.userId);
      if (prev) {
        prev.rx += u.rx;
        prev.tx += u.tx;
      } else {
        m.set(u.userId, { ...u });
      }
    }
    users = [...m.values()];
  }
  if (users.some((u) => u.rx === 0 && u.tx === 0)) users = users.filter((u) => u.rx > 0 || u.tx > 0);
  if (!sorted) users = users.slice().sort((a, b) => a.userId - b.userId);

  const sumCounters = (rows: CounterDelta[]) => {
    const m = new Map<number, number>();
    for (const r of rows) m.set(r.id, (m.get(r.id) ?? 0) + r.bytes);
    return [...m].map(([id, bytes]) => ({ id, bytes }));
  };
  const journal = new Map<string, JournalShardWrite>();
  for (const j of w.journal) journal.set(`${j.sourceId}\u0000${j.shard}\u0000${j.part}`, j);
  return {
    ...w,
    users,
    resellers: sumCounters(w.resellers),
    nodes: sumCounters(w.nodes),
    journal: [...journal.values()],
    consumedEndedIds: [...new Set(w.consumedEndedIds)],
  };
}

function int(v: number): string {
  if (!Number.isSafeInteger(v)) throw new Error(`accounting: ${String(v)} is not a safe integer`);
  return String(v);
}

function chunks<T>(items: T[], size = CHUNK): T[][] {
  if (items.length <= size) return items.length ? [items] : [];
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** `YYYY-MM-DD` of a moment, in UTC (the history's day boundary). */
export const utcDay = (d: Date): string => d.toISOString().slice(0, 10);
