/**
 * Consistent database snapshots for backups, and putting them back. SQLite: `VACUUM INTO` on a
 * read-only connection of its own (one read transaction, so the copy is a single point in time
 * while the daemon keeps writing through WAL). PostgreSQL: `pg_dump`/`pg_restore` in custom
 * format, run from argv with the password in `PGPASSWORD`, never on the command line.
 */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import sqlite3 from 'sqlite3';
import { Client } from 'pg';
import { LocalHost } from '../hosts/local-host';

export type DatabaseKind = 'sqlite' | 'postgres';

export const databaseKindOf = (url: string): DatabaseKind => (url.startsWith('sqlite:') ? 'sqlite' : 'postgres');

/** The file behind a `sqlite:` URL (absolute). */
export function sqliteFileOf(url: string): string {
  const file = url.slice('sqlite:'.length);
  if (file === '' || file === ':memory:') throw new BackupError('the database is in memory (sqlite::memory:): there is nothing to back up', 'config');
  return path.resolve(file);
}

/** Kinds let the CLI map failures to exit codes and advice. */
export type BackupErrorKind = 'config' | 'invalid_archive' | 'refused' | 'tool_missing' | 'failed';

export class BackupError extends Error {
  constructor(
    message: string,
    readonly kind: BackupErrorKind = 'failed',
  ) {
    super(message);
  }
}

function openSqlite(file: string, mode: number): Promise<sqlite3.Database> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(file, mode, (err) => (err ? reject(err) : resolve(db)));
  });
}

const runSqlite = (db: sqlite3.Database, sql: string, params: unknown[] = []): Promise<void> =>
  new Promise((resolve, reject) => db.run(sql, params, (err) => (err ? reject(err) : resolve())));
const allSqlite = <T>(db: sqlite3.Database, sql: string): Promise<T[]> =>
  new Promise((resolve, reject) => db.all(sql, (err, rows) => (err ? reject(err) : resolve(rows as T[]))));
const closeSqlite = (db: sqlite3.Database): Promise<void> => new Promise((resolve) => db.close(() => resolve()));

/** Copies the live SQLite database into `out` (which must not exist) as one consistent snapshot. */
export async function snapshotSqlite(file: string, out: string): Promise<void> {
  if (!existsSync(file)) throw new BackupError(`the database file ${file} does not exist; check POLYGATE_DATA_DIR / POLYGATE_DATABASE_URL`, 'config');
  const db = await openSqlite(file, sqlite3.OPEN_READONLY);
  try {
    db.configure('busyTimeout', 10_000);
    await runSqlite(db, 'VACUUM INTO ?', [out]);
  } finally {
    await closeSqlite(db);
  }
}

/** `PRAGMA quick_check` on a snapshot and the newest migration it holds. */
export async function checkSqliteSnapshot(file: string): Promise<{ ok: boolean; detail: string; schema: string | null }> {
  const db = await openSqlite(file, sqlite3.OPEN_READONLY);
  try {
    const rows = await allSqlite<{ quick_check: string }>(db, 'PRAGMA quick_check');
    const detail = rows.map((r) => r.quick_check).join('; ');
    let schema: string | null = null;
    try {
      const m = await allSqlite<{ name: string }>(db, 'SELECT name FROM schema_migrations ORDER BY name DESC LIMIT 1');
      schema = m[0]?.name ?? null;
    } catch {
      schema = null;
    }
    return { ok: detail === 'ok', detail, schema };
  } catch (e) {
    return { ok: false, detail: (e as Error).message, schema: null };
  } finally {
    await closeSqlite(db);
  }
}

/** libpq connection settings from a URL: everything but the password goes on argv. */
export function pgConnection(url: string): { argv: string[]; env: Record<string, string>; database: string } {
  const u = new URL(url);
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!database) throw new BackupError('POLYGATE_DATABASE_URL names no database (postgres://user:pass@host:5432/<database>)', 'config');
  const argv = ['--host', u.hostname || 'localhost', '--port', u.port || '5432'];
  if (u.username) argv.push('--username', decodeURIComponent(u.username));
  const env: Record<string, string> = {};
  if (u.password) env.PGPASSWORD = decodeURIComponent(u.password);
  const sslmode = u.searchParams.get('sslmode');
  if (sslmode) env.PGSSLMODE = sslmode;
  return { argv, env, database };
}

/**
 * Finds a PostgreSQL client program: on PATH, else the newest `/usr/lib/postgresql/<n>/bin`
 * (Debian keeps them there; pg_dump must be at least the server's major version).
 */
export function findPgTool(name: 'pg_dump' | 'pg_restore'): string {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(path.join(dir, name))) return path.join(dir, name);
  }
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
    for (const v of versions) {
      const candidate = path.join(root, v, 'bin', name);
      if (existsSync(candidate)) return candidate;
    }
  }
  throw new BackupError(`${name} is not installed; install the Debian package postgresql-client (its major version must be at least the server's)`, 'tool_missing');
}

const PG_TOOL_TIMEOUT_MS = 6 * 60 * 60 * 1000;
/** An unreachable server fails the command with its reason instead of hanging it. */
export const PG_CONNECT_TIMEOUT_MS = 10_000;

export async function dumpPostgres(url: string, out: string): Promise<void> {
  const { argv, env, database } = pgConnection(url);
  const r = await new LocalHost().run([findPgTool('pg_dump'), '--format=custom', '--no-owner', '--no-privileges', '--file', out, ...argv, '--dbname', database], { env, timeoutMs: PG_TOOL_TIMEOUT_MS });
  if (r.code !== 0) throw new BackupError(`pg_dump failed (exit ${r.code}): ${r.stderr.trim().slice(0, 2000)}`);
}

export async function restorePostgres(url: string, dump: string): Promise<void> {
  const { argv, env, database } = pgConnection(url);
  const r = await new LocalHost().run(
    [findPgTool('pg_restore'), '--clean', '--if-exists', '--no-owner', '--no-privileges', '--single-transaction', '--exit-on-error', ...argv, '--dbname', database, dump],
    { env, timeoutMs: PG_TOOL_TIMEOUT_MS },
  );
  if (r.code !== 0) throw new BackupError(`pg_restore failed (exit ${r.code}); the database was left as it was (one transaction): ${r.stderr.trim().slice(0, 2000)}`);
}

/**
 * What a restore would overwrite in a PostgreSQL database: whether it holds polygate's tables,
 * and how many other sessions are connected to it (a daemon on another machine shows up here,
 * where the data dir's control socket cannot see it).
 */
export async function inspectPostgres(url: string): Promise<{ hasTables: boolean; otherSessions: number }> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS });
  await client.connect();
  try {
    const t = await client.query<{ n: string }>(`SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public' AND table_name = 'schema_migrations'`);
    const s = await client.query<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`);
    return { hasTables: Number(t.rows[0]!.n) > 0, otherSessions: Number(s.rows[0]!.n) };
  } finally {
    await client.end();
  }
}

/** The newest migration a PostgreSQL database holds. */
export async function postgresSchema(url: string): Promise<string | null> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS });
  await client.connect();
  try {
    const r = await client.query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY name DESC LIMIT 1');
    return r.rows[0]?.name ?? null;
  } catch {
    return null;
  } finally {
    await client.end();
  }
}
