import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { AccountingJournal } from '../../core/accounting/journal';
import { BatchedUsageWriter, utcDay, type TickWrite } from '../../core/accounting/writer';
import { openDatabase, type Database } from '../../core/db';
import { bench, median, progress } from './report';

const USERS = 25_000;
const RESELLERS = 50;
const NODES = 3;
/** Ticks measured, after WARMUP ticks (the first creates today's rows; the rest warm the JIT). */
const RUNS = 15;
const WARMUP = 3;

/**
 * `accounting.write_25k_ms`: persisting one accounting tick in which 25k users changed — their
 * counters, their per-day history rows, their resellers' and nodes' totals and the journal
 * entries of their 25k sessions (serialised and written) — in one transaction on a
 * file-backed SQLite database (WAL, as the daemon runs it). Median of the steady-state ticks
 * (today's history rows already exist), after warm-up ticks (the first one creates them).
 * Goal: ≤ 100 ms.
 */
export async function runAccountingWriteBench(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'polygate-bench-acct-'));
  let db: Database | undefined;
  try {
    db = await openDatabase(`sqlite:${path.join(dir, 'bench.sqlite')}`);
    await seed(db);
    const writer = new BatchedUsageWriter(db.sequelize);
    const journal = new AccountingJournal();
    await journal.load();
    const day = utcDay(new Date());
    const times: number[] = [];
    for (let run = 0; run < WARMUP + RUNS; run++) {
      const write = tickWrite(day, run, journal);
      const t0 = performance.now();
      write.journal = journal.takeDirty();
      const handle = await db.transaction((t) => writer.write(write, t));
      handle.commit();
      const ms = performance.now() - t0;
      if (run === 0) progress(`first tick of the day (creates ${USERS} history rows and the journal): ${ms.toFixed(1)} ms`);
      if (run >= WARMUP) times.push(ms);
    }
    await verify(db);
    bench('accounting.write_25k_ms', median(times), 'ms');
  } finally {
    await db?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function seed(db: Database): Promise<void> {
  const q = (sql: string) => db.sequelize.query(sql);
  const now = `'${new Date().toISOString().replace('T', ' ').replace('Z', ' +00:00')}'`;
  const resellers: string[] = [];
  for (let i = 1; i <= RESELLERS; i++) resellers.push(`(${i}, 'bench_res_${i}', 'x', ${now}, ${now})`);
  await q(`INSERT INTO sub_admins (id, username, password_hash, created_at, updated_at) VALUES ${resellers.join(',')}`);
  const nodes: string[] = [];
  for (let i = 1; i <= NODES; i++) nodes.push(`(${i}, 'bench node ${i}', '192.0.2.${i}', ${now}, ${now})`);
  await q(`INSERT INTO nodes (id, name, ip_address, created_at, updated_at) VALUES ${nodes.join(',')}`);
  for (let start = 1; start <= USERS; start += 5000) {
    const rows: string[] = [];
    for (let i = start; i < start + 5000 && i <= USERS; i++) {
      const reseller = i % 5 === 0 ? 'NULL' : String((i % RESELLERS) + 1);
      // As wide as a real row: protocol passwords, WireGuard keys and address, server list.
      const key = Buffer.alloc(32, i % 251).toString('base64');
      rows.push(
        `(${i}, 'bench_user_${i}', ${reseller}, 1073741824, 'pw${i}x7Kq2mZ', 'l2${i}x7Kq2mZ', 'cs${i}x7Kq2mZ', 1, 1, 1, '${key}', '${key}', '10.66.${(i >> 8) & 255}.${i & 255}/32', '["main","node_1"]', ${now}, ${now})`,
      );
    }
    await q(
      'INSERT INTO users (id, username, sub_admin_id, data_limit_bytes, openvpn_password, l2tp_password, cisco_password, enable_l2tp, enable_cisco, enable_wg, ' +
        `wg_private_key, wg_public_key, wg_address, nodes, created_at, updated_at) VALUES ${rows.join(',')}`,
    );
  }
  progress(`seeded ${USERS} users, ${RESELLERS} resellers, ${NODES} nodes`);
}

/** Server and protocol a user's session lives on, spread like a real fleet. */
function placement(i: number): { serverId: string; protocol: string } {
  const servers = ['main', 'node_1', 'node_2', 'node_3'];
  const protocols = ['openvpn', 'wireguard', 'cisco', 'l2tp'];
  return { serverId: servers[i % servers.length]!, protocol: protocols[(i >> 2) % protocols.length]! };
}

/** One tick: every user's single session moved by a few kilobytes. */
function tickWrite(day: string, run: number, journal: AccountingJournal): TickWrite {
  const nowMs = Date.now();
  const w: TickWrite = { day, nowMs, users: [], daily: [], resellers: [], nodes: [], journal: [], consumedEndedIds: [] };
  const perReseller = new Map<number, number>();
  const perNode = new Map<number, number>();
  for (let i = 1; i <= USERS; i++) {
    const rx = 1000 + ((i * 7 + run) % 5000);
    const tx = 4000 + ((i * 13 + run) % 20000);
    const { serverId, protocol } = placement(i);
    w.users.push({ userId: i, rx, tx });
    w.daily.push({ userId: i, serverId, protocol, rx, tx });
    if (i % 5 !== 0) {
      const r = (i % RESELLERS) + 1;
      perReseller.set(r, (perReseller.get(r) ?? 0) + rx + tx);
    }
    if (serverId !== 'main') {
      const n = Number(serverId.slice(5));
      perNode.set(n, (perNode.get(n) ?? 0) + rx + tx);
    }
    const source = `${protocol}@${serverId}`;
    journal.set(source, {
      key: `${source}:bench-session-${i}`,
      scope: source,
      user: `bench_user_${i}`,
      connectedAt: 1_780_000_000 + i,
      rx: (run + 1) * rx,
      tx: (run + 1) * tx,
      ended: false,
      seenAtMs: nowMs,
    });
  }
  for (const [id, bytes] of perReseller) w.resellers.push({ id, bytes });
  for (const [id, bytes] of perNode) w.nodes.push({ id, bytes });
  return w;
}

/** The figure only counts if the writes are right: spot-check totals after every tick. */
async function verify(db: Database): Promise<void> {
  const [[row]] = (await db.sequelize.query('SELECT SUM(upload_bytes) AS up, SUM(download_bytes) AS down FROM user_usage')) as unknown as [[{ up: number; down: number }]];
  const [[daily]] = (await db.sequelize.query('SELECT SUM(rx) AS rx, SUM(tx) AS tx, COUNT(*) AS n FROM usage_daily')) as unknown as [[{ rx: number; tx: number; n: number }]];
  const reloaded = new AccountingJournal();
  const sessions = { n: (await reloaded.load()).length };
  if (Number(row.up) !== Number(daily.rx) || Number(row.down) !== Number(daily.tx)) throw new Error('bench: user counters and daily history disagree');
  if (Number(daily.n) !== USERS || Number(sessions.n) !== USERS) throw new Error('bench: expected one history row and one journal row per user');
  let expectedUp = 0;
  for (let run = 0; run < WARMUP + RUNS; run++) for (let i = 1; i <= USERS; i++) expectedUp += 1000 + ((i * 7 + run) % 5000);
  if (Number(row.up) !== expectedUp) throw new Error(`bench: upload total ${row.up} != ${expectedUp}`);
}

if (require.main === module) {
  runAccountingWriteBench().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
