import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { QueryTypes, Sequelize, Transaction } from 'sequelize';
import { WriteGate, withRetries } from './write-gate';
import { Umzug, SequelizeStorage } from 'umzug';
import * as m0001 from './migrations/0001-initial';
import * as m0002 from './migrations/0002-accounting';
import * as m0003 from './migrations/0003-user-usage';
import * as m0004 from './migrations/0004-address-leases';
import * as m0005 from './migrations/0005-support-contact';
import * as m0006 from './migrations/0006-webhooks';
import * as m0007 from './migrations/0007-node-trust';
import * as m0008 from './migrations/0008-node-key-login';
import { defineAccountingModels } from './accounting-models';
import { defineAddressModels } from './address-models';
import { defineModels } from './models';

export * from './models';
export * from './accounting-models';
export * from './address-models';
export { DatabaseBusyError, isDatabaseBusyError } from './write-gate';
export { insertBound } from './bound-insert';

/** Migrations in order; each is a module with `up`/`down` taking the QueryInterface. */
const migrations = [
  { name: '0001-initial', ...m0001 },
  { name: '0002-accounting', ...m0002 },
  { name: '0003-user-usage', ...m0003 },
  { name: '0004-address-leases', ...m0004 },
  { name: '0005-support-contact', ...m0005 },
  { name: '0006-webhooks', ...m0006 },
  { name: '0007-node-trust', ...m0007 },
  { name: '0008-node-key-login', ...m0008 },
];

export interface Database {
  sequelize: Sequelize;
  dialect: 'sqlite' | 'postgres';
  /**
   * Runs `fn` in one transaction. SQLite: serialized with every other writer of this process
   * and begun IMMEDIATE; both dialects: retried from the start after lock contention
   * (SQLITE_BUSY, PostgreSQL deadlock/serialization failure). `fn` may therefore run more than
   * once: keep side effects outside the database until it returns.
   */
  transaction<T>(fn: (t: Transaction) => Promise<T>): Promise<T>;
  /**
   * A number that changes whenever this process may have changed the database (after every
   * non-SELECT statement and every commit). Read caches remember it and are valid while it is
   * unchanged; the daemon owns its database, so no other writer is expected.
   */
  writeGeneration(): number;
  /** The gate SQLite writers queue at (PostgreSQL: unused); exposed for tests. */
  writeGate: WriteGate;
  close(): Promise<void>;
}

/** How long a writer may wait for its turn before the API answers 503 with Retry-After. */
const MAX_WRITE_WAIT_MS = Number(process.env.POLYGATE_DB_MAX_WRITE_WAIT_MS) || 20_000;

const generations = new WeakMap<Sequelize, { value: number }>();
let commitPatched = false;

/** Statement types and texts that only read (everything else counts as a write). */
const isReadOnly = (sql: unknown, type: string | undefined): boolean =>
  type === QueryTypes.SELECT || type === QueryTypes.SHOWTABLES || (typeof sql === 'string' && /^\s*SELECT\b/i.test(sql));

type QueryOptions = { type?: string; transaction?: unknown } | undefined;

/**
 * Every statement passes here (Sequelize's models and query interface all call
 * `sequelize.query`): writes outside a transaction queue at the write gate on SQLite and are
 * retried after lock contention on both dialects; every non-SELECT statement (when it
 * finishes) and every commit advances the write generation.
 */
function disciplineWrites(sequelize: Sequelize, gate: WriteGate, dialect: Database['dialect']): { value: number } {
  const generation = { value: 0 };
  generations.set(sequelize, generation);
  const query = sequelize.query.bind(sequelize) as (sql: unknown, options?: QueryOptions) => Promise<unknown>;
  (sequelize as unknown as { query: typeof query }).query = async (sql, options) => {
    const readOnly = isReadOnly(sql, options?.type);
    try {
      // Statements of a transaction are covered by the transaction's own turn and retry.
      if (readOnly || options?.transaction) return await query(sql, options);
      const once = () => query(sql, options);
      return await withRetries(dialect === 'sqlite' ? () => gate.run(once) : once);
    } finally {
      if (!readOnly) generation.value++;
    }
  };
  if (!commitPatched) {
    commitPatched = true;
    const commit = Transaction.prototype.commit;
    Transaction.prototype.commit = async function (this: Transaction & { sequelize: Sequelize }) {
      try {
        return await commit.call(this);
      } finally {
        const g = generations.get(this.sequelize);
        if (g) g.value++;
      }
    };
  }
  return generation;
}

type TransactionOptions = { type?: string } & Record<string, unknown>;
type AutoCallback = (t: Transaction) => Promise<unknown>;

/**
 * `sequelize.transaction` itself is routed through the gate, so transactions opened by any
 * component (services, accounting, migrations) follow the same discipline as `db.transaction`.
 * Managed transactions (with a callback) are retried; unmanaged ones hold the gate until they
 * commit or roll back.
 */
function disciplineTransactions(sequelize: Sequelize, gate: WriteGate, dialect: Database['dialect']): void {
  const original = sequelize.transaction.bind(sequelize) as (options?: TransactionOptions, fn?: AutoCallback) => Promise<unknown>;
  const wrapped = (a?: TransactionOptions | AutoCallback, b?: AutoCallback): Promise<unknown> => {
    const fn = typeof a === 'function' ? a : b;
    const given = typeof a === 'function' ? {} : (a ?? {});
    if (dialect === 'postgres') return fn ? withRetries(() => original(given, fn)) : original(given);
    // IMMEDIATE takes SQLite's write lock at BEGIN, where the busy timeout applies (another
    // process, e.g. a maintenance script, still gets its turn instead of an error).
    const options = { type: Transaction.TYPES.IMMEDIATE, ...given };
    if (fn) return withRetries(() => gate.run(() => original(options, fn)));
    if (gate.held()) return original(options);
    return new Promise((resolve, reject) => {
      gate
        .run(
          () =>
            new Promise<void>((done) => {
              original(options).then((t) => {
                const tx = t as Transaction & { cleanup(): unknown };
                const cleanup = tx.cleanup.bind(tx);
                tx.cleanup = () => {
                  done();
                  return cleanup();
                };
                resolve(tx);
              }, (err: unknown) => {
                done();
                reject(err);
              });
            }),
        )
        .catch(reject);
    });
  };
  (sequelize as unknown as { transaction: typeof wrapped }).transaction = wrapped;
}

/**
 * Sequelize's SQLite driver opens a fresh connection for every transaction (and closes it
 * after), so per-connection settings must be applied to each one, not once at start: without
 * a busy timeout two writers fail at once with SQLITE_BUSY instead of waiting their turn.
 */
function configureEverySqliteConnection(sequelize: Sequelize): void {
  type SqliteConnection = { configure(option: 'busyTimeout', ms: number): void; run(sql: string): void };
  const manager = (sequelize as unknown as { connectionManager: { getConnection(o?: unknown): Promise<SqliteConnection> } }).connectionManager;
  const original = manager.getConnection.bind(manager);
  const configured = new WeakSet<SqliteConnection>();
  manager.getConnection = async (options?: unknown) => {
    const connection = await original(options);
    if (!configured.has(connection)) {
      configured.add(connection);
      connection.configure('busyTimeout', 10_000);
      connection.run('PRAGMA synchronous = NORMAL');
    }
    return connection;
  };
}

/**
 * Opens the database named by URL (`sqlite:<file>`, `sqlite::memory:`, `postgres://…`) and
 * migrates it to the newest schema.
 */
export async function openDatabase(url: string): Promise<Database> {
  let sequelize: Sequelize;
  let dialect: Database['dialect'];
  if (url.startsWith('sqlite:')) {
    const file = url.slice('sqlite:'.length);
    const storage = file === ':memory:' || file === '' ? ':memory:' : path.resolve(file);
    if (storage !== ':memory:') prepareSqliteFile(storage);
    sequelize = new Sequelize({ dialect: 'sqlite', storage, logging: false, retry: { max: 5 } });
    dialect = 'sqlite';
    configureEverySqliteConnection(sequelize);
    await sequelize.query('PRAGMA journal_mode = WAL');
    if (storage !== ':memory:') restrictSqliteFiles(storage);
  } else {
    sequelize = new Sequelize(url, { dialect: 'postgres', logging: false, pool: { max: 10, min: 0, idle: 10_000 } });
    dialect = 'postgres';
  }
  await sequelize.authenticate();
  const gate = new WriteGate(MAX_WRITE_WAIT_MS);
  const generation = disciplineWrites(sequelize, gate, dialect);
  disciplineTransactions(sequelize, gate, dialect);
  defineModels(sequelize);
  defineAccountingModels(sequelize);
  defineAddressModels(sequelize);
  const umzug = new Umzug({
    migrations: migrations.map((mig) => ({
      name: mig.name,
      up: (params: { context: ReturnType<Sequelize['getQueryInterface']> }) => mig.up(params),
      down: (params: { context: ReturnType<Sequelize['getQueryInterface']> }) => mig.down(params),
    })),
    context: sequelize.getQueryInterface(),
    storage: new SequelizeStorage({ sequelize, tableName: 'schema_migrations' }),
    logger: undefined,
  });
  await umzug.up();
  return {
    sequelize,
    dialect,
    transaction: (fn) => sequelize.transaction((t) => fn(t)),
    writeGeneration: () => generation.value,
    writeGate: gate,
    close: () => sequelize.close(),
  };
}

/**
 * The database holds VPN passwords and WireGuard private keys: only the daemon's user may read
 * it. SQLite creates `-wal`/`-shm` with the main file's mode, so the file is created 0600
 * before SQLite opens it, and an existing looser one is tightened.
 */
function prepareSqliteFile(storage: string): void {
  mkdirSync(path.dirname(storage), { recursive: true, mode: 0o700 });
  if (!existsSync(storage)) closeSync(openSync(storage, 'a', 0o600));
  restrictSqliteFiles(storage);
}

function restrictSqliteFiles(storage: string): void {
  for (const file of [storage, `${storage}-wal`, `${storage}-shm`, `${storage}-journal`]) {
    if (existsSync(file)) chmodSync(file, 0o600);
  }
}
