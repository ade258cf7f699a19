import { Op, UniqueConstraintError, type Transaction } from 'sequelize';
import type { Clock } from '../clock';
import { AddressLease, type Database } from '../db';
import { conflict } from '../errors';
import { intToIpv4, ipv4ToInt, parseIpv4Subnet } from '../plugin/kit/ipv4';

export interface AddressPoolOptions {
  clock: Clock;
  /**
   * A released address is handed out again only this long after its release (default 24 h),
   * and only once the pool has no never-used address left: a device still holding the old
   * user's config would otherwise receive the new user's traffic.
   */
  quarantineMs?: number;
  /** Attempts when concurrent leases collide on the unique constraint. Default 100. */
  maxAttempts?: number;
}

const DAY_MS = 86_400_000;

/**
 * Client addresses from a protocol's IPv4 pool, one per user and pool, kept in
 * `address_leases` whose unique constraints make two users holding one address impossible,
 * even under concurrent leases from several requests (a collision retries with the next
 * address). The network address, the first host (the server's side of the tunnel) and the
 * broadcast address are never leased.
 *
 * Order of choice: the user's existing lease; else the lowest never-used address; else the
 * address released longest ago, if that was at least `quarantineMs` ago; else the pool is
 * full (`conflict`).
 *
 * @example
 * const pool = new AddressPoolService(db, { clock });
 * const address = await pool.lease('10.66.0.0/16', user.id, transaction); // '10.66.0.2'
 * await pool.release(user.id);                                            // on delete or disable
 */
export class AddressPoolService {
  private readonly quarantineMs: number;
  private readonly maxAttempts: number;

  constructor(
    private readonly db: Database,
    private readonly options: AddressPoolOptions,
  ) {
    this.quarantineMs = options.quarantineMs ?? DAY_MS;
    this.maxAttempts = options.maxAttempts ?? 100;
  }

  /**
   * The user's address in `pool` (an IPv4 CIDR, /16../29): the one already leased, or a new
   * one. Inside `transaction` when given (each attempt in a savepoint, so a collision does not
   * abort the caller's transaction on PostgreSQL).
   */
  async lease(pool: string, userId: number, transaction?: Transaction): Promise<string> {
    const subnet = parseIpv4Subnet(pool, 'address pool');
    const size = 2 ** (32 - subnet.prefix);
    const base = ipv4ToInt(subnet.network);
    // 0 = network, 1 = server, size - 1 = broadcast.
    const first = 2;
    const last = size - 2;
    for (let attempt = 1; ; attempt++) {
      try {
        // Without a caller's transaction each attempt is one of its own: on SQLite writers take
        // turns (core/db's write gate), so reading the highest lease and inserting the next one
        // cannot interleave with another lease; PostgreSQL's rare collision is retried below.
        if (!transaction) return await this.db.transaction((t) => this.attempt(pool, userId, base, first, last, t));
        return await this.attempt(pool, userId, base, first, last, transaction);
      } catch (e) {
        // Someone else took the address (or leased for this user) between our read and write.
        if (!(e instanceof UniqueConstraintError) || attempt >= this.maxAttempts) throw e;
        // A short random pause so a crowd of concurrent leases does not collide in lockstep.
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(attempt, 10)));
      }
    }
  }

  /** Frees every address the user holds (any pool); they stay in quarantine before reuse. Returns how many. */
  async release(userId: number, transaction?: Transaction): Promise<number> {
    const [n] = await AddressLease.update(
      { user_id: null, released_at: this.options.clock.now() },
      { where: { user_id: userId }, transaction },
    );
    return n;
  }

  /** The user's current address in `pool`, if any. */
  async addressOf(pool: string, userId: number, transaction?: Transaction): Promise<string | null> {
    const row = await AddressLease.findOne({ where: { pool, user_id: userId }, transaction, raw: true });
    return row?.address ?? null;
  }

  private async attempt(pool: string, userId: number, base: number, first: number, last: number, transaction: Transaction | undefined): Promise<string> {
    // PostgreSQL aborts the whole transaction on a failed statement, so each attempt inside a
    // caller's transaction runs in a savepoint; SQLite only undoes the failed statement.
    const run = (fn: (t: Transaction | undefined) => Promise<string>) =>
      transaction && this.db.dialect === 'postgres' ? this.db.sequelize.transaction({ transaction }, (savepoint) => fn(savepoint)) : fn(transaction);
    return run(async (t) => {
      const existing = await AddressLease.findOne({ where: { pool, user_id: userId }, transaction: t, raw: true });
      if (existing) return existing.address;
      const now = this.options.clock.now();
      // Rows are never deleted and never-used addresses are taken lowest first, so every
      // index above the highest row is unused.
      const highest = (await AddressLease.max('host_index', { where: { pool }, transaction: t })) as number | null;
      const next = highest === null || highest < first ? first : highest + 1;
      if (next <= last) {
        const address = intToIpv4(base + next);
        await AddressLease.create({ pool, address, host_index: next, user_id: userId, leased_at: now, released_at: null }, { transaction: t });
        return address;
      }
      const cutoff = new Date(now.getTime() - this.quarantineMs);
      const candidates = await AddressLease.findAll({
        where: { pool, user_id: null, [Op.or]: [{ released_at: { [Op.lte]: cutoff } }, { released_at: null, leased_at: { [Op.lte]: cutoff } }] },
        order: [['released_at', 'ASC'], ['host_index', 'ASC']],
        limit: 1,
        transaction: t,
        raw: true,
      });
      const free = candidates[0];
      if (!free) {
        const waiting = await AddressLease.count({ where: { pool, user_id: null }, transaction: t });
        throw conflict(`address pool ${pool} is full${waiting ? ` (${waiting} released addresses are in quarantine for ${Math.round(this.quarantineMs / 3_600_000)} h)` : ''}`);
      }
      // Taken only if still free: a concurrent lease of the same row updates nothing here.
      const [n] = await AddressLease.update(
        { user_id: userId, leased_at: now, released_at: null },
        { where: { id: free.id, user_id: null }, transaction: t },
      );
      if (n !== 1) throw new UniqueConstraintError({ message: `address ${free.address} was leased concurrently` });
      return free.address;
    });
  }
}
