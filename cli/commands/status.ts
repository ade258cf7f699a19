import { existsSync } from 'node:fs';
import type { Config } from '../../core/config';
import { askDaemon, controlSocketPath, packageVersion } from '../../core/control';
import { databaseKindOf, PG_CONNECT_TIMEOUT_MS, sqliteFileOf } from '../../core/backup/database';
import net from 'node:net';
import { Client } from 'pg';
import sqlite3 from 'sqlite3';
import type { ComponentStatus } from '../../core/status';
import { cliConfig, type GlobalOptions } from '../config';
import { EXIT } from '../exit-codes';

export interface DaemonStatus {
  running: boolean;
  pid?: number;
  version?: string;
  url?: string;
  database?: string;
  uptime_s?: number;
  users?: number;
  components?: Record<string, ComponentStatus>;
  /** Set when the daemon is not running: what the data dir holds. */
  offline?: { users: number | null; reason?: string };
  /** Set when the control socket is silent but the panel port answers (a daemon of another data dir). */
  portAnswers?: boolean;
}

/** Whether anything accepts connections on the panel port. */
function portAnswers(config: Config): Promise<boolean> {
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  return new Promise((resolve) => {
    const socket = net.connect({ host, port: config.port });
    socket.setTimeout(2000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Users in a stopped panel's database, read without migrating or writing anything. */
async function offlineUsers(config: Config): Promise<{ users: number | null; reason?: string }> {
  try {
    if (databaseKindOf(config.databaseUrlResolved) === 'sqlite') {
      const file = sqliteFileOf(config.databaseUrlResolved);
      if (!existsSync(file)) return { users: null, reason: 'no database yet' };
      const db = await new Promise<sqlite3.Database>((resolve, reject) => {
        const d = new sqlite3.Database(file, sqlite3.OPEN_READONLY, (err) => (err ? reject(err) : resolve(d)));
      });
      try {
        const row = await new Promise<{ n: number }>((resolve, reject) => db.get('SELECT count(*) AS n FROM users', (err, r) => (err ? reject(err) : resolve(r as { n: number }))));
        return { users: row.n };
      } finally {
        db.close();
      }
    }
    const client = new Client({ connectionString: config.databaseUrlResolved, connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS });
    await client.connect();
    try {
      const r = await client.query<{ n: string }>('SELECT count(*) AS n FROM users');
      return { users: Number(r.rows[0]!.n) };
    } finally {
      await client.end();
    }
  } catch (e) {
    return { users: null, reason: (e as Error).message };
  }
}

export async function readStatus(config: Config): Promise<DaemonStatus> {
  const reply = await askDaemon(config.dataDir, 'status');
  if (reply?.ok) {
    const { ok: _ok, ...rest } = reply;
    return { running: true, ...(rest as Omit<DaemonStatus, 'running'>) };
  }
  return { running: false, offline: await offlineUsers(config), portAnswers: await portAnswers(config) };
}

const BAD_STATES = new Set(['unavailable', 'degraded']);

export async function statusCommand(options: { json?: boolean }, global: GlobalOptions): Promise<number> {
  const config = cliConfig(global);
  const s = await readStatus(config);
  const unhealthy = Object.entries(s.components ?? {}).filter(([, c]) => BAD_STATES.has(c.state));
  if (options.json) {
    process.stdout.write(`${JSON.stringify({ ...s, cli_version: packageVersion(), data_dir: config.dataDir }, null, 2)}\n`);
  } else if (s.running) {
    const lines = [
      `polygate ${s.version} is running (pid ${s.pid}, up ${s.uptime_s}s) on ${s.url}`,
      `  data dir: ${config.dataDir}   database: ${s.database}   users: ${s.users}`,
      '  components:',
      ...Object.entries(s.components ?? {}).map(([name, c]) => `    ${name.padEnd(28)} ${c.state}${c.reason ? ` — ${c.reason}` : ''}`),
    ];
    if (unhealthy.length) lines.push(`  ${unhealthy.length} component(s) unavailable or degraded; \`polygate doctor\` shows what this machine lacks.`);
    process.stdout.write(`${lines.join('\n')}\n`);
  } else {
    const lines = [`polygate is not running on ${config.dataDir} (no answer on ${controlSocketPath(config.dataDir)})`];
    if (s.offline?.users != null) lines.push(`  the data dir holds ${s.offline.users} user(s)`);
    else if (s.offline?.reason) lines.push(`  database: ${s.offline.reason}`);
    if (s.portAnswers) lines.push(`  something answers on port ${config.port}: a daemon with another data dir? Check POLYGATE_DATA_DIR.`);
    lines.push('  start it: systemctl start polygate (or npm start); logs: journalctl -u polygate');
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  if (!s.running) return EXIT.notRunning;
  return unhealthy.length ? EXIT.problems : EXIT.ok;
}
