import { expect } from 'chai';
import { existsSync, promises as fs } from 'node:fs';
import { parseStatusText, type DesiredState, type DesiredUser } from '../../core';
import type { LocalHost } from '../../core/hosts/local-host';
import type { SessionEnded, SessionPoll } from '../../core/plugin/types';
import { generateWireGuardKeyPair } from '../../core/protocols/wireguard-material';
import wireguardPlugin, { type WireGuardPlugin } from '../../plugins/wireguard';
import { parseDump } from '../../plugins/wireguard/dump';
import { conformanceContext } from '../conformance/plugin-conformance';
import { startWgClient, type WgTestClient } from '../fixtures/wireguard/wg-client';
import { requirePrerequisite } from '../helpers/prereq';
import { NetLab, ping, until, vpnLabMissing } from '../helpers/vpn-lab';

/*
 * The WireGuard plugin outlives the panel, with the real thing: wireguard-go in a server
 * namespace this suite creates and a real wireguard-go client in another (veth 10.97.1.0/24).
 * Proves: an instance that detaches leaves wireguard-go, the interface and its peers running; a
 * second instance on the same host and state dir adopts the same process (same pid), re-creates
 * nothing (the client's handshake stays the one it had, pings keep answering across the hand-
 * over), polls the same session key with counters that kept growing, reports nothing ended, and
 * applies a changed state by adding and removing only the differing peers. wireguard-go killed
 * from outside is restarted by that instance, the open session ends with the counters read
 * last, and after the client's new handshake its session carries the new run's epoch with
 * counters from zero. stop() ends the daemon and removes the interface, also stop() by an
 * instance that never applied, of a daemon an earlier instance left running. Skips (printing why)
 * without root or binaries.
 */

const SRV_IP = '10.97.1.1';
const CLI_IP = '10.97.1.2';
const POOL = '10.69.0.0/16';
const TUN_SERVER_IP = '10.69.0.1';

const alive = (pid: number) => fs.readFile(`/proc/${pid}/stat`, 'utf8').then((s) => !/\) Z /.test(s), () => false);
const sessionsOf = (poll: SessionPoll) => {
  if (poll.kind !== 'status-text') throw new Error(`poll kind ${poll.kind}`);
  return poll.texts.flatMap((t) =>
    parseStatusText({ format: 'wg-dump', protocol: 'wireguard', text: t.text, peerNames: poll.peerNames }).sessions.map((s) => ({ ...s, key: `${t.scope}:${s.id}` })),
  );
};

describe('WireGuard daemons outlive the panel (real wireguard-go in namespaces)', function () {
  this.timeout(180_000);
  const lab = new NetLab();
  let server: LocalHost;
  let clientHost: LocalHost;
  let client: WgTestClient | undefined;
  const instances: WireGuardPlugin[] = [];
  const ended: SessionEnded[] = [];
  const pairs = [generateWireGuardKeyPair(), generateWireGuardKeyPair(), generateWireGuardKeyPair()];
  const users: DesiredUser[] = pairs.map((p, i) => ({ username: `wgadopt${i}`, material: { publicKey: p.publicKey, address: `10.69.0.${i + 2}` } }));
  const state = (list: DesiredUser[]): DesiredState => ({ users: list, listeners: [{ port: 51820, protocol: 'udp' }], settings: {} });

  const create = (): WireGuardPlugin => {
    const config = wireguardPlugin.configSchema.parse({ implementation: 'userspace', interfacePrefix: `wgd${lab.suffix}`, restartInitialMs: 200 });
    const ctx = conformanceContext({ config, host: server, stateDir: `${lab.dir}/state`, clientPool: POOL, serverId: 'main' });
    const instance = wireguardPlugin.create({ ...ctx, sessionEnded: async (e) => void ended.push(e) }) as WireGuardPlugin;
    instances.push(instance);
    return instance;
  };
  const ifaceName = () => `wgd${lab.suffix}0`;
  const peersOnInterface = async () => {
    const r = await server.run(['wg', 'show', ifaceName(), 'dump']);
    return parseDump(r.stdout).peers.map((p) => p.publicKey).sort();
  };
  const sessionOf = async (plugin: WireGuardPlugin) => sessionsOf(await plugin.pollSessions()).find((s) => s.username === users[0]!.username);

  before(async function () {
    const missing = vpnLabMissing([['wg', '--version'], ['wireguard-go', '--version']]);
    requirePrerequisite(this, missing === null, missing ?? '');
    server = await lab.addNamespace('wgds');
    clientHost = await lab.addNamespace('wgdc');
    lab.link('wgds', SRV_IP, 'wgdc', CLI_IP);
  });

  after(async () => {
    await client?.stop();
    for (const i of instances) await i.stop().catch(() => undefined);
    // Whatever a failed test left running in the lab's namespaces (by pid), then the lab.
    await lab.endProcesses();
    await lab.cleanup();
  });

  it('a detached daemon is adopted with its peers, handshakes, counters and session keys; a changed state changes only the differing peers', async () => {
    const a = create();
    await a.apply(state(users.slice(0, 2)));
    const text = await a.renderClientConfig({ username: users[0]!.username, material: { ...users[0]!.material, privateKey: pairs[0]!.privateKey } }, [
      { host: SRV_IP, port: 51820, protocol: 'udp' },
    ]);
    client = await startWgClient(lab, clientHost, `wgdk${lab.suffix}`, text, POOL);
    expect(await ping(clientHost, TUN_SERVER_IP, 5), 'ping through the tunnel').to.equal(true);
    await until(async () => (await sessionOf(a)) !== undefined, 'the session in the first poll', 10_000);
    const before = (await sessionOf(a))!;
    const pid = a.describe()[0]!.pid!;
    const handshake = (await client.counters()).handshake;
    expect(handshake).to.be.greaterThan(0);

    // Pings span the hand-over: 30 at 0.2 s, started before detach and ending after adoption.
    const pinging = clientHost.run(['ping', '-n', '-q', '-c', '30', '-i', '0.2', '-W', '2', TUN_SERVER_IP], { timeoutMs: 60_000 });
    await new Promise((r) => setTimeout(r, 1000));
    await a.detach();
    expect(await alive(pid), 'wireguard-go still runs after detach').to.equal(true);
    expect(await peersOnInterface(), 'the peers stay on the interface').to.deep.equal([pairs[0]!.publicKey, pairs[1]!.publicKey].sort());
    expect((await a.pollSessions()) as { texts: unknown[] }).to.deep.include({ texts: [] });

    const b = create();
    await b.apply(state(users.slice(0, 2)));
    expect(b.describe()[0]!.pid, 'the same wireguard-go, adopted').to.equal(pid);
    const adopted = (await sessionOf(b))!;
    expect(adopted, 'the session in the adopting poll').to.not.equal(undefined);
    expect(adopted.key, 'the same session key').to.equal(before.key);
    expect(adopted.rxBytes).to.be.at.least(before.rxBytes);
    expect(adopted.txBytes).to.be.at.least(before.txBytes);
    const pinged = await pinging;
    const received = Number(/(\d+) received/.exec(pinged.stdout)?.[1] ?? -1);
    expect(received, `pings across the hand-over: ${pinged.stdout.trim()}`).to.be.at.least(29);
    const later = (await sessionOf(b))!;
    expect(later.key).to.equal(before.key);
    expect(later.rxBytes, 'counters continue').to.be.greaterThan(adopted.rxBytes);
    expect((await client.counters()).handshake, 'no new handshake: the old session keys still serve').to.equal(handshake);
    expect(ended, 'nothing ended across the hand-over').to.deep.equal([]);

    // A changed state: one peer goes, one comes; the connected one is untouched.
    await b.apply(state([users[0]!, users[2]!]));
    expect(await peersOnInterface()).to.deep.equal([pairs[0]!.publicKey, pairs[2]!.publicKey].sort());
    expect(await ping(clientHost, TUN_SERVER_IP, 3)).to.equal(true);
    expect((await client.counters()).handshake, 'the connected peer was not re-created').to.equal(handshake);
    expect((await sessionOf(b))!.key).to.equal(before.key);
    expect(ended.filter((e) => e.session.username === users[0]!.username), 'the connected peer did not end').to.deep.equal([]);
  });

  it('wireguard-go killed from outside is restarted: the open session ends with the last counters read, the next one carries the new epoch', async () => {
    const b = instances[instances.length - 1]!;
    const oldPid = b.describe()[0]!.pid!;
    const oldScope = b.describe()[0]!.scope;
    const last = (await sessionOf(b))!;
    process.kill(oldPid, 'SIGKILL');
    await until(async () => !(await alive(oldPid)), 'the old wireguard-go to go', 5_000);
    await until(() => b.describe()[0]?.ready === true && b.describe()[0]!.pid !== oldPid && b.describe()[0]!.pid !== undefined, 'a new run, configured', 20_000);
    const fin = ended.find((e) => e.session.sessionKey === last.key);
    expect(fin, 'the open session ended').to.not.equal(undefined);
    expect(fin!.reason).to.equal('daemon-exited');
    expect(fin!.session.rxBytes).to.be.at.least(last.rxBytes);
    const newScope = b.describe()[0]!.scope;
    expect(newScope).to.not.equal(oldScope);
    expect(newScope.startsWith(`wg:${ifaceName()}:${b.describe()[0]!.pid}.`), `scope ${newScope} names the new run`).to.equal(true);
    expect(await peersOnInterface(), 'the restarted interface got every wanted peer').to.deep.equal([pairs[0]!.publicKey, pairs[2]!.publicKey].sort());
    // The client notices the lost session (no answer for ~15 s) and handshakes again.
    await until(() => ping(clientHost, TUN_SERVER_IP, 1), 'the client to handshake with the new run', 60_000, 500);
    await until(async () => (await sessionOf(b)) !== undefined, 'the session of the new run', 10_000);
    const fresh = (await sessionOf(b))!;
    expect(fresh.key.startsWith(`${newScope}:`), fresh.key).to.equal(true);
    expect(fresh.rxBytes, 'counters of the new run start from zero').to.be.lessThan(last.rxBytes + fin!.session.rxBytes);
    expect(fresh.rxBytes).to.be.lessThan(20_000);
  });

  it('stop() ends the daemon and removes the interface', async () => {
    const b = instances[instances.length - 1]!;
    const pid = b.describe()[0]!.pid!;
    await b.stop();
    expect(await alive(pid)).to.equal(false);
    expect((await server.run(['ip', 'link', 'show', ifaceName()])).code, 'interface gone').to.not.equal(0);
    expect(existsSync(`/var/run/wireguard/${ifaceName()}.sock`), 'socket gone').to.equal(false);
  });
  it('stop() by an instance that never applied ends a wireguard-go an earlier instance left running', async () => {
    const d = create();
    await d.apply(state([users[0]!]));
    const pid = d.describe()[0]!.pid!;
    await d.detach();
    expect(await alive(pid)).to.equal(true);
    const e = create();
    await e.stop();
    expect(await alive(pid), 'the left daemon was ended').to.equal(false);
    expect((await server.run(['ip', 'link', 'show', ifaceName()])).code, 'interface gone').to.not.equal(0);
  });
});
