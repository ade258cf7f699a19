import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createApp } from '../../api/server';
import { bootstrapCore } from '../../core/bootstrap';
import { loadConfig } from '../../core/config';
import { MAIN_ADMIN } from '../../core/principal';
import { randomKey } from '../../core/secrets';
import { runFuzz } from '../../test/helpers/fuzz';
import { runMixedLoad } from './load';
import { bench, progress } from './report';

/**
 * Reliability figures (issue 8), against an in-process daemon on a SQLite file (the default
 * database), only on 127.0.0.1:
 *   fuzz.requests           fuzzed requests sent (≥ 20,000), seeded
 *   fuzz.server_errors      of those answered 5xx or not at all (goal 0)
 *   load.write_errors       failed writes under 200 concurrent mixed clients (goal 0)
 *   load.writes             writes those clients made
 *   load.get_p50_ms         median GET /users/{u} latency meanwhile (p99 too)
 */
export async function runRobustnessBench(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'polygate-bench-robust-'));
  const adminKey = randomKey(32);
  const core = await bootstrapCore(
    loadConfig({ POLYGATE_DATA_DIR: dir, POLYGATE_ADMIN_API_KEY: adminKey, POLYGATE_FIREWALL: 'off', POLYGATE_RESELLER_LISTENERS: 'off', POLYGATE_PORT: '18081' }),
  );
  const server = createApp(core.services).listen(0, '127.0.0.1');
  try {
    await new Promise((r) => server.once('listening', r));
    const port = (server.address() as AddressInfo).port;
    const usernames: string[] = [];
    for (let i = 0; i < 2; i++) usernames.push(...(await core.services.users.create(MAIN_ADMIN, { bulk_count: 1000, data_limit: 10, expiry_days: 30 })).created_users);
    const reseller = await core.services.subAdmins.create(MAIN_ADMIN, { username: 'bench_reseller', password: 'bench-pass-1' });

    progress('fuzz: 20,000 seeded requests');
    const seed = Number(process.env.POLYGATE_FUZZ_SEED ?? 20260601);
    const fuzz = await runFuzz({ port, seed, count: 20_000, concurrency: 16, ctx: { keys: [adminKey, reseller.api_key, undefined, 'bad-key'], usernames: usernames.slice(0, 50), ids: [reseller.id] } });
    for (const line of fuzz.serverErrors.slice(0, 5)) progress(`5xx: ${line}`);
    bench('fuzz.requests', fuzz.requests, 'requests');
    bench('fuzz.server_errors', fuzz.serverErrors.length, 'count');

    progress('load: 200 concurrent mixed clients for 15 s');
    const load = await runMixedLoad({ port, apiKey: adminKey, usernames, clients: 200, durationMs: 15_000, writeShare: 0.3 });
    for (const s of load.writeErrorSamples) progress(`failed write: ${s}`);
    bench('load.write_errors', load.writeErrors, 'count');
    bench('load.writes', load.writes, 'count');
    bench('load.get_p50_ms', load.getP50Ms, 'ms');
    bench('load.get_p99_ms', load.getP99Ms, 'ms');
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await core.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  runRobustnessBench().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
