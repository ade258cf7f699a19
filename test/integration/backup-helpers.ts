/**
 * Real daemons (`startDaemon`, as `npm start` runs it, in this process) on temp data dirs, and
 * the real CLI as a separate process, for the backup, restore and CLI suites.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { loadConfig, type Config } from '../../core/config';
import { startDaemon, type DaemonHandle } from '../../core/daemon';
import { createPostgresDatabase, postgresTestUrl, type DatabaseKind } from '../helpers/harness';

const ROOT = path.resolve(__dirname, '..', '..');

export interface Panel {
  kind: DatabaseKind;
  dataDir: string;
  /** The JSON settings file the daemon and the CLI both read (POLYGATE_CONFIG_FILE). */
  configFile: string;
  config: Config;
  /** Removes the PostgreSQL database (data dirs are left in the OS temp dir). */
  drop(): Promise<void>;
}

/** A fresh panel's settings: its own data dir, and on PostgreSQL its own empty database. */
export async function newPanel(kind: DatabaseKind, settings: Record<string, unknown> = {}): Promise<Panel> {
  const base = mkdtempSync(path.join(os.tmpdir(), 'pg-bk-'));
  const dataDir = path.join(base, 'data');
  let databaseUrl: string | undefined;
  let drop = async () => {};
  if (kind === 'postgres') {
    const db = await createPostgresDatabase(postgresTestUrl!);
    databaseUrl = db.url;
    drop = db.drop;
  }
  const configFile = path.join(base, 'polygate.json');
  const file = { dataDir, host: '127.0.0.1', port: 0, plugins: '', firewall: 'off', resellerListeners: 'off', accountingIntervalMs: 60_000, ...(databaseUrl ? { databaseUrl } : {}), ...settings };
  writeFileSync(configFile, JSON.stringify(file));
  return { kind, dataDir, configFile, config: loadConfig({ POLYGATE_CONFIG_FILE: configFile }), drop };
}

export const quietLogger = pino({ level: 'silent' });

export function startPanel(panel: Panel): Promise<DaemonHandle> {
  return startDaemon(panel.config, quietLogger);
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The CLI in its own process (`cli/main.ts` under tsx), with only the settings file as configuration. */
export function runCliProcess(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('POLYGATE_')));
  const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], { cwd: ROOT, env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr })));
}

/** JSON over HTTP(S) with the admin (or a reseller's) key. */
export async function api<T = Record<string, unknown>>(base: string, method: string, url: string, key: string | null, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${base}${url}`, {
    method,
    headers: { ...(key ? { 'X-API-KEY': key } : {}), accept: 'application/json', ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as T };
}
