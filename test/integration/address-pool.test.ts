import { expect } from 'chai';
import { Client } from 'pg';
import { ManualClock } from '../../core/clock';
import { AddressLease, openDatabase, type Database } from '../../core/db';
import { isDomainError } from '../../core/errors';
import { AddressPoolService } from '../../core/services/address-pool';
import { insertUserRow } from '../helpers/user-rows';

/*
 * Address pools on the real databases (SQLite always, PostgreSQL when POLYGATE_TEST_PG_URL is
 * set). Proves: leases skip the network, server and broadcast addresses; a user keeps its
 * address; released addresses are not reused while never-used ones remain, and after that only
 * once their quarantine has passed (oldest first), else the pool is full; the unique
 * constraints hold under 40 concurrent leases for different users and for one user (no
 * address twice, one lease per user), with and without a caller's transaction; a collision
 * inside a caller's transaction does not abort it (PostgreSQL); the constraint itself refuses
 * a duplicate row.
 */

const pgUrl = process.env.POLYGATE_TEST_PG_URL;
const kinds: Array<'sqlite' | 'postgres'> = ['sqlite'];
if (pgUrl) kinds.push('postgres');
else console.log('  (PostgreSQL runs skipped: POLYGATE_TEST_PG_URL is not set; .ci/run sets it)');

async function adminQuery(sql: string): Promise<void> {
  const client = new Client({ connectionString: pgUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

for (const kind of kinds) {
  describe(`address pool (${kind})`, function () {
    this.timeout(60_000);
    let db: Database;
    let dbName = '';
    const clock = new ManualClock(new Date('2026-06-01T12:00:00Z'));
    let pool: AddressPoolService;
    const users: number[] = [];

    before(async () => {
      let url = 'sqlite::memory:';
      if (kind === 'postgres') {
        dbName = `polygate_pool_${process.pid}`;
        await adminQuery(`DROP DATABASE IF EXISTS ${dbName}`);
        await adminQuery(`CREATE DATABASE ${dbName}`);
        const u = new URL(pgUrl!);
        u.pathname = `/${dbName}`;
        url = u.toString();
      }
      db = await openDatabase(url);
      for (let i = 0; i < 60; i++) users.push((await insertUserRow({ username: `user${i}` })).id);
      pool = new AddressPoolService(db, { clock });
    });

    after(async () => {
      await db?.close();
      if (dbName) await adminQuery(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    });

    beforeEach(async () => {
      await AddressLease.destroy({ where: {} });
    });

    it('skips network, server and broadcast; a user keeps its address', async () => {
      const all: string[] = [];
      for (let i = 0; i < 5; i++) all.push(await pool.lease('10.9.0.0/29', users[i]!));
      expect(all).to.deep.equal(['10.9.0.2', '10.9.0.3', '10.9.0.4', '10.9.0.5', '10.9.0.6']);
      expect(await pool.lease('10.9.0.0/29', users[2]!)).to.equal('10.9.0.4');
      expect(await pool.addressOf('10.9.0.0/29', users[2]!)).to.equal('10.9.0.4');
      const err = await pool.lease('10.9.0.0/29', users[9]!).then(() => null, (e: unknown) => e);
      expect(isDomainError(err) && err.kind).to.equal('conflict');
      expect((err as Error).message).to.match(/10\.9\.0\.0\/29 is full/);
    });

    it('does not reuse a released address while never-used ones remain, then only after the quarantine, oldest first', async () => {
      const p = '10.9.1.0/29'; // 5 usable addresses
      const a = await pool.lease(p, users[0]!); // .2
      const b = await pool.lease(p, users[1]!); // .3
      expect(await pool.release(users[0]!)).to.equal(1);
      clock.set(new Date(clock.now().getTime() + 60_000));
      await pool.release(users[1]!);
      // Never-used first.
      expect(await pool.lease(p, users[2]!)).to.equal('10.9.1.4');
      expect(await pool.lease(p, users[3]!)).to.equal('10.9.1.5');
      expect(await pool.lease(p, users[4]!)).to.equal('10.9.1.6');
      // Full of live leases and quarantined addresses.
      const full = await pool.lease(p, users[5]!).then(() => null, (e: Error) => e);
      expect(full?.message).to.match(/is full \(2 released addresses are in quarantine for 24 h\)/);
      // 24 h after the first release: that one (the oldest) comes back, the other still waits.
      clock.set(new Date(clock.now().getTime() + 24 * 3_600_000 - 60_000));
      expect(await pool.lease(p, users[5]!)).to.equal(a);
      const still = await pool.lease(p, users[6]!).then(() => null, (e: Error) => e);
      expect(still?.message).to.match(/is full/);
      clock.set(new Date(clock.now().getTime() + 60_000));
      expect(await pool.lease(p, users[6]!)).to.equal(b);
    });

    it('concurrent leases for different users never share an address', async () => {
      const p = '10.9.2.0/24';
      const got = await Promise.all(users.slice(0, 40).map((id) => pool.lease(p, id)));
      expect(new Set(got).size).to.equal(40);
      for (const a of got) expect(a).to.match(/^10\.9\.2\.(\d+)$/).and.not.equal('10.9.2.1').and.not.equal('10.9.2.0');
      expect(await AddressLease.count({ where: { pool: p } })).to.equal(40);
    });

    it('concurrent leases for one user give one address, also inside callers\' transactions', async () => {
      const p = '10.9.3.0/24';
      const plain = await Promise.all(Array.from({ length: 10 }, () => pool.lease(p, users[7]!)));
      expect(new Set(plain).size).to.equal(1);
      // SQLite has one writer (an in-memory database one connection): its transactions run one after another.
      const inTxLease = (i: number) => db.transaction((t) => pool.lease(p, users[10 + (i % 3)]!, t));
      const inTx: string[] = [];
      if (kind === 'postgres') inTx.push(...(await Promise.all(Array.from({ length: 6 }, (_, i) => inTxLease(i)))));
      else for (let i = 0; i < 6; i++) inTx.push(await inTxLease(i));
      expect(new Set(inTx).size).to.equal(3);
      expect(await AddressLease.count({ where: { pool: p } })).to.equal(4);
    });

    it('a collision inside a caller\'s transaction is retried (in a savepoint on PostgreSQL); the transaction goes on', async () => {
      const p = '10.9.4.0/24';
      // Another writer takes .2 behind the service's back (as a concurrent request would).
      await AddressLease.create({ pool: p, address: '10.9.4.2', host_index: 2, user_id: users[20]!, leased_at: clock.now(), released_at: null });
      const a = await db.transaction(async (t) => {
        const got = await pool.lease(p, users[21]!, t);
        await AddressLease.count({ where: { pool: p }, transaction: t }); // still usable
        return got;
      });
      expect(a).to.equal('10.9.4.3');
    });

    it('the database itself refuses the same address twice in a pool', async () => {
      await AddressLease.create({ pool: '10.9.5.0/24', address: '10.9.5.2', host_index: 2, user_id: users[30]!, leased_at: clock.now(), released_at: null });
      const err = await AddressLease.create({ pool: '10.9.5.0/24', address: '10.9.5.2', host_index: 2, user_id: users[31]!, leased_at: clock.now(), released_at: null }).then(
        () => null,
        (e: Error) => e,
      );
      expect(err?.name).to.equal('SequelizeUniqueConstraintError');
    });
  });
}
