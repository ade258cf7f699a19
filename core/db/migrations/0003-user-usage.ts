import { DataTypes, type QueryInterface } from 'sequelize';

const big = () => ({ type: DataTypes.BIGINT, allowNull: false, defaultValue: 0 });

/**
 * Moves the users' usage counters out of the wide `users` rows into the narrow `user_usage`
 * (one row per user that has used bytes; none means zero). An accounting tick adds to tens of
 * thousands of counters, and SQLite rewrites a whole row to change one column: on `users` that
 * dirtied thousands of pages per tick, on `user_usage` it is a few hundred.
 *
 * The columns are dropped with `ALTER TABLE … DROP COLUMN` on both dialects (SQLite ≥ 3.35),
 * not with a table rebuild: rebuilding `users` would drop it, which with foreign keys on
 * deletes every row that references it (tokens, history) and loses its indexes.
 */
export async function up({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.sequelize.transaction(async (transaction) => {
    await qi.createTable(
      'user_usage',
      {
        user_id: { type: DataTypes.INTEGER, primaryKey: true, allowNull: false, references: { model: 'users', key: 'id' }, onDelete: 'CASCADE' },
        upload_bytes: big(),
        download_bytes: big(),
      },
      { transaction },
    );
    await qi.sequelize.query(
      'INSERT INTO user_usage (user_id, upload_bytes, download_bytes) SELECT id, upload_bytes, download_bytes FROM users WHERE upload_bytes <> 0 OR download_bytes <> 0',
      { transaction },
    );
    await qi.sequelize.query('ALTER TABLE users DROP COLUMN upload_bytes', { transaction });
    await qi.sequelize.query('ALTER TABLE users DROP COLUMN download_bytes', { transaction });
  });
}

export async function down({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.sequelize.transaction(async (transaction) => {
    await qi.addColumn('users', 'upload_bytes', big(), { transaction });
    await qi.addColumn('users', 'download_bytes', big(), { transaction });
    await qi.sequelize.query(
      'UPDATE users SET upload_bytes = uu.upload_bytes, download_bytes = uu.download_bytes FROM user_usage uu WHERE uu.user_id = users.id',
      { transaction },
    );
    await qi.dropTable('user_usage', { transaction });
  });
}
