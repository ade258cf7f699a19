import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { LocalHost } from '../../core/hosts/local-host';
import { logger } from '../../core/logger';
import type { DesiredState, DesiredUser } from '../../core/plugin/types';
import { generateWireGuardKeyPair } from '../../core/protocols/wireguard-material';
import { createTracker } from '../../native';
import wireguardPlugin, { type WireGuardPlugin } from '../../plugins/wireguard';
import { PeerLedger } from '../../plugins/wireguard/dump';
import { renderInterface } from '../../plugins/wireguard/render';
import { bench, median, progress } from './report';

/**
 * WireGuard on a real wireguard-go interface holding 10,000 peers (in a namespace of its own):
 *   wireguard.full_vs_one_apply   rewriting the whole peer set the way a naive panel does (render
 *                                 every peer, write the file, `wg syncconf`) ÷ adding one user
 *                                 the way the plugin does (apply: diff, one `wg addconf`), medians
 *                                 of alternating rounds; goal ≥ 20
 *   wireguard.poll_vs_dump        one plugin poll (the dump through the Host + ledger + native
 *                                 tracker tick) ÷ the bare `wg show <if> dump` through the same
 *                                 Host; every peer made online (handshake = now) so the ledger and
 *                                 tracker carry all 10,000; goal ≤ 1.5
 */
const PEERS = 10_000;
const ROUNDS = 9;
/** The whole bench takes about 10 s; past this it fails naming the step it was in, never hangs `npm run bench`. */
const BENCH_LIMIT_MS = 300_000;

/** `p`, or a rejection naming `what` after `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`WireGuard bench: no progress within ${ms} ms (at: ${what()})`)), ms);
  });
  try {
    return await Promise.race([p, limit]);
  } finally {
    clearTimeout(timer);
  }
}

export async function runWireGuardBench(): Promise<void> {
  let step = 'starting';
  // Rounds only set the step (named if the limit is hit); other steps are printed too.
  const report = (text: string, quiet = false) => {
    step = text;
    if (!quiet) progress(`wireguard: ${text}`);
  };
  await within(measure(report), BENCH_LIMIT_MS, () => step);
}

async function measure(report: (text: string, quiet?: boolean) => void): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the WireGuard bench needs root (a network namespace)');
  const suffix = randomBytes(3).toString('hex');
  const ns = `pg-wgbench-${suffix}`;
  const dir = `/tmp/pg-wgbench-${suffix}`;
  execFileSync('ip', ['netns', 'add', ns]);
  const host = new LocalHost({ id: 'main', netns: ns });
  let plugin: WireGuardPlugin | undefined;
  try {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const config = wireguardPlugin.configSchema.parse({ implementation: 'userspace', interfacePrefix: `wgb${suffix}` });
    plugin = wireguardPlugin.create({
      host,
      config,
      logger: logger.child({ bench: 'wireguard' }),
      clock: { now: () => new Date() },
      serverId: 'main',
      stateDir: `${dir}/state`,
      clientPool: '10.66.0.0/16',
      pki: null as never,
      authorize: async () => ({ allowed: true }),
      sessionEnded: () => Promise.resolve(),
    }) as WireGuardPlugin;
    report(`generating ${PEERS + ROUNDS} users`);
    const users: DesiredUser[] = [];
    for (let i = 0; i < PEERS + ROUNDS; i++) {
      const host = i + 2;
      users.push({ username: `user${i}`, material: { publicKey: generateWireGuardKeyPair().publicKey, address: `10.66.${host >> 8}.${host & 255}` } });
    }
    const base = users.slice(0, PEERS);
    const state = (list: readonly DesiredUser[]): DesiredState => ({ users: list, listeners: [{ port: 51820, protocol: 'udp' }], settings: {} });
    report(`first apply of ${PEERS} peers`);
    let t0 = performance.now();
    await plugin.apply(state(base));
    progress(`wireguard: first apply of ${PEERS} peers (interface start + psk store + addconf) ${(performance.now() - t0).toFixed(0)} ms`);
    const iface = plugin.describe()[0]!.name;
    const serverKey = (await fs.readFile(`${dir}/state/server.key`, 'utf8')).trim();
    const psk = (await plugin.renderClientConfig({ username: 'user0', material: { ...base[0]!.material, privateKey: generateWireGuardKeyPair().privateKey } }, [{ host: '10.0.0.1', port: 51820, protocol: 'udp' }])).match(/^PresharedKey = (.*)$/m)![1]!;

    // --- full rewrite vs one added user, alternating rounds
    const full: number[] = [];
    const one: number[] = [];
    const fullFile = `${dir}/full.conf`;
    for (let r = 0; r < ROUNDS; r++) {
      report(`full rewrite vs one added user, round ${r + 1}/${ROUNDS}`, true);
      const extra = users[PEERS + r]!;
      const withExtra = [...base, extra];
      t0 = performance.now();
      const text = renderInterface({ privateKey: serverKey, listenPort: 51820, peers: withExtra.map((u) => ({ publicKey: u.material.publicKey!, presharedKey: psk, address: u.material.address! })) });
      await host.writeFileAtomic(fullFile, text, 0o600);
      const res = await host.run(['wg', 'syncconf', iface, fullFile], { timeoutMs: 120_000 });
      full.push(performance.now() - t0);
      if (res.code !== 0) throw new Error(`wg syncconf: ${res.stderr}`);
      // Back to the base set (the plugin's view too), untimed.
      await host.run(['wg', 'set', iface, 'peer', extra.material.publicKey!, 'remove']);
      await plugin.apply(state(base));
      t0 = performance.now();
      await plugin.apply(state(withExtra));
      one.push(performance.now() - t0);
      await plugin.apply(state(base));
    }
    const fullMs = median(full);
    const oneMs = median(one);
    bench('wireguard.full_apply_ms', fullMs, 'ms');
    bench('wireguard.one_apply_ms', oneMs, 'ms');
    bench('wireguard.full_vs_one_apply', fullMs / oneMs, 'x');

    // --- poll vs bare dump
    const bare: number[] = [];
    const poll: number[] = [];
    const tracker = createTracker();
    const ledger = new PeerLedger(`wg:${iface}:1`);
    const names = new Map(base.map((u) => [u.material.publicKey!, u.username]));
    const nowSec = () => Math.floor(Date.now() / 1000);
    // Every peer online: the dump as the interface prints it, with each handshake set to now.
    const online = (dump: string) => dump.replace(/^([^\t\n]+\t[^\t\n]+\t[^\t\n]+\t[^\t\n]+\t)0\t/gm, `$1${nowSec()}\t`);
    for (let r = 0; r < ROUNDS + 2; r++) {
      report(`poll vs bare dump, round ${r + 1}/${ROUNDS + 2}`, true);
      t0 = performance.now();
      const b = await host.run(['wg', 'show', iface, 'dump']);
      const bareMs = performance.now() - t0;
      const patched = online(b.stdout);
      t0 = performance.now();
      const d = await host.run(['wg', 'show', iface, 'dump']);
      const dumpMs = performance.now() - t0;
      if (d.code !== 0) throw new Error(d.stderr);
      // The same text the dump printed, made online, through the plugin's ledger and the tracker.
      t0 = performance.now();
      const seen = ledger.observe(patched, nowSec());
      tracker.tick([{ kind: 'status-text', format: 'wg-dump', text: seen.text, scope: ledger.scope, protocol: 'wireguard', serverId: 'main', peerNames: names }]);
      const restMs = performance.now() - t0;
      if (seen.online !== PEERS) throw new Error(`expected ${PEERS} online peers, got ${seen.online}`);
      if (r < 2) continue; // warm-up: the first tick tracks every key for the first time
      bare.push(bareMs);
      poll.push(dumpMs + restMs);
    }
    t0 = performance.now();
    await plugin.pollSessions();
    progress(`wireguard: plugin.pollSessions() as-is (no peer online here) ${(performance.now() - t0).toFixed(1)} ms`);
    const bareMs = median(bare);
    const pollMs = median(poll);
    bench('wireguard.dump_ms', bareMs, 'ms');
    bench('wireguard.poll_ms', pollMs, 'ms');
    bench('wireguard.poll_vs_dump', pollMs / bareMs, 'x');
  } finally {
    report('stopping wireguard-go and removing the namespace');
    // Bounded: a stop that cannot finish must not keep the namespace (and the bench) around.
    await within(plugin?.stop() ?? Promise.resolve(), 30_000, () => 'plugin.stop()').catch((e: Error) => progress(e.message));
    // wireguard-go runs detached (its host keeps it): whatever still runs in the bench's own
    // namespace after a failed stop is ended by pid, or it would keep the namespace alive.
    try {
      for (const pid of execFileSync('ip', ['netns', 'pids', ns], { timeout: 10_000 }).toString().split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    } catch {
      /* no namespace */
    }
    try {
      execFileSync('ip', ['netns', 'del', ns]);
    } catch {
      /* already gone */
    }
    await fs.rm(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  runWireGuardBench().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
