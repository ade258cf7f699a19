import type { Transaction } from 'sequelize';
import { AccountingEnded, AccountingJournalShard } from '../db/accounting-models';

/** Connections of one source are spread over this many journal rows. */
export const JOURNAL_SHARDS = 16;

/** What the journal remembers of one connection. */
export interface JournalEntry {
  /** The tracker key (`<source>:<session key>` or `<source>/<scope>:<id>`). */
  key: string;
  /** The tracker scope it was polled in. */
  scope: string;
  user: string;
  /** Counters up to which its bytes are in usage. */
  rx: number;
  tx: number;
  connectedAt: number;
  /** A tombstone: it vanished or its disconnect was counted; kept to recognise late events and stale rows. */
  ended: boolean;
  /** Tombstones: domain-clock ms when it stopped being live (it expires by it). Live: unused. */
  seenAtMs: number;
}

/** One rewritten journal row, ready for the batched writer. */
export interface JournalShardWrite {
  sourceId: string;
  shard: number;
  part: 'members' | 'counters';
  data: string;
}

/** A disconnect event as recorded, waiting for a tick to count it. */
export interface PendingEnded {
  id: number;
  /** The tracker key. */
  key: string;
  protocol: string;
  serverId: string;
  username: string;
  connectedAt: number;
  rx: number;
  tx: number;
  reason: string;
  receivedAtMs: number;
}

/**
 * A member is stored compactly: the key without its `<source>` prefix (which the row names),
 * the scope as its suffix after `<source>/` ('' for the source itself), and the time only for
 * tombstones. Counters are stored apart, in the members' order, as `rx,tx,rx,tx,…`.
 */
type StoredMember = [keySuffix: string, scopeSuffix: string, user: string, connectedAt: number, endedAtMs: number];

class Shard {
  readonly entries = new Map<string, JournalEntry>();
  membersDirty = false;
  countersDirty = false;
}

const sameMember = (a: JournalEntry, b: JournalEntry) =>
  a.scope === b.scope && a.user === b.user && a.connectedAt === b.connectedAt && a.ended === b.ended && (!a.ended || a.seenAtMs === b.seenAtMs);

/** FNV-1a: a stable, cheap spread of keys over shards. */
export function shardOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % JOURNAL_SHARDS;
}

/**
 * The durable side of accounting. The journal holds, for every connection, the counters its
 * usage has been counted up to. It is changed in memory while a tick folds its polls and is
 * written (only the shards that changed) by the same transaction as the usage those counters
 * produced, so after a crash or a failed commit `load()` returns exactly the state matching
 * the committed usage. Disconnect events are stored the moment a plugin reports them and
 * deleted by the transaction that counts them.
 */
export class AccountingJournal {
  private readonly sources = new Map<string, Shard[]>();

  /** Replaces the in-memory journal with the committed one and returns every entry with its source. */
  async load(transaction?: Transaction): Promise<Array<JournalEntry & { sourceId: string }>> {
    this.sources.clear();
    const rows = await AccountingJournalShard.findAll({ raw: true, transaction });
    const parts = new Map<string, { sourceId: string; shard: number; members?: string; counters?: string }>();
    for (const row of rows) {
      const id = `${row.source_id}\u0000${row.shard}`;
      const p = parts.get(id) ?? { sourceId: row.source_id, shard: row.shard };
      if (row.part === 'members') p.members = row.data;
      else p.counters = row.data;
      parts.set(id, p);
    }
    const out: Array<JournalEntry & { sourceId: string }> = [];
    for (const { sourceId, shard, members, counters } of parts.values()) {
      let stored: StoredMember[];
      try {
        stored = JSON.parse(members ?? '[]') as StoredMember[];
      } catch {
        throw new Error(`accounting journal ${sourceId}#${shard}: members are not valid JSON`);
      }
      const numbers = counters ? counters.split(',').map(Number) : [];
      if (numbers.length !== stored.length * 2 || numbers.some((n) => !Number.isSafeInteger(n) || n < 0)) {
        throw new Error(`accounting journal ${sourceId}#${shard}: counters do not match its members`);
      }
      const target = this.shard(sourceId, shard);
      stored.forEach(([keySuffix, scopeSuffix, user, connectedAt, endedAtMs], i) => {
        const entry: JournalEntry = {
          key: sourceId + keySuffix,
          scope: scopeSuffix ? `${sourceId}/${scopeSuffix}` : sourceId,
          user,
          rx: numbers[2 * i]!,
          tx: numbers[2 * i + 1]!,
          connectedAt,
          ended: endedAtMs > 0,
          seenAtMs: endedAtMs,
        };
        target.entries.set(entry.key, entry);
        out.push({ ...entry, sourceId });
      });
    }
    return out;
  }

  get(sourceId: string, key: string): JournalEntry | undefined {
    return this.sources.get(sourceId)?.[shardOf(key)]?.entries.get(key);
  }

  set(sourceId: string, entry: JournalEntry): void {
    const shard = this.shard(sourceId, shardOf(entry.key));
    const prev = shard.entries.get(entry.key);
    shard.entries.set(entry.key, entry);
    if (!prev || !sameMember(prev, entry)) shard.membersDirty = true;
    if (!prev || prev.rx !== entry.rx || prev.tx !== entry.tx) shard.countersDirty = true;
  }

  /**
   * A live connection's counters moved: updated in place when nothing else about it changed
   * (the common case on every tick), so only the shard's counters row is rewritten.
   */
  record(sourceId: string, key: string, scope: string, user: string, rx: number, tx: number, connectedAt: number, nowMs: number): void {
    const shard = this.shard(sourceId, shardOf(key));
    const prev = shard.entries.get(key);
    if (prev && !prev.ended && prev.scope === scope && prev.user === user && prev.connectedAt === connectedAt) {
      if (prev.rx !== rx || prev.tx !== tx) {
        prev.rx = rx;
        prev.tx = tx;
        shard.countersDirty = true;
      }
      return;
    }
    this.set(sourceId, { key, scope, user, rx, tx, connectedAt, ended: false, seenAtMs: nowMs });
  }

  delete(sourceId: string, key: string): void {
    const shard = this.sources.get(sourceId)?.[shardOf(key)];
    if (shard?.entries.delete(key)) {
      shard.membersDirty = true;
      shard.countersDirty = true;
    }
  }

  /** Every entry of one source (live and tombstones). */
  *entriesOf(sourceId: string): IterableIterator<JournalEntry> {
    for (const shard of this.sources.get(sourceId) ?? []) if (shard) yield* [...shard.entries.values()];
  }

  /** Number of entries (live and tombstones). */
  get size(): number {
    let n = 0;
    for (const shards of this.sources.values()) for (const s of shards) n += s?.entries.size ?? 0;
    return n;
  }

  /**
   * Serialises what changed since the last call, for the tick's transaction: the counters of
   * every shard whose counters moved, and the members of shards whose connections changed.
   */
  takeDirty(): JournalShardWrite[] {
    const out: JournalShardWrite[] = [];
    for (const [sourceId, shards] of this.sources) {
      const prefix = sourceId.length;
      shards.forEach((shard, index) => {
        if (!shard || (!shard.membersDirty && !shard.countersDirty)) return;
        if (shard.membersDirty) {
          const members: StoredMember[] = [];
          for (const e of shard.entries.values()) {
            members.push([e.key.slice(prefix), e.scope === sourceId ? '' : e.scope.slice(prefix + 1), e.user, e.connectedAt, e.ended ? Math.max(1, e.seenAtMs) : 0]);
          }
          out.push({ sourceId, shard: index, part: 'members', data: JSON.stringify(members) });
        }
        const numbers: number[] = [];
        for (const e of shard.entries.values()) numbers.push(e.rx, e.tx);
        out.push({ sourceId, shard: index, part: 'counters', data: numbers.join(',') });
        shard.membersDirty = false;
        shard.countersDirty = false;
      });
    }
    return out;
  }
  async recordEnded(e: Omit<PendingEnded, 'id'>): Promise<number> {
    const row = await AccountingEnded.create({
      session_key: e.key,
      protocol: e.protocol,
      server_id: e.serverId,
      username: e.username,
      connected_at: e.connectedAt,
      rx: e.rx,
      tx: e.tx,
      reason: e.reason.slice(0, 255),
      received_at_ms: e.receivedAtMs,
    });
    return row.id;
  }

  async pendingEnded(): Promise<PendingEnded[]> {
    const rows = await AccountingEnded.findAll({ raw: true, order: [['id', 'ASC']] });
    return rows.map((r) => ({
      id: r.id,
      key: r.session_key,
      protocol: r.protocol,
      serverId: r.server_id,
      username: r.username,
      connectedAt: Number(r.connected_at),
      rx: Number(r.rx),
      tx: Number(r.tx),
      reason: r.reason,
      receivedAtMs: Number(r.received_at_ms),
    }));
  }

  private shard(sourceId: string, index: number): Shard {
    let shards = this.sources.get(sourceId);
    if (!shards) this.sources.set(sourceId, (shards = new Array<Shard>(JOURNAL_SHARDS)));
    return (shards[index] ??= new Shard());
  }
}
