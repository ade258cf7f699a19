import { UniqueConstraintError, type Transaction } from 'sequelize';
import type { CoreContext } from '../context';
import { AddressLease } from '../db';
import { intToIpv4, ipv4ToInt, parseIpv4Subnet } from '../plugin/kit/ipv4';
import { protocolSpec, type ProtocolId } from '../protocols/table';
import { AddressPoolService } from './address-pool';
import type { AddressLeases } from './index';

/**
 * Users' tunnel addresses per protocol pool, on the address pool service (unique in the
 * database, freed addresses quarantined). A bulk create of 1000 users leases in one pass:
 * the never-used addresses above the highest lease are inserted in one statement; anything
 * that collides with a concurrent lease (or needs a quarantined address) goes one by one.
 * Addresses are stored as `<ip>/32`, the form the API has always shown.
 */
export class UserAddressLeases implements AddressLeases {
  private readonly pool: AddressPoolService;

  constructor(
    private readonly ctx: CoreContext,
    private readonly poolOfProtocol: (protocol: ProtocolId) => string,
  ) {
    this.pool = new AddressPoolService(ctx.db, { clock: ctx.clock });
  }

  poolOf(protocol: ProtocolId): string {
    protocolSpec(protocol);
    return this.poolOfProtocol(protocol);
  }

  async leaseMany(pool: string, userIds: readonly number[], transaction: Transaction): Promise<Map<number, string>> {
    const out = new Map<number, string>();
    const rest: number[] = [];
    if (userIds.length > 1) {
      const subnet = parseIpv4Subnet(pool, 'address pool');
      const last = 2 ** (32 - subnet.prefix) - 2;
      const highest = (await AddressLease.max('host_index', { where: { pool }, transaction })) as number | null;
      const start = highest === null || highest < 2 ? 2 : highest + 1;
      const fits = userIds.slice(0, Math.max(0, last - start + 1));
      const now = this.ctx.clock.now();
      const base = ipv4ToInt(subnet.network);
      const rows = fits.map((user_id, i) => ({ pool, address: intToIpv4(base + start + i), host_index: start + i, user_id, leased_at: now, released_at: null }));
      try {
        if (rows.length) await this.savepoint(transaction, (t) => AddressLease.bulkCreate(rows, { transaction: t }));
        for (const r of rows) out.set(r.user_id, `${r.address}/32`);
        rest.push(...userIds.slice(fits.length));
      } catch (e) {
        if (!(e instanceof UniqueConstraintError)) throw e;
        rest.push(...userIds);
      }
    } else {
      rest.push(...userIds);
    }
    for (const id of rest) out.set(id, `${await this.pool.lease(pool, id, transaction)}/32`);
    return out;
  }

  async releaseUsers(userIds: readonly number[], transaction: Transaction): Promise<void> {
    for (const id of userIds) await this.pool.release(id, transaction);
  }

  /** PostgreSQL aborts a transaction on a failed statement; a savepoint keeps the caller's alive. */
  private savepoint<T>(transaction: Transaction, fn: (t: Transaction) => Promise<T>): Promise<T> {
    return this.ctx.db.dialect === 'postgres' ? this.ctx.db.sequelize.transaction({ transaction }, fn) : fn(transaction);
  }
}
