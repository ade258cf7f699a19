import { readFileSync, promises as fs } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { LocalHost } from '../../core/hosts/local-host';
import { logger } from '../../core/logger';
import { startProtocols, type RunningProtocols } from '../../core/protocols/start';
import type { WireGuardPlugin } from '../../plugins/wireguard';
import { createHarness, type Harness } from '../../test/helpers/harness';
import { sshdUnavailableReason, startSshd, type SshdFixture } from '../../test/helpers/sshd';
import { NetLab, until, vpnLabMissing } from '../../test/helpers/vpn-lab';
import { bench, progress } from './report';

/**
 * Nodes for real: three network namespaces with their own sshd, provisioned through the REST
 * API exactly as an operator adds a node (address + password), running the same OpenVPN and
 * WireGuard plugins as the main server (itself a namespace), reached over one veth each.
 *   nodes.sync_vs_local              POST /users bulk_count=1000 with nodes [node_1..3] until the
 *                                    reconciler is idle and every node's interface holds the
 *                                    peers ÷ the same request with nodes [main] until main holds
 *                                    them. Each server goes from the same count to +1000 in
 *                                    both, so the work per server is the same; goal ≤ 3
 *   nodes.idle_control_bytes_per_s   bytes both ways on a node's veth (the panel↔node link)
 *                                    with 1000 users applied there, no changes, the accounting
 *                                    loop at its 5 s tick and the default 30 s health check,
 *                                    over a fixed window, per node; goal ≤ 2048
 * Where the idle bytes go is printed too: the veth bytes of one WireGuard poll, one OpenVPN
 * poll and one health check of a node, each alone.
 */
const USERS = 1000;
const NODES = 3;
const IDLE_WINDOW_S = Number(process.env.POLYGATE_BENCH_IDLE_SECONDS ?? 60);
/** Bound of every "until applied" wait. */
const APPLY_LIMIT_MS = 300_000;

export async function runNodesBench(): Promise<void> {
  const missing = vpnLabMissing([['openvpn', '--version'], ['nft', '--version'], ['wg', '--version'], ['wireguard-go', '--version']]) ?? sshdUnavailableReason();
  if (missing) {
    progress(`nodes: skipped: ${missing}`);
    return;
  }
  // The daemon's log goes to stdout, which carries only BENCH lines; POLYGATE_LOG_LEVEL shows it.
  const previousLevel = logger.level;
  logger.level = process.env.POLYGATE_LOG_LEVEL ?? 'silent';
  const lab = new NetLab();
  // A /16 of our own per run, so a test run beside us never shares addresses.
  const net = `10.${100 + (parseInt(lab.suffix.slice(0, 2), 16) % 100)}`;
  const sshd: SshdFixture[] = [];
  const nodeNs: LocalHost[] = [];
  const veths: string[] = [];
  const nodeIds: number[] = [];
  let h: Harness | undefined;
  let protocols: RunningProtocols | undefined;
  try {
    const main = await lab.addNamespace('main');
    for (let i = 1; i <= NODES; i++) {
      nodeNs.push(await lab.addNamespace(`n${i}`));
      veths.push(lab.linkRoot(`n${i}`, `${net}.${i}.1`, `${net}.${i}.2`));
      sshd.push(await startSshd({ netns: lab.ns(`n${i}`), listenAddress: `${net}.${i}.2`, port: 22, root: true }));
    }
    // A database file, as the daemon runs it (the harness default, :memory:, is one connection).
    h = await createHarness('sqlite', { POLYGATE_DATABASE_URL: `sqlite:${lab.dir}/panel.sqlite`, POLYGATE_DATA_DIR: `${lab.dir}/data`, POLYGATE_PUBLIC_HOST: '10.99.255.1', POLYGATE_OPENVPN_SUBNET_POOL: '10.8.0.0/16' }, { protocols: 'none' });
    const harness = h;
    protocols = await startProtocols(h.core, {
      host: main,
      plugins: ['openvpn', 'wireguard'],
      pluginConfig: { wireguard: { interfacePrefix: `wm${lab.suffix}` } },
      // Production defaults otherwise: 30 s health checks, the reconciler's own debounce.
      // The namespaces share /var/run/wireguard: each node's interface needs a name of its own.
      nodes: { firewall: true, pluginConfigFor: (serverId) => ({ wireguard: { interfacePrefix: `w${serverId.replace('node_', 'n')}${lab.suffix}` } }) },
    });
    const running = protocols;
    const api = (method: 'get' | 'post', p: string, body?: object) => {
      const req = harness.http[method](`/api/v1${p}`).set('X-API-KEY', harness.adminKey);
      return body ? req.send(body) : req;
    };

    // --- provisioning, through the API as an operator does it
    let t0 = performance.now();
    for (let i = 0; i < NODES; i++) {
      h.services.nodes.nodeRoot = `${lab.dir}/node${i + 1}`;
      const res = await api('post', '/nodes', { name: `Bench node ${i + 1}`, ip_address: `${net}.${i + 1}.2`, ssh_username: sshd[i]!.username, ssh_password: sshd[i]!.password });
      if (res.status !== 202) throw new Error(`POST /nodes: ${res.status} ${JSON.stringify(res.body)}`);
      nodeIds.push(res.body.node_id as number);
    }
    await until(async () => (await api('get', '/nodes')).body.nodes.every((n: { status: string }) => n.status !== 'installing'), 'the nodes to finish installing', 180_000, 250);
    for (const n of (await api('get', '/nodes')).body.nodes as Array<{ id: number; status: string; status_message: string | null }>) {
      if (n.status !== 'active') throw new Error(`node ${n.id} is ${n.status}: ${n.status_message}`);
    }
    const serverIds = nodeIds.map((id) => `node_${id}`);
    for (const s of ['main', ...serverIds]) {
      for (const protocol of ['openvpn', 'wireguard'] as const) {
        const p = h.core.plugins.get(protocol, s);
        if (p?.state !== 'available') throw new Error(`${protocol} on ${s} is ${p?.state}: ${p?.reason}`);
      }
    }
    progress(`nodes: ${NODES} nodes provisioned through the API in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    // Peers on a server's WireGuard interface, read on that server itself (not the panel's view).
    const peersOn = async (serverId: string): Promise<number> => {
      const wg = harness.core.plugins.get('wireguard', serverId)!.raw as WireGuardPlugin;
      const ns = serverId === 'main' ? main : nodeNs[serverIds.indexOf(serverId)]!;
      const r = await ns.run(['wg', 'show', wg.describe()[0]!.name, 'peers'], { timeoutMs: 30_000 });
      if (r.code !== 0) throw new Error(`wg show on ${serverId}: ${r.stderr}`);
      return r.stdout.split('\n').filter(Boolean).length;
    };
    const createUntilApplied = async (servers: string[], expected: number): Promise<number> => {
      const start = performance.now();
      const res = await withLimit(Promise.resolve(api('post', '/users', { bulk_count: USERS, enable_wg1: true, nodes: servers })), APPLY_LIMIT_MS, `POST /users for ${servers.join(', ')}`);
      if (res.status !== 200 || res.body.created_users?.length !== USERS) throw new Error(`POST /users: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
      await withLimit(running.reconciler.idle(), APPLY_LIMIT_MS, `${USERS} users to be applied on ${servers.join(', ')}`);
      const ms = performance.now() - start;
      for (const s of servers) {
        const peers = await peersOn(s);
        if (peers !== expected) throw new Error(`${s} holds ${peers} WireGuard peers after the reconciler went idle, expected ${expected}`);
      }
      return ms;
    };

    // --- sync vs local: main first, so the nodes case cannot profit from anything main warmed
    progress(`nodes: creating ${USERS} users on main alone`);
    const localMs = await createUntilApplied(['main'], USERS);
    progress(`nodes: main alone ${(localMs / 1000).toFixed(2)} s; now ${USERS} users on ${NODES} nodes`);
    const syncMs = await createUntilApplied(serverIds, USERS);
    progress(`nodes: ${NODES} nodes ${(syncMs / 1000).toFixed(2)} s`);
    if ((await peersOn('main')) !== USERS) throw new Error('main changed while the nodes were synced');
    bench('nodes.sync_local_ms', localMs, 'ms');
    bench('nodes.sync_3_nodes_ms', syncMs, 'ms');
    bench('nodes.sync_vs_local', syncMs / localMs, 'x');

    // --- where idle bytes go: one of each periodic exchange, alone, on node 1's link
    const bytes = (veth: string) => ['rx_bytes', 'tx_bytes'].reduce((s, f) => s + Number(readFileSync(`/sys/class/net/${veth}/statistics/${f}`, 'utf8')), 0);
    const cost = async (what: string, fn: () => Promise<unknown>) => {
      await new Promise((r) => setTimeout(r, 300)); // let late ACKs of what came before land
      const before = bytes(veths[0]!);
      await withLimit(fn(), 30_000, what);
      await new Promise((r) => setTimeout(r, 300));
      const b = bytes(veths[0]!) - before;
      progress(`nodes: ${what}: ${b} bytes on the link`);
      return b;
    };
    const wgPoll = await cost('one WireGuard poll of node 1', () => harness.core.plugins.get('wireguard', serverIds[0]!)!.instance!.pollSessions());
    const ovpnPoll = await cost('one OpenVPN poll of node 1', () => harness.core.plugins.get('openvpn', serverIds[0]!)!.instance!.pollSessions());
    const health = await cost('one health check of node 1', () => harness.services.nodes.runtime!.checkNode(nodeIds[0]!));
    const tickAlone = await cost('one accounting tick (every server polled), node 1 link', () => harness.core.accounting.tick());
    const quiet = await cost('nothing for 5 s', () => new Promise((r) => setTimeout(r, 5000)));

    // --- idle window: the accounting loop at 5 s, no changes
    if (harness.core.ctx.config.accountingIntervalMs !== 5000) throw new Error(`accounting tick is ${harness.core.ctx.config.accountingIntervalMs} ms, the figure is defined at 5 s`);
    await harness.core.accounting.start();
    progress(`nodes: idle ${IDLE_WINDOW_S} s with the accounting loop at 5 s (after a 6 s settle)`);
    await new Promise((r) => setTimeout(r, 6000));
    const startBytes = veths.map(bytes);
    const perSecond: number[][] = veths.map(() => []);
    let last = startBytes;
    const w0 = performance.now();
    for (let s = 0; s < IDLE_WINDOW_S; s++) {
      await new Promise((r) => setTimeout(r, w0 + (s + 1) * 1000 - performance.now()));
      const now = veths.map(bytes);
      now.forEach((b, i) => perSecond[i]!.push(b - last[i]!));
      last = now;
    }
    const windowS = (performance.now() - w0) / 1000;
    await harness.core.accounting.stop();
    const perNode = last.map((b, i) => (b - startBytes[i]!) / windowS);
    perNode.forEach((b, i) => progress(`nodes: node ${i + 1}: ${b.toFixed(0)} B/s; per second: ${perSecond[i]!.join(' ')}`));
    const mean = perNode.reduce((a, b) => a + b, 0) / perNode.length;
    progress(
      `nodes: expected from the parts: (${wgPoll} + ${ovpnPoll}) B per 5 s tick + ${health} B per 30 s health check = ` +
        `${((wgPoll + ovpnPoll) / 5 + health / 30).toFixed(0)} B/s (a tick alone measured ${tickAlone} B; 5 s of nothing ${quiet} B)`,
    );
    bench('nodes.idle_control_bytes_per_s', mean, 'B/s');
  } finally {
    // Removal, not shutdown: a bench leaves no daemon behind (detach() would keep them serving).
    if (h) {
      await h.core.accounting.stop().catch(() => undefined);
      for (const p of h.core.plugins.available()) await withLimit(p.instance.stop(), 20_000, `${p.id} to stop`).catch(() => undefined);
    }
    await protocols?.stop().catch(() => undefined);
    await h?.close().catch(() => undefined);
    for (const s of sshd) await s.stop();
    await lab.endProcesses();
    for (const prefix of ['wm', ...nodeIds.map((id) => `wn${id}`)]) await fs.rm(`/var/run/wireguard/${prefix}${lab.suffix}0.sock`, { force: true });
    await lab.cleanup();
    logger.level = previousLevel;
  }
}

/** `promise`, or a rejection naming `what` after `ms`. */
async function withLimit<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

if (require.main === module) {
  runNodesBench().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
