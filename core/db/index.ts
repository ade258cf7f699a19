import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { QueryTypes, Sequelize, Transaction } from 'sequelize';
import { Umzug, SequelizeStorage } from 'umzug';
import * as m0001 from './migrations/0001-initial';
import * as m0002 from './migrations/0002-accounting';
import * as m0003 from './migrations/0003-user-usage';
import * as m0004 from './migrations/0004-address-leases';
import { defineAccountingModels } from './accounting-models';
import { defineAddressModels } from './address-models';
import { defineModels } from './models';

export * from './models';
export * from './accounting-models';
export * from './address-models';

/** Migrations in order; each is a module with `up`/`down` taking the QueryInterface. */
const migrations = [
  { name: '0001-initial', ...m0001 },
  { name: '0002-accounting', ...m0002 },
  { name: '0003-user-usage', ...m0003 },
  { name: '0004-address-leases', ...m0004 },
];

export interface Database {
  sequelize: Sequelize;
  dialect: 'sqlite' | 'postgres';
  /** Runs `fn` in one transaction (SQLite: serialized, since it has one writer). */
  transaction<T>(fn: (t: Transaction) => Promise<T>): Promise<T>;
  /**
   * A number that changes whenever this process may have changed the database (after every
   * non-SELECT statement and every commit). Read caches remember it and are valid while it is
   * unchanged; the daemon owns its database, so no other writer is expected.
   */
  writeGeneration(): number;
  close(): Promise<void>;
}

const generations = new WeakMap<Sequelize, { value: number }>();
let commitPatched = false;

/** Counts writes: non-SELECT statements when they finish, transactions when they commit. */
function trackWrites(sequelize: Sequelize): { value: number } {
  const generation = { value: 0 };
  generations.set(sequelize, generation);
  const query = sequelize.query.bind(sequelize) as (sql: unknown, options?: { type?: string }) => Promise<unknown>;
  (sequelize as unknown as { query: typeof query }).query = async (sql, options) => {
    const readOnly = options?.type === QueryTypes.SELECT || options?.type === QueryTypes.SHOWTABLES;
    try {
      return await query(sql, options);
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
    if (storage !== ':memory:') mkdirSync(path.dirname(storage), { recursive: true });
    sequelize = new Sequelize({ dialect: 'sqlite', storage, logging: false, retry: { max: 5 } });
    dialect = 'sqlite';
    configureEverySqliteConnection(sequelize);
    await sequelize.query('PRAGMA journal_mode = WAL');
  } else {
    sequelize = new Sequelize(url, { dialect: 'postgres', logging: false, pool: { max: 10, min: 0, idle: 10_000 } });
    dialect = 'postgres';
  }
  await sequelize.authenticate();
  const generation = trackWrites(sequelize);
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
    close: () => sequelize.close(),
  };
}
