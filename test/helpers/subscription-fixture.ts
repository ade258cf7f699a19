import { expect } from 'chai';
import { NodeRecord, User, UserUsage } from '../../core/db';
import { generateWireGuardKeyPair } from '../../core/protocols/wireguard-material';
import { renderClientProfile } from '../../plugins/ocserv/render';
import { renderClientConfig } from '../../plugins/wireguard/render';
import { addScriptedPlugin, type ScriptedPlugin } from '../fakes/scripted-plugin';
import { createHarness, type DatabaseKind, type Harness } from './harness';

/**
 * A daemon whose four protocols "run" on the main server and on `nodes` nodes, with scripted
 * TEST DOUBLES for the plugins (no daemon runs) that declare what the real ones declare: the
 * profile formats, the QR-importable config, and configs rendered by the real plugins' pure
 * renderers (WireGuard's config, ocserv's profile with its certificate pin), so the page shows
 * what it shows in production, and the customer facts (certificate pin, IKEv2 identity) the
 * real ones declare.
 */
export interface SubscriptionFixture {
  h: Harness;
  plugins: Record<'openvpn' | 'l2tp' | 'cisco' | 'wireguard', ScriptedPlugin>;
  /** The certificate pin the Cisco double puts in every profile. */
  pin: string;
  createUser(body: Record<string, unknown>): Promise<void>;
  /** `{ path, token, url }` of a user's subscription page, from the API. */
  subOf(username: string): Promise<{ path: string; token: string; url: string }>;
}

/** A pin of the form ocserv prints (sha-256 of the public key, base64). */
export const FIXTURE_PIN = 'pin-sha256:q1w2e3r4t5y6u7i8o9p0AaSsDdFfGgHhJjKkLlZzXxC=';

export async function createSubscriptionFixture(kind: DatabaseKind = 'sqlite', options: { nodes?: number } = {}): Promise<SubscriptionFixture> {
  const h = await createHarness(kind, {}, { protocols: 'none' });
  const registry = h.core.plugins;
  const openvpn = await addScriptedPlugin(registry, 'openvpn', 'main', { clientConfig: { extension: 'ovpn', mediaType: 'application/x-openvpn-profile' } });
  const l2tp = await addScriptedPlugin(registry, 'l2tp', 'main', { loginless: true, clientConfig: { extension: 'sswan', mediaType: 'application/vnd.strongswan.profile' } });
  l2tp.facts = [{ key: 'ikev2_remote_id', label: 'IKEv2 remote ID (server identity)', value: 'vpn.panel.example.test' }];
  const cisco = await addScriptedPlugin(registry, 'cisco', 'main', { loginless: true, clientConfig: { extension: 'conf', mediaType: 'text/plain' } });
  cisco.facts = [{ key: 'certificate_pin', label: 'Server certificate pin', value: FIXTURE_PIN }];
  const wireguard = await addScriptedPlugin(registry, 'wireguard', 'main', { loginless: true, clientConfig: { extension: 'conf', mediaType: 'text/plain', qr: true } });
  const server = generateWireGuardKeyPair();
  const psk = generateWireGuardKeyPair().publicKey;
  const recordRender = (plugin: ScriptedPlugin, render: typeof plugin.renderClientConfig) => {
    plugin.renderClientConfig = async (user, endpoints) => {
      plugin.rendered.push({ user, endpoints });
      if (plugin.renderFailure) throw plugin.renderFailure;
      return render(user, endpoints);
    };
  };
  recordRender(wireguard, async (user, endpoints) =>
    renderClientConfig({
      title: `${user.username} @ ${endpoints[0]!.host}`,
      privateKey: user.material.privateKey!,
      address: user.material.address!,
      dns: ['1.1.1.1'],
      serverPublicKey: server.publicKey,
      presharedKey: psk,
      endpointHost: endpoints[0]!.host,
      endpointPort: endpoints[0]!.port,
      persistentKeepalive: 25,
    }),
  );
  recordRender(cisco, async (user, endpoints) =>
    renderClientProfile({ username: user.username, servers: endpoints.map((e) => ({ host: e.host, port: e.port })), pin: FIXTURE_PIN, title: `${user.username} @ ${endpoints[0]!.host}` }),
  );
  for (let i = 1; i <= (options.nodes ?? 0); i++) {
    await NodeRecord.create({ name: `Node ${String.fromCharCode(64 + i)}`, ip_address: `198.51.100.${10 + i}`, ssh_secret: null, communication_method: null, status_message: null, status: 'active' } as never);
  }
  await h.core.plugins.refreshAvailability();
  const api = (method: 'get' | 'post' | 'put', path: string) => h.http[method](`/api/v1${path}`).set('X-API-KEY', h.adminKey);
  return {
    h,
    plugins: { openvpn, l2tp, cisco, wireguard },
    pin: FIXTURE_PIN,
    async createUser(body) {
      const res = await api('post', '/users').send(body);
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
    },
    async subOf(username) {
      const res = await api('get', `/users/${username}/sub`);
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      const url = new URL(res.body.sub_url);
      return { path: url.pathname, token: url.searchParams.get('token') ?? '', url: res.body.sub_url as string };
    },
  };
}

/** Every protocol on, with known passwords: what the browser tests and the bench look at. */
export const ALL_PROTOCOLS = { enable_openvpn: true, enable_l2tp: true, enable_cisco: true, enable_wg1: true } as const;

/**
 * The three customers the browser tests show: `active` (usage under its limit), `expired`
 * (its date passed) and `limited` (over its data limit). Usage is written to the row directly:
 * no daemon counts traffic here.
 */
export async function createStatusUsers(f: SubscriptionFixture): Promise<void> {
  const GB = 1024 ** 3;
  const common = { ...ALL_PROTOCOLS, l2tp_password: 'L2tp-Pass-2026', cisco_password: 'Cisco-Pass-2026' };
  await f.createUser({ username: 'active_user', data_limit: 50, data_limit_unit: 'GB', expiry_days: 30, openvpn_password: 'Ovpn-Pass-2026', ...common });
  await f.createUser({ username: 'expired_user', data_limit: 50, data_limit_unit: 'GB', expiry_days: 10, ...common });
  await f.createUser({ username: 'limited_user', data_limit: 10, data_limit_unit: 'GB', expiry_days: 20, ...common });
  const byName = async (username: string) => (await User.findOne({ where: { username }, raw: true }))!.id;
  await UserUsage.upsert({ user_id: await byName('active_user'), upload_bytes: Math.round(1.5 * GB), download_bytes: Math.round(12.25 * GB) });
  await UserUsage.upsert({ user_id: await byName('limited_user'), upload_bytes: 2 * GB, download_bytes: 9 * GB });
  await UserUsage.upsert({ user_id: await byName('expired_user'), upload_bytes: GB, download_bytes: 3 * GB });
  await User.update({ expiry_date: new Date(f.h.clock.now().getTime() - 3 * 86_400_000) }, { where: { username: 'expired_user' } });
}
