import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { InferCreationAttributes } from 'sequelize';
import { NodeRecord } from '../../core/db';
import { logger } from '../../core/logger';
import { addScriptedPlugin, type ScriptedPlugin } from '../../test/fakes/scripted-plugin';
import { createHarness, type Harness } from '../../test/helpers/harness';
import { insertUserRow } from '../../test/helpers/user-rows';
import { bench, median, progress } from './report';

/**
 * `accounting.tick_100_vs_1_node`: one accounting tick (poll every source, fold, commit) over
 * 100 simulated nodes ÷ the same tick over one. Each node is a scripted OpenVPN plugin
 * answering its poll as status text (the way the real plugin hands it over, through the native
 * tracker) with 50 live sessions whose counters all moved since the last tick; the panel holds
 * the same 100 node rows and 5000 users in both runs, on a SQLite file as the daemon runs it.
 * Polls are answered at once (no network): the figure is the panel's own cost per node.
 * Median of RUNS ticks after WARMUP; goal ≤ 100 (grows no faster than the nodes).
 */
const NODES = 100;
const SESSIONS_PER_NODE = 50;
const RUNS = 15;
const WARMUP = 3;
const TICK_MS = 5000;

export async function runAccountingNodesBench(): Promise<void> {
  // The daemon's log goes to stdout, which carries only BENCH lines.
  const previousLevel = logger.level;
  logger.level = process.env.POLYGATE_LOG_LEVEL ?? 'silent';
  try {
    const one = await measure(1);
    progress(`accounting: 1 node: median tick ${median(one).toFixed(1)} ms`);
    const many = await measure(NODES);
    progress(`accounting: ${NODES} nodes: median tick ${median(many).toFixed(1)} ms (ticks: ${many.map((x) => x.toFixed(0)).join(' ')})`);
    bench('accounting.tick_1_node_ms', median(one), 'ms');
    bench('accounting.tick_100_nodes_ms', median(many), 'ms');
    bench('accounting.tick_100_vs_1_node', median(many) / median(one), 'x');
  } finally {
    logger.level = previousLevel;
  }
}

/** Tick times (ms) with `active` of the NODES nodes polled. */
async function measure(active: number): Promise<number[]> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'polygate-bench-acct-nodes-'));
  let h: Harness | undefined;
  try {
    h = await createHarness('sqlite', { POLYGATE_DATABASE_URL: `sqlite:${path.join(dir, 'bench.sqlite')}` }, { protocols: 'none' });
    const t0 = performance.now();
    const nodeIds: number[] = [];
    for (let i = 1; i <= NODES; i++) {
      const row = await NodeRecord.create({ name: `Bench node ${i}`, ip_address: `198.18.${i >> 8}.${i & 255}`, ssh_secret: null, communication_method: null, status_message: null } as InferCreationAttributes<NodeRecord>);
      nodeIds.push(row.id);
    }
    for (let i = 0; i < NODES * SESSIONS_PER_NODE; i++) await insertUserRow({ username: `bench_user_${i}` });
    const plugins: ScriptedPlugin[] = [];
    for (let n = 0; n < active; n++) {
      const serverId = `node_${nodeIds[n]}`;
      plugins.push(await addScriptedPlugin(h.core.plugins, 'openvpn', serverId, { text: { format: 'openvpn-status3', scope: `${serverId}:1194udp` } }));
    }
    progress(`accounting: ${NODES} node rows, ${NODES * SESSIONS_PER_NODE} users, ${active} node(s) polled × ${SESSIONS_PER_NODE} sessions (set up in ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    const times: number[] = [];
    for (let run = 0; run < WARMUP + RUNS; run++) {
      // Every session moved by a few kilobytes since the last tick (cumulative counters).
      plugins.forEach((p, n) => {
        for (let s = 0; s < SESSIONS_PER_NODE; s++) {
          const u = n * SESSIONS_PER_NODE + s;
          p.set({ key: String(1000 + s), username: `bench_user_${u}`, rx: (run + 1) * (1000 + (u % 977)), tx: (run + 1) * (4000 + (u % 3989)), connectedAt: 1_780_000_000 + u });
        }
      });
      h.clock.advance(TICK_MS);
      const start = performance.now();
      const report = await h.core.accounting.tick();
      const ms = performance.now() - start;
      if (report.failed.length || report.polled.length !== active || !report.committed) throw new Error(`bench: tick ${run}: ${JSON.stringify({ failed: report.failed, polled: report.polled.length, committed: report.committed })}`);
      // The first tick only sees the sessions; from the second on every one of them moved.
      if (run > 0 && report.usersChanged !== active * SESSIONS_PER_NODE) throw new Error(`bench: tick ${run} changed ${report.usersChanged} users, expected ${active * SESSIONS_PER_NODE}`);
      if (run >= WARMUP) times.push(ms);
    }
    return times;
  } finally {
    await h?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  runAccountingNodesBench().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
