import { LocalHost } from '../../core/hosts/local-host';
import type { DesiredUser } from '../../core/plugin/types';
import { ScriptedPlugin, scriptedPluginDefinition } from '../fakes/scripted-plugin';
import { conformanceContext, describePluginConformance } from './plugin-conformance';

/**
 * The conformance suite run against the scripted plugins — TEST DOUBLES of a gating daemon
 * (asks core at login, like OpenVPN) and a login-less one (like WireGuard). This keeps the
 * suite itself honest: every case must pass against the doubles the other tests rely on.
 * Real daemons run it from their own plugin tests.
 */
const users: [DesiredUser, DesiredUser] = [
  { username: 'conf_a', password: 'pass-a', material: { publicKey: 'A'.repeat(43) + '=' } },
  { username: 'conf_b', password: 'pass-b', material: { publicKey: 'B'.repeat(43) + '=' } },
];

for (const loginless of [false, true]) {
  const definition = scriptedPluginDefinition(loginless ? 'wireguard' : 'openvpn', () => undefined, { loginless });
  describePluginConformance({
    name: `scripted ${loginless ? 'login-less' : 'gating'} plugin (test double)`,
    definition: definition as never,
    missing: () => null,
    brokenConfig: { broken: true },
    users,
    listeners: [{ port: 51999, protocol: 'udp' }],
    async create(config = {}) {
      const instance = definition.create(conformanceContext({ config: {} as Record<string, never>, host: new LocalHost({ id: 'conformance' }), stateDir: '/nonexistent-polygate-test' })) as ScriptedPlugin;
      // The double's stand-in for "the daemon's binary is missing".
      if ((config as { broken?: boolean }).broken) instance.available = { available: false, reason: 'scripted daemon is not installed' };
      return { instance, cleanup: () => instance.stop() };
    },
    async connect(target, user) {
      const plugin = target.instance as ScriptedPlugin;
      const verdict = await plugin.connect({ key: `k-${user.username}`, username: user.username, rx: 0, tx: 0 }, user.password);
      if (!verdict.allowed) throw new Error(`refused: ${verdict.reason}`);
      return { close: async () => void plugin.drop(`k-${user.username}`) };
    },
  });
}
