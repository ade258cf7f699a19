import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { NodeRecord } from '../../core/db';
import { LocalHost } from '../../core/hosts/local-host';
import type { DesiredState, ProtocolId } from '../../core/plugin/types';
import { startProtocols, type RunningProtocols } from '../../core/protocols/start';
import { APPLIED_DIGEST_FILE } from '../../core/reconciler/reconciler';
import { addScriptedPlugin, type ScriptedPlugin } from '../fakes/scripted-plugin';
import { createHarness, type Harness } from '../helpers/harness';

const PROTOCOLS: ProtocolId[] = ['openvpn', 'wireguard'];

/**
 * Which hosts a change reaches, on a real database with scripted plugins (TEST DOUBLES, no
 * daemon) on the main server and three nodes whose "hosts" are directories of this machine:
 * a change reaches exactly the plugins whose state it changes, hosts are applied side by side,
 * a bulk create is answered before any apply, and the digest each host stores of what it took
 * lets a drift check skip hosts that hold it and re-apply in full those that do not.
 */
describe('reconciler targeting', function () {
  this.timeout(60_000);
  let h: Harness;
  let protocols: RunningProtocols;
  let dir: string;
  let nodes: string[];
  /** `protocol@server` → the scripted plugin there. */
  let plugins: Map<string, ScriptedPlugin>;
  /** Applies per plugin id, counted from the last `mark()`. */
  let counted: Map<string, number>;
  const servers = () => ['main', ...nodes];

  const mark = () => {
    counted = new Map([...plugins].map(([id, p]) => [id, p.applied.length]));
  };
  /** Plugin ids applied since the last `mark()`, with how often. */
  const appliedSince = (): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const [id, p] of plugins) {
      const n = p.applied.length - (counted.get(id) ?? 0);
      if (n > 0) out[id] = n;
    }
    return out;
  };
  const digestFile = (server: string, protocol: ProtocolId) => path.join(dir, server, protocol, APPLIED_DIGEST_FILE);
  const settle = () => protocols.reconciler.idle();
  const api = () => h.http;

  async function register(server: string): Promise<void> {
    for (const protocol of PROTOCOLS) plugins.set(`${protocol}@${server}`, await addScriptedPlugin(h.core.plugins, protocol, server, { loginless: protocol === 'wireguard' }));
  }

  beforeEach(async () => {
    h = await createHarness('sqlite', {}, { protocols: 'none' });
    dir = mkdtempSync(path.join(tmpdir(), 'polygate-targeting-'));
    nodes = [];
    for (const name of ['A', 'B', 'C']) {
      const node = await NodeRecord.create({ name: `Node ${name}`, ip_address: `198.51.100.${nodes.length + 20}`, ssh_secret: null, communication_method: null, status_message: null, status: 'active' } as never);
      nodes.push(`node_${node.id}`);
    }
    plugins = new Map();
    for (const s of servers()) await register(s);
    protocols = await startProtocols(h.core, {
      host: new LocalHost(),
      plugins: [],
      reconciler: {
        debounceMs: 5,
        initialBackoffMs: 20,
        driftCheckMs: 0,
        slowHostMs: 1000,
        // The main server's place is known from the start, as the daemon gives it.
        digestPlaces: { main: { host: new LocalHost(), stateDirOf: (p) => path.join(dir, 'main', p) } },
      },
    });
    // Each node keeps its digests in its own directory, as a node keeps them under its root.
    for (const s of nodes) protocols.reconciler.placeDigests(s, { host: new LocalHost({ id: s }), stateDirOf: (p) => path.join(dir, s, p) });
    // The first pass ran before the places were known (a node whose panel predates the digests):
    // the first drift check finds none there, applies once and stores them.
    protocols.reconciler.checkDrift();
    await settle();
    mark();
  });
  afterEach(async () => {
    await protocols.stop();
    await h.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const createUser = async (body: Record<string, unknown>, key = h.adminKey) => {
    const res = await api().post('/api/v1/users').set('X-API-KEY', key).send({ enable_wg1: true, ...body });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    return res;
  };

  it('a change of a user pinned to node A applies only node A’s plugins', async () => {
    const [a] = nodes as [string];
    await createUser({ username: 'pinned', nodes: [a] });
    await settle();
    expect(appliedSince()).to.deep.equal({ [`openvpn@${a}`]: 1, [`wireguard@${a}`]: 1 });
    mark();
    const res = await api().put('/api/v1/users/pinned').set('X-API-KEY', h.adminKey).send({ max_clients: 3 });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    await settle();
    // max_clients reaches the login-less daemon (its per-user cap); the gating one asks at login.
    expect(appliedSince()).to.deep.equal({ [`wireguard@${a}`]: 1 });
    mark();
    await api().post('/api/v1/users/pinned/toggle').set('X-API-KEY', h.adminKey).send();
    await settle();
    expect(appliedSince(), 'a disabled user leaves the login-less daemon on A only').to.deep.equal({ [`wireguard@${a}`]: 1 });
  });

  it('a reseller’s allowed_servers change reaches only the servers it adds or removes', async () => {
    const [a, b, c] = nodes as [string, string, string];
    const created = await api().post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey).send({ username: 'shop', password: 'shop-pass', allowed_servers: ['main', b] });
    expect(created.status, JSON.stringify(created.body)).to.equal(200);
    const { id, api_key: resellerKey } = created.body.sub_admin as { id: number; api_key: string };
    await settle();
    mark();
    await createUser({ username: 'reseller_user' }, resellerKey);
    await settle();
    expect(Object.keys(appliedSince()).sort()).to.deep.equal(['openvpn@main', `openvpn@${b}`, 'wireguard@main', `wireguard@${b}`]);
    mark();
    const moved = await api().put(`/api/v1/sub_admins/${id}`).set('X-API-KEY', h.adminKey).send({ allowed_servers: ['main', c] });
    expect(moved.status, JSON.stringify(moved.body)).to.equal(200);
    await settle();
    expect(Object.keys(appliedSince()).sort(), `main keeps reseller_user; ${a} never had it`).to.deep.equal([`openvpn@${b}`, `openvpn@${c}`, `wireguard@${b}`, `wireguard@${c}`]);
    expect(plugins.get(`wireguard@${b}`)!.allowedUsers()).to.deep.equal([]);
    expect(plugins.get(`wireguard@${c}`)!.allowedUsers()).to.deep.equal(['reseller_user']);
  });

  it('PUT /nodes/{id} with a new port re-applies only that node’s listener plugin', async () => {
    const [, b] = nodes as [string, string];
    const res = await api().put(`/api/v1/nodes/${b.slice('node_'.length)}`).set('X-API-KEY', h.adminKey).send({ openvpn_port: 1195 });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    await settle();
    expect(appliedSince()).to.deep.equal({ [`openvpn@${b}`]: 1 });
    expect(plugins.get(`openvpn@${b}`)!.applied.at(-1)!.listeners).to.deep.equal([{ port: 1195, protocol: 'udp' }]);
  });

  it('hosts are applied side by side: three slow nodes cost about one, each host’s plugins in turn', async () => {
    const delayMs = 300;
    let inFlight = 0;
    let most = 0;
    const perServer = new Map<string, number>();
    let sameHostOverlap = false;
    for (const p of plugins.values()) {
      const original = p.apply.bind(p);
      p.apply = async (state: DesiredState) => {
        inFlight++;
        most = Math.max(most, inFlight);
        const here = (perServer.get(p.serverId) ?? 0) + 1;
        perServer.set(p.serverId, here);
        if (here > 1) sameHostOverlap = true;
        try {
          await new Promise((r) => setTimeout(r, delayMs));
          await original(state);
        } finally {
          inFlight--;
          perServer.set(p.serverId, perServer.get(p.serverId)! - 1);
        }
      };
    }
    const started = Date.now();
    const res = await createUser({ username: 'everywhere' });
    const answeredMs = Date.now() - started;
    await settle();
    const passMs = Date.now() - started;
    expect(Object.keys(appliedSince())).to.have.length(plugins.size);
    // Sequential: 4 servers × 2 plugins × 300 ms = 2.4 s. Parallel: one server's two plugins.
    expect(answeredMs, 'the API answer does not wait for any apply').to.be.below(delayMs);
    expect(res.body.success).to.equal(true);
    expect(passMs).to.be.below(4 * delayMs + 500);
    expect(most).to.equal(servers().length);
    expect(sameHostOverlap, 'one host’s plugins never overlap').to.equal(false);
    console.log(`      4 servers × 2 plugins × ${delayMs} ms applies: answered in ${answeredMs} ms, pass done in ${passMs} ms`);
  });

  it('a hung node does not hold back the others: they get their changes, it gets the newest state once it answers', async () => {
    const [a, b] = nodes as [string, string];
    const hung = plugins.get(`wireguard@${b}`)!;
    const original = hung.apply.bind(hung);
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    hung.apply = async (state: DesiredState) => {
      await released;
      await original(state);
    };
    await createUser({ username: 'first_everywhere' });
    // The pass waits for node B at most slowHostMs (1 s here), then goes on without it.
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, 1200));
    expect(JSON.stringify((await api().get('/api/v1/health').set('X-API-KEY', h.adminKey)).body)).to.contain(`wireguard@${b}: still applying`);
    await createUser({ username: 'second_on_a', nodes: [a] });
    const end = Date.now() + 3000;
    while (!plugins.get(`wireguard@${a}`)!.allowedUsers().includes('second_on_a') && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    expect(plugins.get(`wireguard@${a}`)!.allowedUsers()).to.include('second_on_a');
    expect(Date.now() - t0, 'A did not wait for B').to.be.below(2500);
    expect(hung.applied.length - counted.get(`wireguard@${b}`)!).to.equal(0);
    // A node's own job (provisioning, PUT sync) waits for it, past the pass's limit.
    const settledB = protocols.reconciler.hostSettled(b).then(() => hung.allowedUsers());
    release();
    expect(await settledB).to.deep.equal(['first_everywhere']);
    await settle();
    expect(hung.allowedUsers()).to.deep.equal(['first_everywhere']);
    expect(protocols.reconciler.syncStateOf(`wireguard@${b}`)).to.deep.equal({ state: 'ok' });
  });

  it('a node that keeps failing does not delay the others’ changes by its retry backoff', async () => {
    const [a, b] = nodes as [string, string];
    plugins.get(`openvpn@${b}`)!.applyFailure = new Error('node unreachable');
    await createUser({ username: 'fails_on_b' });
    // Let the retries back off past a second.
    await new Promise((r) => setTimeout(r, 1500));
    const t0 = Date.now();
    await createUser({ username: 'prompt_on_a', nodes: [a] });
    const end = Date.now() + 5000;
    while (!plugins.get(`wireguard@${a}`)!.allowedUsers().includes('prompt_on_a') && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    expect(Date.now() - t0).to.be.below(500);
    plugins.get(`openvpn@${b}`)!.applyFailure = undefined;
    await settle();
  });

  it('a bulk create of 1000 users is answered before any apply and applied in one coalesced pass', async () => {
    const applyStarts: number[] = [];
    for (const p of plugins.values()) {
      const original = p.apply.bind(p);
      p.apply = async (state: DesiredState) => {
        applyStarts.push(Date.now());
        await new Promise((r) => setTimeout(r, 50));
        await original(state);
      };
    }
    const before = protocols.reconciler.stats();
    const res = await api().post('/api/v1/users').set('X-API-KEY', h.adminKey).send({ bulk_count: 1000, enable_wg1: true });
    const answeredAt = Date.now();
    expect(res.status, JSON.stringify(res.body).slice(0, 300)).to.equal(200);
    // More changes while the pass runs join one further pass, not one each.
    for (let i = 0; i < 5; i++) await api().put(`/api/v1/users/${(res.body.created_users as string[])[i]}`).set('X-API-KEY', h.adminKey).send({ max_clients: 2 + i });
    await settle();
    const after = protocols.reconciler.stats();
    expect(applyStarts.length).to.be.greaterThan(0);
    expect(Math.min(...applyStarts), 'no apply before the answer').to.be.at.least(answeredAt);
    for (const [id, n] of Object.entries(appliedSince())) expect(n, id).to.be.at.most(3);
    expect(after.passes - before.passes).to.be.at.most(4);
    for (const s of servers()) expect(plugins.get(`wireguard@${s}`)!.allowedUsers(), s).to.have.length(1000);
    console.log(`      bulk 1000: ${after.passes - before.passes} passes, ${after.applies - before.applies} applies over ${plugins.size} plugins`);
  });

  it('a drift check skips hosts whose stored digest matches and applies in full, once, where it differs', async () => {
    await createUser({ username: 'drifter' });
    await settle();
    for (const s of servers()) for (const p of PROTOCOLS) expect(existsSync(digestFile(s, p)), `${p}@${s}`).to.equal(true);
    mark();
    protocols.reconciler.checkDrift();
    await settle();
    expect(appliedSince(), 'every node holds what it took').to.deep.equal({});

    const [a, b, c] = nodes as [string, string, string];
    writeFileSync(digestFile(b, 'wireguard'), 'f'.repeat(64) + '\n');
    rmSync(digestFile(c, 'openvpn'));
    writeFileSync(digestFile('main', 'openvpn'), 'e'.repeat(64) + '\n');
    const driftBefore = protocols.reconciler.stats().driftApplies;
    protocols.reconciler.checkDrift();
    await settle();
    expect(appliedSince()).to.deep.equal({ 'openvpn@main': 1, [`wireguard@${b}`]: 1, [`openvpn@${c}`]: 1 });
    expect(protocols.reconciler.stats().driftApplies - driftBefore).to.equal(3);
    expect(readFileSync(digestFile(b, 'wireguard'), 'utf8')).to.equal(readFileSync(digestFile(a, 'wireguard'), 'utf8'));

    // A node that changes (here: back from an outage) is checked the same way, alone.
    mark();
    writeFileSync(digestFile(a, 'openvpn'), '0'.repeat(64) + '\n');
    h.core.ctx.events.emit('nodes.changed', { nodeId: Number(a.slice('node_'.length)) });
    await settle();
    expect(appliedSince()).to.deep.equal({ [`openvpn@${a}`]: 1 });
  });

  it('after a restart each fresh plugin instance gets exactly one apply (it adopts its daemons there), the others none', async () => {
    await createUser({ username: 'kept' });
    await settle();
    const [a] = nodes as [string];
    // A node re-attached after an outage, or a panel restart: new instances for the same plugins.
    const old = plugins.get(`wireguard@${a}`)!;
    await register(a);
    expect(plugins.get(`wireguard@${a}`)).to.not.equal(old);
    mark();
    await protocols.reconciler.syncNow();
    await settle();
    expect(appliedSince()).to.deep.equal({ [`openvpn@${a}`]: 1, [`wireguard@${a}`]: 1 });
    expect(plugins.get(`wireguard@${a}`)!.allowedUsers()).to.deep.equal(['kept']);
    mark();
    await protocols.reconciler.syncNow();
    expect(appliedSince()).to.deep.equal({});
  });

  it('1000 users × 4 servers × 4 protocols: a pass without change applies nothing, pinning one user touches only the hosts that lose it', async () => {
    const more: ScriptedPlugin[] = [];
    for (const s of servers()) for (const protocol of ['l2tp', 'cisco'] as ProtocolId[]) more.push(await addScriptedPlugin(h.core.plugins, protocol, s, { loginless: true }));
    const all = () => [...plugins.values(), ...more];
    const res = await api().post('/api/v1/users').set('X-API-KEY', h.adminKey).send({ bulk_count: 1000, enable_wg1: true, enable_l2tp: true, enable_cisco: true });
    expect(res.status).to.equal(200);
    await settle();
    const applies = () => all().reduce((n, p) => n + p.applied.length, 0);
    let before = applies();
    let t0 = performance.now();
    await protocols.reconciler.syncNow();
    const idleMs = performance.now() - t0;
    expect(applies() - before).to.equal(0);
    const [a] = nodes as [string];
    const user = (res.body.created_users as string[])[0]!;
    const counts = new Map(all().map((p) => [p, p.applied.length]));
    t0 = performance.now();
    await api().put(`/api/v1/users/${user}`).set('X-API-KEY', h.adminKey).send({ nodes: [a] });
    await settle();
    const pinMs = performance.now() - t0;
    const touched = all()
      .filter((p) => p.applied.length > counts.get(p)!)
      .map((p) => `${p.protocol}@${p.serverId}×${p.applied.length - counts.get(p)!}`)
      .sort();
    const expected = all()
      .filter((p) => p.serverId !== a)
      .map((p) => `${p.protocol}@${p.serverId}×1`)
      .sort();
    expect(touched, 'every protocol on the three servers that lost the user, once; nothing on A').to.deep.equal(expected);
    for (const p of all().filter((q) => q.serverId !== a)) expect(p.allowedUsers(), `${p.protocol}@${p.serverId}`).to.not.include(user);
    expect(idleMs).to.be.below(5000);
    console.log(`      16 plugins × 1000 users: a pass without change ${idleMs.toFixed(0)} ms; a pin (12 applies) answered and applied in ${pinMs.toFixed(0)} ms`);
  });

  it('update_ipsec_psk is applied on the nodes and counts only the nodes whose plugins all took it', async () => {
    const [, b] = nodes as [string, string];
    plugins.get(`openvpn@${b}`)!.applyFailure = new Error('node unreachable');
    const res = await api().post('/api/v1/update_ipsec_psk').set('X-API-KEY', h.adminKey).send({ new_psk: 'TargetingPSK_2026' });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    expect(res.body.message).to.equal('IPsec PSK updated locally and on 2 nodes.');
    for (const s of servers()) expect(plugins.get(`wireguard@${s}`)!.applied.at(-1)!.settings.ipsec_psk, s).to.equal('TargetingPSK_2026');
    plugins.get(`openvpn@${b}`)!.applyFailure = undefined;
  });
});
