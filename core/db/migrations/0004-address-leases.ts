import { DataTypes, type QueryInterface } from 'sequelize';

/**
 * `address_leases`: client addresses handed out from a protocol's IPv4 pool (WireGuard peers
 * get a fixed address). One row per (pool, address) ever used, kept after release so a freed
 * address is not handed to the next user at once (a peer that still has the old config would
 * receive their traffic):
 * - UNIQUE(pool, address): two concurrent leases can never get the same address; the loser
 *   retries with the next one.
 * - UNIQUE(pool, user_id): one live lease per user and pool (released rows have user_id NULL,
 *   which both dialects let repeat).
 * - `host_index` (offset from the network address) orders the pool without 32-bit overflow.
 */
export async function up({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.sequelize.transaction(async (transaction) => {
    await qi.createTable(
      'address_leases',
      {
        id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
        /** The pool's CIDR as configured, e.g. `10.66.0.0/16`. */
        pool: { type: DataTypes.STRING(18), allowNull: false },
        address: { type: DataTypes.STRING(15), allowNull: false },
        host_index: { type: DataTypes.INTEGER, allowNull: false },
        /** NULL once released (or when the user was deleted without a release). */
        user_id: { type: DataTypes.INTEGER, allowNull: true, references: { model: 'users', key: 'id' }, onDelete: 'SET NULL' },
        leased_at: { type: DataTypes.DATE, allowNull: false },
        released_at: { type: DataTypes.DATE, allowNull: true },
      },
      { transaction },
    );
    await qi.addIndex('address_leases', ['pool', 'address'], { unique: true, name: 'address_leases_pool_address', transaction });
    await qi.addIndex('address_leases', ['pool', 'user_id'], { unique: true, name: 'address_leases_pool_user', transaction });
    await qi.addIndex('address_leases', ['pool', 'host_index'], { name: 'address_leases_pool_index', transaction });
  });
}

export async function down({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.dropTable('address_leases');
}
