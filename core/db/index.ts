import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Sequelize, type Transaction } from 'sequelize';
import { Umzug, SequelizeStorage } from 'umzug';
import * as m0001 from './migrations/0001-initial';
import * as m0002 from './migrations/0002-accounting';
import { defineAccountingModels } from './accounting-models';
import { defineModels } from './models';

export * from './models';
export * from './accounting-models';

/** Migrations in order; each is a module with `up`/`down` taking the QueryInterface. */
const migrations = [
  { name: '0001-initial', ...m0001 },
  { name: '0002-accounting', ...m0002 },
];

export interface Database {
  sequelize: Sequelize;
  dialect: 'sqlite' | 'postgres';
  /** Runs `fn` in one transaction (SQLite: serialized, since it has one writer). */
  transaction<T>(fn: (t: Transaction) => Promise<T>): Promise<T>;
  close(): Promise<void>;
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
    sequelize = new Sequelize({
      dialect: 'sqlite',
      storage,
      logging: false,
      // One connection: SQLite serializes writers anyway, and a single handle keeps
      // transactions from seeing SQLITE_BUSY against each other.
      pool: { max: 1, min: 1, idle: 60_000 },
      retry: { max: 5 },
    });
    dialect = 'sqlite';
    await sequelize.query('PRAGMA journal_mode = WAL');
    await sequelize.query('PRAGMA synchronous = NORMAL');
    await sequelize.query('PRAGMA foreign_keys = ON');
    await sequelize.query('PRAGMA busy_timeout = 5000');
  } else {
    sequelize = new Sequelize(url, { dialect: 'postgres', logging: false, pool: { max: 10, min: 0, idle: 10_000 } });
    dialect = 'postgres';
  }
  await sequelize.authenticate();
  defineModels(sequelize);
  defineAccountingModels(sequelize);
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
    close: () => sequelize.close(),
  };
}
