import { expect } from 'chai';
import {
  activationFor,
  authorizeDecision,
  decide,
  nextResetAt,
  resetDue,
  serverAllowed,
  type LiveConnectionRef,
  type ResellerFacts,
  type UserFacts,
} from '../../core/enforcement/policy';
import { GiB } from '../../core/services/user-status';
import { resellerFacts, userFacts } from '../helpers/facts';

const NOW = new Date('2026-06-01T12:00:00Z');

const user = userFacts;
const reseller = resellerFacts;

let seq = 0;
const conn = (username: string, connectedAt: number, sourceId = 'openvpn@main', firstSeenMs = 1000): LiveConnectionRef => ({
  key: `${sourceId}:${username}-${++seq}`,
  sourceId,
  username,
  connectedAt,
  firstSeenMs,
});

function decideFor(u: UserFacts | undefined, conns: LiveConnectionRef[], r?: ResellerFacts, now = NOW) {
  const name = conns[0]!.username;
  return decide(new Map([[name, conns]]), (n) => (n === name ? u : undefined), (id) => (r && r.id === id ? r : undefined), now);
}

describe('enforcement policy', () => {
  describe('who must be cut', () => {
    it('an active user within its limits keeps its sessions', () => {
      expect(decideFor(user({ max_clients: 2 }), [conn('alice', 1), conn('alice', 2)])).to.deep.equal([]);
    });

    it('a disabled user loses every session on every protocol and server', () => {
      const conns = [conn('alice', 1), conn('alice', 2, 'wireguard@node_1')];
      expect(decideFor(user({ is_active: false, max_clients: 5 }), conns)).to.deep.equal([{ kind: 'cut_user', username: 'alice', reason: 'disabled', connections: conns }]);
    });

    it('an expired user is cut from the instant its expiry passes', () => {
      const u = user({ expiry_date: '2026-06-01T12:00:00.000Z' });
      expect(decideFor(u, [conn('alice', 1)], undefined, new Date('2026-06-01T11:59:59.999Z'))).to.deep.equal([]);
      expect(decideFor(u, [conn('alice', 1)], undefined, NOW)[0]).to.include({ reason: 'expired' });
    });

    it('a user at or over its data limit is cut as limited', () => {
      expect(decideFor(user({ data_limit_bytes: 100, upload_bytes: 40, download_bytes: 59 }), [conn('alice', 1)])).to.deep.equal([]);
      expect(decideFor(user({ data_limit_bytes: 100, upload_bytes: 40, download_bytes: 60 }), [conn('alice', 1)])[0]).to.include({ reason: 'limited' });
    });

    it("a reseller over its quota or inactive cuts its users", () => {
      const u = user({ sub_admin_id: 7 });
      expect(decideFor(u, [conn('alice', 1)], reseller({ total_usage_quota_gb: 1, used_traffic_bytes: GiB - 1 }))).to.deep.equal([]);
      expect(decideFor(u, [conn('alice', 1)], reseller({ total_usage_quota_gb: 1, used_traffic_bytes: GiB }))[0]).to.include({ reason: 'limited' });
      expect(decideFor(u, [conn('alice', 1)], reseller({ is_active: false }))[0]).to.include({ reason: 'disabled' });
    });

    it('a session of a username that is no user (deleted) is cut', () => {
      expect(decideFor(undefined, [conn('ghost', 1)])[0]).to.include({ kind: 'cut_user', reason: 'unknown_user' });
    });

    it('beyond max_clients the newest sessions are cut, counted across protocols and servers', () => {
      const old = conn('alice', 100, 'openvpn@main');
      const mid = conn('alice', 200, 'wireguard@node_1');
      const newest = conn('alice', 300, 'cisco@main');
      expect(decideFor(user({ max_clients: 2 }), [newest, old, mid])).to.deep.equal([{ kind: 'cut_sessions', username: 'alice', reason: 'max_clients', connections: [newest] }]);
      expect(decideFor(user({ max_clients: 1 }), [old, newest, mid])[0]!.connections).to.deep.equal([newest, mid]);
    });

    it('max_clients counts settled sessions only: a row seen by one poll may be a login being refused', () => {
      const settled = conn('alice', 100);
      const fresh = { ...conn('alice', 200), settled: false };
      expect(decideFor(user({ max_clients: 1 }), [settled, fresh])).to.deep.equal([]);
      expect(decideFor(user({ is_active: false }), [settled, fresh])[0]!.connections, 'a disabled user loses every row').to.have.length(2);
    });

    it('sessions without a start time are ordered by when polygate first saw them', () => {
      const first = conn('alice', 0, 'wireguard@main', 1_000_000);
      const later = conn('alice', 0, 'wireguard@main', 2_000_000);
      expect(decideFor(user({ max_clients: 1 }), [later, first])[0]!.connections).to.deep.equal([later]);
    });

    it('on_hold users may hold sessions (their first one starts the clock); max_clients 0 means no limit', () => {
      expect(decideFor(user({ activation_type: 'flexible_days', pending_activation_days: 5 }), [conn('alice', 1)])).to.deep.equal([]);
      expect(decideFor(user({ max_clients: 0 }), [conn('alice', 1), conn('alice', 2), conn('alice', 3)])).to.deep.equal([]);
    });
  });

  describe('authorize', () => {
    const ask = (u: UserFacts | undefined, extra: Partial<Parameters<typeof authorizeDecision>[1]> = {}, protocol: 'openvpn' | 'l2tp' = 'openvpn', password?: string) =>
      authorizeDecision({ username: 'alice', protocol, serverId: 'main', password }, { user: u, reseller: null, liveConnections: 0, now: NOW, ...extra });

    it('allows an active user under its limit', () => {
      expect(ask(user())).to.deep.equal({ allowed: true });
    });
    it('refuses one connection beyond max_clients', () => {
      expect(ask(user({ max_clients: 2 }), { liveConnections: 1 })).to.deep.equal({ allowed: true });
      expect(ask(user({ max_clients: 2 }), { liveConnections: 2 })).to.deep.equal({ allowed: false, reason: 'max_clients (2) reached' });
    });
    it('refuses users that may not connect, naming the status', () => {
      expect(ask(user({ is_active: false }))).to.deep.equal({ allowed: false, reason: 'user is disabled' });
      expect(ask(user({ data_limit_bytes: 1, upload_bytes: 1 }))).to.deep.equal({ allowed: false, reason: 'user is limited' });
      expect(ask(user({ sub_admin_id: 7 }), { reseller: reseller({ total_usage_quota_gb: 1, used_traffic_bytes: 2 * GiB }) })).to.deep.equal({ allowed: false, reason: 'user is limited' });
    });
    it('checks the protocol password when the plugin passes one (constant-time)', () => {
      expect(ask(user(), {}, 'l2tp', 'l2tp-pass')).to.deep.equal({ allowed: true });
      expect(ask(user(), {}, 'l2tp', 'l2tp-pas')).to.deep.equal({ allowed: false, reason: 'invalid credentials' });
    });
    it('opens sealed passwords before comparing', () => {
      const u = user({ protocols: { l2tp: { password: 'v1.sealed' } } });
      expect(ask(u, { openSecret: (s) => (s === 'v1.sealed' ? 'plain' : s) }, 'l2tp', 'plain')).to.deep.equal({ allowed: true });
    });
  });

  it("server lists: the user's own pins narrowed by the reseller's non-empty allow-list (the one rule the views use too)", () => {
    expect(serverAllowed({ nodes: JSON.stringify(['node_1']) }, null, 'main')).to.equal(false);
    expect(serverAllowed({ nodes: JSON.stringify(['node_1']) }, null, 'node_1')).to.equal(true);
    expect(serverAllowed({ nodes: null }, { allowed_servers: JSON.stringify(['main']) }, 'node_2')).to.equal(false);
    expect(serverAllowed({ nodes: null }, { allowed_servers: '[]' }, 'node_2')).to.equal(true);
    // A reseller that lost node_1 takes it from users pinned to it as well.
    expect(serverAllowed({ nodes: JSON.stringify(['node_1']) }, { allowed_servers: JSON.stringify(['main']) }, 'node_1')).to.equal(false);
  });

  it('flexible_days activation: first_connection_at = now, expiry = now + pending_activation_days', () => {
    const u = user({ activation_type: 'flexible_days', pending_activation_days: 30 });
    expect(activationFor(u, NOW)).to.deep.equal({ first_connection_at: NOW, expiry_date: new Date('2026-07-01T12:00:00Z') });
    expect(activationFor({ ...u, first_connection_at: NOW }, NOW)).to.equal(null);
    expect(activationFor(user(), NOW)).to.equal(null);
  });

  describe('periodic reset', () => {
    it('day and week count exact periods from the last reset', () => {
      expect(nextResetAt('day', new Date('2026-06-01T12:00:00Z'))?.toISOString()).to.equal('2026-06-02T12:00:00.000Z');
      expect(nextResetAt('week', new Date('2026-06-01T12:00:00Z'))?.toISOString()).to.equal('2026-06-08T12:00:00.000Z');
      expect(nextResetAt('no_reset', NOW)).to.equal(null);
    });
    it('month and year are calendar periods, clamped to the last day of short months', () => {
      expect(nextResetAt('month', new Date('2026-01-31T08:00:00Z'))?.toISOString()).to.equal('2026-02-28T08:00:00.000Z');
      expect(nextResetAt('month', new Date('2026-12-15T00:00:00Z'))?.toISOString()).to.equal('2027-01-15T00:00:00.000Z');
      expect(nextResetAt('year', new Date('2028-02-29T00:00:00Z'))?.toISOString()).to.equal('2029-02-28T00:00:00.000Z');
    });
    it('is due from the last reset, or from creation when there was none', () => {
      const u = user({ data_limit_reset_strategy: 'day', created_at: '2026-05-31T12:00:00.000Z' });
      expect(resetDue(u, new Date('2026-06-01T11:59:59Z'))).to.equal(false);
      expect(resetDue(u, NOW)).to.equal(true);
      expect(resetDue({ ...u, last_traffic_reset_at: NOW }, NOW)).to.equal(false);
      expect(resetDue({ ...u, data_limit_reset_strategy: 'no_reset' }, new Date('2030-01-01'))).to.equal(false);
    });
  });
});
