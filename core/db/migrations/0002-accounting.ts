import { DataTypes, type QueryInterface } from 'sequelize';

const id = { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true };
const big = (defaultValue = 0) => ({ type: DataTypes.BIGINT, allowNull: false, defaultValue });

/**
 * Accounting storage:
 * - `usage_daily`: per user, server, protocol and UTC day, the bytes counted that day (the
 *   history behind /stats/traffic). rx = the user's upload, tx = the user's download.
 * - `accounting_journal`: the journal. For every connection, the counters up to which its
 *   bytes have been added to usage, written in the same transaction as that usage; after a
 *   crash or restart the tracker starts from here, so nothing is lost or counted twice. A tick
 *   changes nearly every live connection's counters, and rewriting a few text rows is several
 *   times cheaper than updating tens of thousands of rows, so each source (one protocol on one
 *   server) keeps its connections in a fixed number of shards, each stored as two rows: the
 *   `members` (keys, users, start times; rewritten only when connections come or go) and the
 *   `counters` in the same order (rewritten every tick). Ended/vanished connections stay in it
 *   as tombstones for a while so a late disconnect event or a lagging status listing does not
 *   count a session again.
 * - `accounting_ended`: disconnect events (final counters) waiting for the next tick; written
 *   as soon as a plugin reports them, deleted in the tick's transaction that counts them.
 */
export async function up({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.createTable('usage_daily', {
    id,
    user_id: { type: DataTypes.INTEGER, allowNull: false, references: { model: 'users', key: 'id' }, onDelete: 'CASCADE' },
    server_id: { type: DataTypes.STRING(32), allowNull: false },
    protocol: { type: DataTypes.STRING(16), allowNull: false },
    /** `YYYY-MM-DD`, UTC: a string compares the same way on SQLite and PostgreSQL. */
    day: { type: DataTypes.STRING(10), allowNull: false },
    rx: big(),
    tx: big(),
  });
  await qi.addIndex('usage_daily', ['user_id', 'server_id', 'protocol', 'day'], { unique: true, name: 'usage_daily_key' });
  await qi.addIndex('usage_daily', ['day'], { name: 'usage_daily_day' });

  await qi.createTable('accounting_journal', {
    id,
    /** `protocol@server`, e.g. `openvpn@main`, `wireguard@node_3`. */
    source_id: { type: DataTypes.STRING(64), allowNull: false },
    shard: { type: DataTypes.INTEGER, allowNull: false },
    /**
     * `members`: JSON array of [key suffix, scope suffix, user, connectedAt, ended at (ms, 0 = live)];
     * `counters`: `rx,tx,rx,tx,…` in the members' order.
     */
    part: { type: DataTypes.STRING(8), allowNull: false },
    data: { type: DataTypes.TEXT, allowNull: false, defaultValue: '' },
    updated_at_ms: big(),
  });
  await qi.addIndex('accounting_journal', ['source_id', 'shard', 'part'], { unique: true, name: 'accounting_journal_key' });
  if (qi.sequelize.getDialect() === 'postgres') {
    // Rewritten every tick: skip TOAST compression, which would cost more than it saves.
    await qi.sequelize.query('ALTER TABLE accounting_journal ALTER COLUMN data SET STORAGE EXTERNAL');
  }

  await qi.createTable('accounting_ended', {
    id,
    session_key: { type: DataTypes.STRING(512), allowNull: false },
    protocol: { type: DataTypes.STRING(16), allowNull: false },
    server_id: { type: DataTypes.STRING(32), allowNull: false },
    username: { type: DataTypes.STRING(255), allowNull: false },
    connected_at: big(),
    rx: big(),
    tx: big(),
    reason: { type: DataTypes.STRING(255), allowNull: false, defaultValue: '' },
    received_at_ms: big(),
  });
}

export async function down({ context: qi }: { context: QueryInterface }): Promise<void> {
  for (const t of ['accounting_ended', 'accounting_journal', 'usage_daily']) await qi.dropTable(t);
}
