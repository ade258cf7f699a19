import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import express from 'express';
import { QueryTypes } from 'sequelize';
import { createApp } from '../../api/server';
import { bootstrapCore } from '../../core/bootstrap';
import { loadConfig } from '../../core/config';
import { createLogger } from '../../core/logger';
import { MAIN_ADMIN } from '../../core/principal';
import { randomKey } from '../../core/secrets';
import { runLoad } from './load';
import { bench, median, progress } from './report';

/**
 * API figures, each measured in this one run:
 *   api.get_user_vs_express  req/s of GET /api/v1/users/{u} with 10k users ÷ req/s of a bare Express handler
 *   api.list_all_10k_ms      GET /api/v1/users/list_all with 10k users, asked again with no write between (median)
 *   api.list_all_10k_cold_ms the same right after a write (the rows are read again)
 *   api.list_all_vs_floor    list_all right after a write ÷ the floor (the same rows by one raw query + JSON.stringify), median of rounds
 *   api.list_all_kept_vs_floor  list_all asked again ÷ the floor
 *   api.bulk_1000_ms         POST /api/v1/users {bulk_count: 1000} (median over the batches that build the 10k)
 *   api.rss_100k_mb          RSS of a started daemon process whose database holds 100k users
 */
// stdout carries only BENCH lines: the in-process daemons log warnings and worse, to stderr.
const benchLogger = createLogger(process.env.POLYGATE_LOG_LEVEL ?? 'warn', process.stderr);

export async function runApiBench(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'polygate-bench-'));
  try {
    await benchInProcess(dir);
    await benchRss(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function benchInProcess(dir: string): Promise<void> {
  const adminKey = randomKey(32);
  const config = loadConfig({
    POLYGATE_DATA_DIR: path.join(dir, 'api'),
    POLYGATE_ADMIN_API_KEY: adminKey,
    POLYGATE_FIREWALL: 'off',
    POLYGATE_RESELLER_LISTENERS: 'off',
    POLYGATE_PORT: '18080',
  });
  const core = await bootstrapCore(config, { logger: benchLogger });
  const app = createApp(core.services);
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const port = (server.address() as AddressInfo).port;
  const api = async (method: string, p: string, body?: unknown) => {
    const res = await fetch(`http://127.0.0.1:${port}/api/v1${p}`, {
      method,
      headers: { 'X-API-KEY': adminKey, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = (await res.json()) as Record<string, unknown>;
    if (!res.ok) throw new Error(`${method} ${p} → ${res.status} ${JSON.stringify(json)}`);
    return json;
  };

  const bulkTimes: number[] = [];
  const names: string[] = [];
  for (let i = 0; i < 10; i++) {
    const t0 = performance.now();
    const out = await api('POST', '/users', { bulk_count: 1000, data_limit: 50, expiry_days: 30 });
    bulkTimes.push(performance.now() - t0);
    names.push(...(out.created_users as string[]));
    progress(`created ${names.length} users`);
  }
  bench('api.bulk_1000_ms', median(bulkTimes), 'ms');

  // list_all against its floor: the same rows read by one raw SQL query and JSON.stringify-ed
  // in this process. Rounds alternate floor, list right after a write (nothing kept: rows are
  // read), and list again (rows kept under the write generation), so noise hits all alike. The
  // clock stops when the body has arrived; parsing it on this side is the client's cost.
  const sequelize = core.ctx.db.sequelize;
  const floorSql = `SELECT u.username, u.sub_admin_id, u.is_active, u.max_clients, u.activation_type, u.expiry_date, u.first_connection_at,
    u.data_limit, u.data_limit_unit, u.data_limit_bytes, COALESCE(uu.upload_bytes, 0) AS upload_bytes, COALESCE(uu.download_bytes, 0) AS download_bytes
    FROM users u LEFT JOIN user_usage uu ON uu.user_id = u.id ORDER BY u.id`;
  const floorOnce = async () => {
    const t0 = performance.now();
    const body = JSON.stringify(await sequelize.query(floorSql, { type: QueryTypes.SELECT }));
    const ms = performance.now() - t0;
    if (body.length < 10_000) throw new Error('floor read no rows');
    return ms;
  };
  const listOnce = async () => {
    const t0 = performance.now();
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/users/list_all`, { headers: { 'X-API-KEY': adminKey } });
    const text = await res.text();
    const ms = performance.now() - t0;
    const out = JSON.parse(text) as { main_admin?: { users: unknown[] } };
    if (res.status !== 200 || out.main_admin?.users.length !== 10_000) throw new Error(`list_all → ${res.status}, not 10k users`);
    return ms;
  };
  await floorOnce(); // warm-up
  await listOnce();
  const coldTimes: number[] = [];
  const keptTimes: number[] = [];
  const coldRatios: number[] = [];
  const keptRatios: number[] = [];
  for (let round = 0; round < 15; round++) {
    const floor = await floorOnce();
    await api('PUT', `/users/${names[round]}`, { notes: `bench round ${round}` });
    const cold = await listOnce();
    const kept = await listOnce();
    coldTimes.push(cold);
    keptTimes.push(kept);
    coldRatios.push(cold / floor);
    keptRatios.push(kept / floor);
    progress(`round ${round + 1}: floor ${floor.toFixed(1)} ms, list after a write ${cold.toFixed(1)} ms, list again ${kept.toFixed(1)} ms`);
  }
  bench('api.list_all_10k_ms', median(keptTimes), 'ms');
  bench('api.list_all_10k_cold_ms', median(coldTimes), 'ms');
  bench('api.list_all_vs_floor', median(coldRatios), 'ratio');
  bench('api.list_all_kept_vs_floor', median(keptRatios), 'ratio');

  const sample = names.filter((_, i) => i % 37 === 0).map((n) => `/api/v1/users/${n}`);

  // The baseline: a bare Express handler answering a JSON object of similar size, on the same
  // machine. Both servers run side by side and are measured in alternating rounds, so a noisy
  // neighbour slows both alike; the figure is the median of the rounds' ratios.
  const bare = express();
  bare.get('/api/v1/users/:username', (req, res) => {
    res.json({ success: true, username: req.params.username, status: 'active', is_active: true, data_limit: 50 });
  });
  const bareServer = bare.listen(0, '127.0.0.1');
  await new Promise((r) => bareServer.once('listening', r));
  const barePort = (bareServer.address() as AddressInfo).port;
  const panelLoad = (durationMs: number) => runLoad({ port, paths: sample, headers: { 'X-API-KEY': adminKey }, concurrency: 16, durationMs });
  const bareLoad = (durationMs: number) => runLoad({ port: barePort, paths: sample, concurrency: 16, durationMs });
  await panelLoad(1000); // warm-up
  await bareLoad(1000);
  const ratios: number[] = [];
  for (let round = 0; round < 5; round++) {
    const panel = await panelLoad(1500);
    const baseline = await bareLoad(1500);
    if (panel.errors > 0) throw new Error(`GET user load had ${panel.errors} errors`);
    ratios.push(panel.perSecond / baseline.perSecond);
    progress(`round ${round + 1}: GET user ${panel.perSecond.toFixed(0)} req/s, bare Express ${baseline.perSecond.toFixed(0)} req/s`);
  }
  bareServer.close();
  server.close();
  await core.close();
  bench('api.get_user_vs_express', median(ratios), 'ratio');
}

async function benchRss(dir: string): Promise<void> {
  const dataDir = path.join(dir, 'rss');
  const adminKey = randomKey(32);
  const env = {
    POLYGATE_DATA_DIR: dataDir,
    POLYGATE_ADMIN_API_KEY: adminKey,
    POLYGATE_FIREWALL: 'off',
    POLYGATE_RESELLER_LISTENERS: 'off',
    POLYGATE_HOST: '127.0.0.1',
    POLYGATE_PORT: String(20000 + Math.floor(Math.random() * 20000)),
    POLYGATE_LOG_LEVEL: 'warn',
    POLYGATE_PLUGINS: '',
  };
  // Fill the database through the service layer, then start a real daemon process on it.
  const core = await bootstrapCore(loadConfig(env), { logger: benchLogger });
  const some: string[] = [];
  for (let i = 0; i < 100; i++) {
    const created = await core.services.users.create(MAIN_ADMIN, { bulk_count: 1000, data_limit: 10, expiry_days: 30 });
    some.push(created.created_users[0]!);
    if (i % 10 === 9) progress(`filled ${(i + 1) * 1000} users for the RSS figure`);
  }
  await core.close();

  const main = path.resolve(__dirname, '../../dist/core/main.js');
  const child = spawn(process.execPath, [main], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('daemon did not start within 60 s')), 60_000);
      child.stdout.on('data', (d: Buffer) => {
        if (d.toString().includes('polygate is running')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => reject(new Error(`daemon exited with ${code}`)));
    });
    const base = `http://127.0.0.1:${env.POLYGATE_PORT}/api/v1`;
    // A working daemon, not an idle one: serve users, then let a few accounting ticks run.
    for (const name of some) {
      const res = await fetch(`${base}/users/${name}`, { headers: { 'X-API-KEY': adminKey } });
      if (res.status !== 200) throw new Error(`GET user ${name} → ${res.status}`);
    }
    await new Promise((r) => setTimeout(r, 3000));
    const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
    const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
    bench('api.rss_100k_mb', kb / 1024, 'MB');
  } finally {
    child.kill('SIGTERM');
  }
}

if (require.main === module) {
  runApiBench().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
