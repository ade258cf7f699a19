import { expect } from 'chai';
import { promises as fs } from 'node:fs';
import type { LocalHost } from '../../core/hosts/local-host';
import type { DesiredState, DesiredUser } from '../../core/plugin/types';
import { generateWireGuardKeyPair } from '../../core/protocols/wireguard-material';
import wireguardPlugin, { type WireGuardPlugin } from '../../plugins/wireguard';
import { parseDump } from '../../plugins/wireguard/dump';
import { conformanceContext } from '../conformance/plugin-conformance';
import { requirePrerequisite } from '../helpers/prereq';
import { NetLab, vpnLabMissing } from '../helpers/vpn-lab';

/*
 * apply() against a real wireguard-go interface (no client): after any sequence of states the
 * interface holds exactly the wanted peers with their preshared keys and addresses, and the
 * keys on disk are private.
 */
describe('WireGuard apply on a real interface', function () {
  this.timeout(60_000);
  const lab = new NetLab();
  let host: LocalHost;
  let plugin: WireGuardPlugin;
  const users = Array.from({ length: 5 }, (_, i) => ({ username: `wgapply${i}`, pair: generateWireGuardKeyPair(), address: `10.68.0.${i + 2}` }));
  const desired = (list: Array<{ username: string; pair: { publicKey: string }; address: string }>): DesiredState => ({
    users: list.map((u): DesiredUser => ({ username: u.username, material: { publicKey: u.pair.publicKey, address: u.address } })),
    listeners: [{ port: 51820, protocol: 'udp' }],
    settings: {},
  });
  const peers = async () => {
    const r = await host.run(['wg', 'show', plugin.describe()[0]!.name, 'dump']);
    return new Map(parseDump(r.stdout).peers.map((p) => [p.publicKey, p]));
  };
  const expectExactly = async (list: typeof users) => {
    const now = await peers();
    expect([...now.keys()].sort()).to.deep.equal(list.map((u) => u.pair.publicKey).sort());
    for (const u of list) expect(now.get(u.pair.publicKey)!.allowedIps).to.equal(`${u.address}/32`);
  };

  before(async function () {
    const missing = vpnLabMissing([['wg', '--version'], ['wireguard-go', '--version']]);
    requirePrerequisite(this, missing === null, missing ?? '');
    host = await lab.addNamespace('wgap');
    const config = wireguardPlugin.configSchema.parse({ implementation: 'userspace', interfacePrefix: `wga${lab.suffix}` });
    plugin = wireguardPlugin.create(conformanceContext({ config, host, stateDir: `${lab.dir}/state`, clientPool: '10.68.0.0/16', serverId: 'main' })) as WireGuardPlugin;
  });
  after(async () => {
    await plugin?.stop();
    await lab.cleanup();
  });

  it('adds, removes, moves an address and renames, always ending with exactly the wanted peers', async () => {
    await plugin.apply(desired(users.slice(0, 3)));
    await expectExactly(users.slice(0, 3));
    await plugin.apply(desired([users[0]!, users[2]!, users[3]!]));
    await expectExactly([users[0]!, users[2]!, users[3]!]);
    const moved = { ...users[2]!, address: '10.68.1.9' };
    await plugin.apply(desired([users[0]!, moved, users[3]!]));
    await expectExactly([users[0]!, moved, users[3]!]);
    const renamed = { ...users[0]!, username: 'wgapply_renamed' };
    await plugin.apply(desired([renamed, moved, users[3]!]));
    await expectExactly([renamed, moved, users[3]!]);
    const names = (await plugin.pollSessions()) as { peerNames: ReadonlyMap<string, string> };
    expect(names.peerNames.get(users[0]!.pair.publicKey)).to.equal('wgapply_renamed');
    await plugin.apply(desired([]));
    await expectExactly([]);
  });

  it('refuses a second user on an address already held, and an address outside the pool', async () => {
    const clash = { ...users[4]!, address: users[1]!.address };
    const outside = { ...users[3]!, address: '10.99.0.5' };
    await plugin.apply(desired([users[1]!, clash, outside]));
    await expectExactly([users[1]!]);
  });

  it('a disconnected user comes back with the next applied state; preshared keys stay per public key', async () => {
    await plugin.apply(desired(users.slice(0, 2)));
    const pskBefore = (await peers()).get(users[0]!.pair.publicKey)!.presharedKey;
    await plugin.disconnect({ username: users[0]!.username });
    await expectExactly([users[1]!]);
    await plugin.apply(desired(users.slice(0, 3)));
    await expectExactly(users.slice(0, 3));
    expect((await peers()).get(users[0]!.pair.publicKey)!.presharedKey, 'same key, same psk').to.equal(pskBefore);
    expect((await peers()).get(users[1]!.pair.publicKey)!.presharedKey).to.not.equal(pskBefore);
  });

  it('keeps the server key and preshared keys private (0600)', async () => {
    expect((await fs.stat(`${lab.dir}/state/server.key`)).mode & 0o777).to.equal(0o600);
    const shards = await fs.readdir(`${lab.dir}/state/psk`);
    expect(shards.length).to.be.greaterThan(0);
    for (const s of shards) expect((await fs.stat(`${lab.dir}/state/psk/${s}`)).mode & 0o777, s).to.equal(0o600);
  });
});
