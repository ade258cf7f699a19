import { randomBytes } from 'node:crypto';
import type { LocalHost } from '../../core/hosts/local-host';
import type { DesiredUser } from '../../core/plugin/types';
import { generateWireGuardKeyPair } from '../../core/protocols/wireguard-material';
import wireguardPlugin, { type WireGuardPlugin } from '../../plugins/wireguard';
import { conformanceContext, describePluginConformance, type ConformanceInstance } from '../conformance/plugin-conformance';
import { startWgClient } from '../fixtures/wireguard/wg-client';
import { NetLab, ping, vpnLabMissing } from '../helpers/vpn-lab';

/*
 * The platform's conformance suite on the real plugin: wireguard-go in a server namespace, and
 * for `connect` a real wireguard-go client per user in its own namespace, configured from the
 * config the plugin renders. Interface names carry a random suffix (UAPI sockets are shared by
 * every namespace).
 */
const POOL = '10.67.0.0/16';
const PORT = 51820;
const pairs = [generateWireGuardKeyPair(), generateWireGuardKeyPair()];
const users: [DesiredUser, DesiredUser] = [
  { username: 'wgconf_a', material: { publicKey: pairs[0]!.publicKey, address: '10.67.0.2' } },
  { username: 'wgconf_b', material: { publicKey: pairs[1]!.publicKey, address: '10.67.0.3' } },
];
const privateOf = new Map(pairs.map((p) => [p.publicKey, p.privateKey]));

const lab = new NetLab();
let server: LocalHost | undefined;
const clientHosts: LocalHost[] = [];
let labReady: Promise<void> | undefined;
let created = 0;
const missing = vpnLabMissing([['wg', '--version'], ['wireguard-go', '--version']]);

async function ensureLab(): Promise<void> {
  labReady ??= (async () => {
    server = await lab.addNamespace('wgcs');
    for (const [i, role] of ['wgca', 'wgcb'].entries()) {
      clientHosts.push(await lab.addNamespace(role));
      lab.link('wgcs', `10.98.${i + 1}.1`, role, `10.98.${i + 1}.2`);
    }
  })();
  return labReady;
}

describePluginConformance({
  name: 'wireguard (real wireguard-go in namespaces)',
  definition: wireguardPlugin as never,
  missing: () => missing,
  brokenConfig: { implementation: 'userspace', wireguardGoPath: '/nonexistent/wireguard-go' },
  users,
  listeners: [{ port: PORT, protocol: 'udp' }],
  settleMs: 15_000,
  async create(config = {}) {
    await ensureLab();
    const n = ++created;
    const parsed = wireguardPlugin.configSchema.parse({ interfacePrefix: `wgt${lab.suffix}${n % 10}`, startTimeoutMs: 10_000, ...config });
    const instance = wireguardPlugin.create(conformanceContext({ config: parsed, host: server!, stateDir: `${lab.dir}/state-${n}`, clientPool: POOL, serverId: 'main' }));
    return { instance, cleanup: () => instance.stop() };
  },
  async connect(target: ConformanceInstance, user: DesiredUser) {
    const i = users.indexOf(user as (typeof users)[number]);
    const host = clientHosts[i]!;
    const plugin = target.instance as WireGuardPlugin;
    const text = await plugin.renderClientConfig(
      { username: user.username, material: { ...user.material, privateKey: privateOf.get(user.material.publicKey!)! } },
      [{ host: `10.98.${i + 1}.1`, port: PORT, protocol: 'udp' }],
    );
    const client = await startWgClient(lab, host, `wgk${randomBytes(3).toString('hex')}`, text, POOL);
    if (!(await ping(host, '10.67.0.1', 3))) throw new Error(`${user.username}: no ping through the tunnel`);
    // Resolves once the plugin's poll lists the peer (its handshake is in).
    const end = Date.now() + 10_000;
    for (;;) {
      const poll = await plugin.pollSessions();
      if (poll.kind === 'status-text' && poll.texts.some((t) => t.text.includes(user.material.publicKey!))) break;
      if (Date.now() > end) throw new Error(`${user.username} never showed in the poll`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return { close: () => client.stop() };
  },
});

after(async () => {
  await lab.cleanup();
});
