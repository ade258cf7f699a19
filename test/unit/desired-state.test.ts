import { expect } from 'chai';
import type { UserFacts } from '../../core/enforcement/policy';
import { resellerFacts, userFacts } from '../helpers/facts';
import { allowedNow, desiredUsers, entitled, nextChangeAt, type DesiredUsersInput } from '../../core/reconciler/desired-state';

/** The desired user set of one plugin on one host, as pure functions of facts and the clock. */

const NOW = new Date('2026-06-01T12:00:00Z');

const user = (username: string, overrides: Partial<UserFacts> = {}): UserFacts =>
  userFacts({ username, protocols: { wireguard: { password: null }, l2tp: { password: `${username}-pass` } }, ...overrides });
const reseller = resellerFacts;

function input(users: UserFacts[], overrides: Partial<DesiredUsersInput> = {}): DesiredUsersInput {
  return {
    protocol: 'wireguard',
    serverId: 'main',
    gatesLogins: false,
    users,
    resellerOf: () => reseller(),
    materialOf: (u) => ({ wg_public_key: `${u}-pub`, wg_address: '10.66.0.2/32', wg_private_key: `${u}-PRIVATE` }),
    connectionSourcesOf: () => [],
    now: NOW,
    ...overrides,
  };
}

const names = (i: DesiredUsersInput) => desiredUsers(i).map((u) => u.username);

describe('desired state (pure)', () => {
  it('a login-less daemon gets exactly the users allowed now, with public material only', () => {
    const users = [
      user('active'),
      user('disabled', { is_active: false }),
      user('expired', { expiry_date: new Date('2026-06-01T11:59:59Z') }),
      user('limited', { data_limit_bytes: 10, upload_bytes: 10 }),
      user('no_wg', { protocols: { l2tp: { password: 'x' } } }),
      user('other_server', { nodes: JSON.stringify(['node_1']) }),
      user('on_hold', { activation_type: 'flexible_days', pending_activation_days: 3 }),
    ];
    const out = desiredUsers(input(users));
    expect(out.map((u) => u.username)).to.deep.equal(['active', 'on_hold']);
    expect(out[0]).to.deep.equal({ username: 'active', material: { publicKey: 'active-pub', address: '10.66.0.2/32' }, maxSessions: 1 });
  });

  it('a daemon that gates logins gets every entitled user: authorize refuses the rest at login', () => {
    const users = [user('active'), user('disabled', { is_active: false }), user('expired', { expiry_date: NOW }), user('other_server', { nodes: '["node_1"]' })];
    expect(names(input(users, { gatesLogins: true }))).to.deep.equal(['active', 'disabled', 'expired']);
  });

  it('passwords go with the user (sealed ones opened); users whose material is missing are left out', () => {
    const u = user('sealed', { protocols: { l2tp: { password: 'v1.box' } } });
    const out = desiredUsers(input([u, user('plain')], { protocol: 'l2tp', gatesLogins: true, openSecret: (s) => (s === 'v1.box' ? 'opened' : s) }));
    expect(out).to.deep.equal([
      { username: 'plain', password: 'plain-pass', material: {} },
      { username: 'sealed', password: 'opened', material: {} },
    ]);
    expect(names(input([user('keyless')], { materialOf: () => ({ wg_public_key: null, wg_address: null }) }))).to.deep.equal([]);
  });

  it('max_clients counts connections on every other protocol and server; a device already here keeps its user in', () => {
    const u = user('dave', { max_clients: 1 });
    expect(allowedNow(u, null, 'wireguard@main', [], NOW)).to.equal(true);
    expect(allowedNow(u, null, 'wireguard@main', ['openvpn@main'], NOW)).to.equal(false);
    expect(allowedNow(u, null, 'wireguard@main', ['wireguard@main'], NOW)).to.equal(true);
    expect(allowedNow({ ...u, max_clients: 2 }, null, 'wireguard@main', ['openvpn@main'], NOW)).to.equal(true);
    expect(allowedNow({ ...u, max_clients: 0 }, null, 'wireguard@main', ['a@x', 'b@y', 'c@z'], NOW), '0 = no limit').to.equal(true);
  });

  it('a login-less daemon is told the room left under max_clients once sessions elsewhere are counted', () => {
    const sessions: Record<string, string[]> = { two: ['openvpn@main'], here: ['wireguard@main', 'openvpn@node_1', 'l2tp@main'] };
    const users = [user('free', { max_clients: 0 }), user('three', { max_clients: 3 }), user('two', { max_clients: 2 }), user('here', { max_clients: 2 })];
    const out = desiredUsers(input(users, { connectionSourcesOf: (u) => sessions[u] ?? [] }));
    const room = Object.fromEntries(out.map((u) => [u.username, u.maxSessions]));
    expect(room).to.deep.equal({ free: undefined, three: 3, two: 1, here: 1 });
    expect(desiredUsers(input(users, { gatesLogins: true }))[0]).to.not.have.property('maxSessions');
  });

  it('one server rule: pins narrowed by the reseller allow-list, everywhere', () => {
    const pinned = user('pinned', { sub_admin_id: 7, nodes: '["main","node_1"]' });
    expect(entitled(pinned, reseller({ allowed_servers: '["node_1"]' }), 'wireguard', 'main')).to.equal(false);
    expect(entitled(pinned, reseller({ allowed_servers: '["node_1"]' }), 'wireguard', 'node_1')).to.equal(true);
    expect(entitled(pinned, reseller(), 'wireguard', 'main')).to.equal(true);
    expect(names(input([pinned], { resellerOf: () => reseller({ allowed_servers: '["node_1"]' }) }))).to.deep.equal([]);
    expect(names(input([pinned], { resellerOf: () => reseller({ is_active: false }) })), 'an inactive reseller disables its users').to.deep.equal([]);
  });

  it('nextChangeAt: the earliest expiry or periodic reset still ahead, for users with any protocol', () => {
    const users = [
      user('later', { expiry_date: new Date('2026-07-01T00:00:00Z') }),
      user('sooner', { expiry_date: new Date('2026-06-02T00:00:00Z') }),
      user('past', { expiry_date: new Date('2026-05-01T00:00:00Z') }),
      user('reset', { data_limit_bytes: 5, data_limit_reset_strategy: 'day', last_traffic_reset_at: new Date('2026-06-01T06:00:00Z') }),
      user('no_protocols', { protocols: {}, expiry_date: new Date('2026-06-01T12:30:00Z') }),
    ];
    expect(nextChangeAt(users, NOW)?.toISOString()).to.equal('2026-06-02T00:00:00.000Z');
    expect(nextChangeAt(users.slice(3), NOW)?.toISOString()).to.equal('2026-06-02T06:00:00.000Z');
    expect(nextChangeAt([user('none')], NOW)).to.equal(null);
  });
});
