import { QueryTypes, type ModelStatic, type Model, type Transaction } from 'sequelize';

/**
 * Multi-row INSERT with every value a bound parameter.
 *
 * Why not `Model.bulkCreate`: Sequelize 6 builds bulk INSERTs as SQL text with the values
 * escaped and inlined. Escaping held against injection, but a NUL in a value made SQLite
 * refuse the statement ("unrecognized token") and the whole statement — generated VPN
 * passwords and WireGuard private keys included — ended up in error logs. Here the SQL text
 * holds only identifiers and `$n` placeholders; values are converted by the model's own
 * attribute types (dates, booleans, JSON) exactly as `Model.create` binds them.
 *
 * Timestamps (`created_at`/`updated_at`) are filled like bulkCreate does when the model has them.
 * Rows go in chunks so no statement exceeds the drivers' parameter limits.
 */
export async function insertBound<M extends Model>(
  model: ModelStatic<M>,
  rows: readonly Record<string, unknown>[],
  options: { transaction: Transaction; now?: Date },
): Promise<void> {
  if (rows.length === 0) return;
  const sequelize = model.sequelize!;
  const qi = sequelize.getQueryInterface();
  const qg = (qi as unknown as { queryGenerator: QueryGenerator }).queryGenerator;
  const attributes = model.getAttributes() as Record<string, { field?: string }>;
  const timestamps = (model.options as { timestamps?: boolean }).timestamps !== false;
  const createdAt = (model as unknown as { _timestampAttributes?: { createdAt?: string; updatedAt?: string } })._timestampAttributes ?? {};
  const now = options.now ?? new Date();
  const filled = rows.map((row) => {
    const out: Record<string, unknown> = { ...row };
    if (timestamps && createdAt.createdAt && out[createdAt.createdAt] === undefined) out[createdAt.createdAt] = now;
    if (timestamps && createdAt.updatedAt && out[createdAt.updatedAt] === undefined) out[createdAt.updatedAt] = now;
    return out;
  });
  const columns = Object.keys(filled[0]!);
  for (const row of filled) {
    if (Object.keys(row).length !== columns.length || columns.some((c) => !(c in row))) throw new Error('insertBound: every row must have the same columns');
  }
  const table = qg.quoteTable(model.getTableName());
  const columnList = columns.map((c) => qg.quoteIdentifier(attributes[c]?.field ?? c)).join(', ');
  // 999 was SQLite's historic limit on parameters per statement; stay under it whatever the build.
  const perChunk = Math.max(1, Math.floor(900 / columns.length));
  for (let i = 0; i < filled.length; i += perChunk) {
    const bind: unknown[] = [];
    const bindParam = qg.bindParam(bind);
    const tuples = filled.slice(i, i + perChunk).map(
      (row) => `(${columns.map((c) => (row[c] === undefined || row[c] === null ? bindParam(null) : qg.format(row[c], attributes[c], { context: 'INSERT' }, bindParam))).join(', ')})`,
    );
    await sequelize.query(`INSERT INTO ${table} (${columnList}) VALUES ${tuples.join(', ')}`, { bind, transaction: options.transaction, type: QueryTypes.INSERT });
  }
}

interface QueryGenerator {
  quoteTable(table: unknown): string;
  quoteIdentifier(name: string): string;
  bindParam(bind: unknown[]): (value: unknown) => string;
  format(value: unknown, field: unknown, options: { context: string }, bindParam: (value: unknown) => string): string;
}
