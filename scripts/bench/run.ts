import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { runAccountingNativeBench } from './accounting-native';
import { runAccountingNodesBench } from './accounting-nodes';
import { runAccountingWriteBench } from './accounting-write';
import { runApiBench } from './api';
import { runNodesBench } from './nodes';
import { runRobustnessBench } from './robustness';
import { runSubscriptionBench } from './subscription';
import { progress } from './report';
import { runWireGuardBench } from './wireguard';

/**
 * `npm run bench`: every figure of the project, measured in one run, printed as
 * `BENCH <name> <value> <unit>` lines on stdout (progress on stderr).
 */
async function main(): Promise<void> {
  const root = path.resolve(__dirname, '../..');
  progress('building (the RSS figure runs the built daemon)');
  execFileSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', root], { stdio: 'inherit' });
  progress('accounting: native tracker vs memchr, naive JS and the TypeScript fallback');
  await runAccountingNativeBench();
  progress('accounting: persisting one tick in which 25k users changed (SQLite)');
  await runAccountingWriteBench();
  progress('accounting: one tick over 100 simulated nodes vs one node');
  await runAccountingNodesBench();
  progress('WireGuard: 10,000 peers on a real wireguard-go interface');
  await runWireGuardBench();
  progress('nodes: 1000 users synced to 3 real sshd nodes vs main alone; idle panel↔node bytes');
  await runNodesBench();
  progress('API benchmarks');
  await runApiBench();
  progress('subscription page vs GET /users/{u} (four protocols, five servers)');
  await runSubscriptionBench();
  progress('robustness: fuzzing and 200 concurrent mixed clients (SQLite file)');
  await runRobustnessBench();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
