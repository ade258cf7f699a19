import { expect } from 'chai';
import { ApiKey, NodeRecord, Port, PortAssignment, SubAdmin, SubscriptionToken, User, UserUsage } from '../../core/db';
import type { DomainEventMap } from '../../core/events';
import { randomKey, sha256Hex } from '../../core/secrets';
import { wireGuardPublicKeyOf } from '../../core/protocols/wireguard-material';
import { createHarness, forEachDatabase, type Harness } from '../helpers/harness';

const GiB = 1024 ** 3;
const DAY_MS = 86_400_000;
const START = '2026-06-01T12:00:00.000Z';
const BASE = 'http://panel.example.test:8080';
const NOT_FOUND = { success: false, message: 'User not found or permission denied' };
const NOT_FOUND_REVOKE = { success: false, message: 'User not found or permission denied.' };

const DETAIL_KEYS = [
  'success', 'username', 'status', 'is_active', 'is_online', 'active_connections', 'max_clients', 'data_limit', 'data_limit_unit',
  'data_limit_bytes', 'data_limit_reset_strategy', 'upload_bytes', 'download_bytes', 'total_traffic_bytes', 'activation_type',
  'expiry_date', 'pending_activation_days', 'first_connection_at', 'notes', 'sub_admin_id', 'nodes', 'subscription_url',
  'enable_openvpn', 'openvpn_password', 'enable_l2tp', 'l2tp_password', 'enable_cisco', 'cisco_password', 'enable_wg1',
  'wg_address', 'wg_public_key', 'openvpn_servers', 'l2tp_servers', 'cisco_servers', 'wg_servers',
];
const LIST_ITEM_KEYS = ['username', 'status', 'is_active', 'is_online', 'data_limit', 'data_limit_unit', 'total_traffic_bytes', 'expiry_date', 'max_clients', 'sub_admin_id'];

interface Reseller {
  id: number;
  key: string;
}

forEachDatabase((kind) => {
  describe(`users [${kind}]`, function () {
    this.timeout(60_000);
    let h: Harness;
    let resellerCounter = 0;

    before(async () => {
      h = await createHarness(kind);
    });
    after(() => h.close());
    beforeEach(() => h.clock.set(START));

    const api = (key: string | undefined) => {
      const auth = <T extends { set(name: string, value: string): T }>(r: T): T => (key === undefined ? r : r.set('X-API-KEY', key));
      return {
        get: (path: string) => auth(h.http.get(`/api/v1${path}`)),
        post: (path: string, body?: object) => {
          const r = auth(h.http.post(`/api/v1${path}`));
          return body === undefined ? r : r.send(body);
        },
        put: (path: string, body: object) => auth(h.http.put(`/api/v1${path}`)).send(body),
        del: (path: string) => auth(h.http.delete(`/api/v1${path}`)),
      };
    };
    const admin = () => api(h.adminKey);

    /** A reseller made directly in the database, independent of the sub-admin endpoints. */
    async function createReseller(fields: Partial<{ max_users_limit: number | null; total_usage_quota_gb: number | null; allowed_servers: string[]; subscription_port: number | null; used_traffic_bytes: number }> = {}): Promise<Reseller> {
      const row = await SubAdmin.create({
        username: `reseller${++resellerCounter}`,
        password_hash: 'unused',
        subscription_port: fields.subscription_port ?? null,
        panel_port: null,
        max_users_limit: fields.max_users_limit ?? null,
        total_usage_quota_gb: fields.total_usage_quota_gb ?? null,
        notes: null,
        allowed_servers: JSON.stringify(fields.allowed_servers ?? []),
        used_traffic_bytes: fields.used_traffic_bytes ?? 0,
      });
      const key = randomKey(32);
      await ApiKey.create({ key_hash: sha256Hex(key), kind: 'sub_admin', sub_admin_id: row.id });
      return { id: row.id, key };
    }

    async function createUser(name: string, body: object = {}, key = h.adminKey) {
      const res = await api(key).post('/users', { username: name, ...body });
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      return res;
    }
    const detail = async (name: string, key = h.adminKey) => {
      const res = await api(key).get(`/users/${name}`);
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      return res.body;
    };
    const countUsers = () => User.count();
    /** Sets a user's usage counters (kept in user_usage, apart from the users row). */
    const setUsage = async (name: string, upload_bytes: number, download_bytes: number) => {
      const user = (await User.findOne({ where: { username: name }, attributes: ['id'], raw: true }))!;
      await UserUsage.upsert({ user_id: user.id, upload_bytes, download_bytes });
    };
    const tokenOf = (url: string) => new URL(url).searchParams.get('token')!;

    /** Records domain events and, for each, whether the named users' rows were visible then (i.e. committed). */
    function recordEvents() {
      const seen: { name: keyof DomainEventMap; payload: unknown }[] = [];
      const offs = (['users.changed', 'users.deleted', 'users.revoked'] as const).map((name) =>
        h.core.ctx.events.on(name, (payload) => {
          seen.push({ name, payload });
        }),
      );
      return { seen, stop: () => offs.forEach((off) => off()) };
    }

    // ---------------------------------------------------------------------------------------
    describe('authentication', () => {
      it('every users endpoint answers 401 "API key is missing" without a key and "Invalid or inactive API key" for a wrong one', async () => {
        await createUser('auth_user');
        const calls = (k: string | undefined) => [
          api(k).get('/users/list_all'),
          api(k).post('/users', { username: 'x_never' }),
          api(k).get('/users/auth_user'),
          api(k).put('/users/auth_user', { notes: 'x' }),
          api(k).post('/users/auth_user/toggle'),
          api(k).post('/users/auth_user/revoke'),
          api(k).post('/users/auth_user/reset_traffic'),
          api(k).del('/users/auth_user'),
          api(k).get('/users/auth_user/sub'),
          api(k).get('/users/auth_user/all_ovpn_links'),
        ];
        for (const res of await Promise.all(calls(undefined))) {
          expect(res.status).to.equal(401);
          expect(res.body).to.deep.equal({ success: false, message: 'API key is missing' });
        }
        for (const res of await Promise.all(calls('INVALID_KEY'))) {
          expect(res.status).to.equal(401);
          expect(res.body).to.deep.equal({ success: false, message: 'Invalid or inactive API key' });
        }
        expect((await detail('auth_user')).notes).to.equal(null);
      });
    });

    // ---------------------------------------------------------------------------------------
    describe('POST /users', () => {
      it('creates one user: exact body, and the detail shows the contract fields with their defaults', async () => {
        const res = await admin().post('/users', { username: 'plain_user' });
        expect(res.status).to.equal(200);
        expect(res.body).to.deep.equal({ success: true, message: 'Users created successfully.', created_users: ['plain_user'] });
        const d = await detail('plain_user');
        expect(Object.keys(d).sort()).to.deep.equal([...DETAIL_KEYS].sort());
        const { subscription_url, openvpn_password, ...rest } = d;
        expect(subscription_url).to.match(/^http:\/\/panel\.example\.test:8080\/sub\/plain_user\?token=[A-Za-z0-9_-]{43}$/);
        expect(openvpn_password).to.match(/^[A-Za-z0-9]{12}$/);
        expect(rest).to.deep.equal({
          success: true,
          username: 'plain_user',
          status: 'active',
          is_active: true,
          is_online: false,
          active_connections: 0,
          max_clients: 1,
          data_limit: 0,
          data_limit_unit: 'GB',
          data_limit_bytes: 0,
          data_limit_reset_strategy: 'no_reset',
          upload_bytes: 0,
          download_bytes: 0,
          total_traffic_bytes: 0,
          activation_type: 'fixed_date',
          expiry_date: null,
          pending_activation_days: null,
          first_connection_at: null,
          notes: null,
          sub_admin_id: null,
          nodes: [],
          enable_openvpn: true,
          enable_l2tp: false,
          l2tp_password: null,
          enable_cisco: false,
          cisco_password: null,
          enable_wg1: false,
          wg_address: null,
          wg_public_key: null,
          openvpn_servers: [{ name: 'Main Server', is_tunnel: false, address: 'panel.example.test', port: 1194, protocol: 'udp' }],
          l2tp_servers: [],
          cisco_servers: [],
          wg_servers: [],
        });
      });

      it('the reference example (fixed date, 50 GB, WireGuard) is stored as sent', async () => {
        const res = await admin().post('/users', {
          username: 'test_user',
          max_clients: 2,
          activation_type: 'fixed_date',
          expiry_date_str: '2026-12-31',
          data_limit: 50,
          data_limit_unit: 'GB',
          enable_wg1: true,
        });
        expect(res.body).to.deep.equal({ success: true, message: 'Users created successfully.', created_users: ['test_user'] });
        const d = await detail('test_user');
        expect(d).to.include({ max_clients: 2, activation_type: 'fixed_date', expiry_date: '2027-01-01T00:00:00.000Z', data_limit: 50, data_limit_unit: 'GB', data_limit_bytes: 50 * GiB, enable_wg1: true, status: 'active' });
        expect(d.wg_servers).to.deep.equal([{ name: 'Main Server', is_tunnel: false, address: 'panel.example.test', port: 51820, protocol: 'udp' }]);
      });

      it('no username and no bulk_count: 400 "Username is required." (also for an empty body and an empty name), nothing created', async () => {
        const before = await countUsers();
        for (const body of [{ max_clients: 1 }, {}, { username: '' }, { bulk_count: 0 }, { bulk_count: null }]) {
          const res = await admin().post('/users', body);
          expect(res.status).to.equal(400);
          expect(res.body).to.deep.equal({ success: false, message: 'Username is required.' });
        }
        expect(await countUsers()).to.equal(before);
      });

      it('names outside ^[a-zA-Z0-9_.-]{3,32}$ and the reserved "list_all" are 400 with a clear message', async () => {
        const message = "Invalid username: use 3-32 characters from letters, digits, '_', '.' and '-'.";
        for (const username of ['ab', 'a'.repeat(33), 'has space', 'slash/name', 'quote"name', 'naïve', 'semi;colon']) {
          const res = await admin().post('/users', { username });
          expect(res.status, username).to.equal(400);
          expect(res.body).to.deep.equal({ success: false, message });
        }
        const res = await admin().post('/users', { username: 'list_all' });
        expect(res.status).to.equal(400);
        expect(res.body).to.deep.equal({ success: false, message: "Invalid username: 'list_all' is reserved." });
        await createUser('Ok.name-3_x');
        await createUser('a'.repeat(32));
      });

      it('a duplicate name is 409 "User already exists.", also across resellers, without revealing the owner', async () => {
        const a = await createReseller();
        const b = await createReseller();
        await createUser('dup_user');
        await createUser('dup_of_a', {}, a.key);
        for (const [key, username] of [[h.adminKey, 'dup_user'], [a.key, 'dup_user'], [b.key, 'dup_of_a'], [h.adminKey, 'dup_of_a']] as const) {
          const res = await api(key).post('/users', { username });
          expect(res.status).to.equal(409);
          expect(res.body).to.deep.equal({ success: false, message: 'User already exists.' });
        }
        expect((await detail('dup_of_a')).sub_admin_id).to.equal(a.id);
      });

      it('wrong types are 400 naming the field, and nothing is created', async () => {
        const before = await countUsers();
        const cases: [object, string][] = [
          [{ username: 'typed1', max_clients: '2' }, "Field 'max_clients' must be a number, not a string."],
          [{ username: 123 }, "Field 'username' must be a string, not a number."],
          [{ username: 'typed1', enable_wg1: 'yes' }, "Field 'enable_wg1' must be a boolean, not a string."],
          [{ username: 'typed1', nodes: 'main' }, "Field 'nodes' must be an array, not a string."],
          [{ username: 'typed1', nodes: ['main', 1] }, "Field 'nodes.1' must be a string, not a number."],
          [{ username: 'typed1', data_limit: '50' }, "Field 'data_limit' must be a number, not a string."],
          [{ username: 'typed1', data_limit_unit: 'PB' }, "Field 'data_limit_unit' must be one of: MB, GB, TB."],
          [{ username: 'typed1', activation_type: 'sometimes' }, "Field 'activation_type' must be one of: fixed_date, flexible_days."],
          [{ username: 'typed1', data_limit_reset_strategy: 'hourly' }, "Field 'data_limit_reset_strategy' must be one of: no_reset, day, week, month, year."],
          [{ bulk_count: '3' }, "Field 'bulk_count' must be a number, not a string."],
          [{ username: 'typed1', l2tp_password: 1234 }, "Field 'l2tp_password' must be a string, not a number."],
          [{ username: 'typed1', sub_admin_id: '1' }, "Field 'sub_admin_id' must be a number, not a string."],
        ];
        for (const [body, message] of cases) {
          const res = await admin().post('/users', body);
          expect(res.status, JSON.stringify(body)).to.equal(400);
          expect(res.body).to.deep.equal({ success: false, message });
        }
        const res = await h.http.post('/api/v1/users').set('X-API-KEY', h.adminKey).set('Content-Type', 'application/json').send('{"username": ');
        expect(res.status).to.equal(400);
        expect(res.body).to.deep.equal({ success: false, message: 'Request body must be JSON and not empty' });
        expect(await countUsers()).to.equal(before);
      });

      it('out-of-range values are 400 naming the field', async () => {
        const cases: [object, string][] = [
          [{ max_clients: 0 }, 'Invalid max_clients: must be a whole number from 1 to 1000.'],
          [{ max_clients: 1.5 }, 'Invalid max_clients: must be a whole number from 1 to 1000.'],
          [{ data_limit: -1 }, 'Invalid data_limit: must be 0 (unlimited) or a positive number.'],
          [{ expiry_days: -3 }, 'Invalid expiry_days: must be a whole number of days from 0 (no expiry) to 36500.'],
          [{ activation_type: 'flexible_days', pending_activation_days: 0 }, 'Invalid pending_activation_days: must be a whole number of days from 1 to 36500.'],
          [{ notes: 'x'.repeat(4097) }, 'Invalid notes: at most 4096 characters.'],
          [{ bulk_count: 1001 }, 'Invalid bulk_count: must be a whole number from 1 to 1000.'],
          [{ bulk_count: -1 }, 'Invalid bulk_count: must be a whole number from 1 to 1000.'],
          [{ bulk_count: 2.5 }, 'Invalid bulk_count: must be a whole number from 1 to 1000.'],
        ];
        const before = await countUsers();
        for (const [body, message] of cases) {
          const res = await admin().post('/users', { username: 'range_user', ...body });
          expect(res.status, JSON.stringify(body)).to.equal(400);
          expect(res.body).to.deep.equal({ success: false, message });
        }
        expect(await countUsers()).to.equal(before);
      });

      it('data_limit units are binary (MB/GB/TB) and 0 or null means unlimited', async () => {
        const cases: [object, number][] = [
          [{ data_limit: 500, data_limit_unit: 'MB' }, 500 * 1024 ** 2],
          [{ data_limit: 1.5 }, 1.5 * GiB],
          [{ data_limit: 2, data_limit_unit: 'TB' }, 2 * 1024 ** 4],
          [{ data_limit: 0, data_limit_unit: 'TB' }, 0],
          [{ data_limit: null }, 0],
        ];
        let i = 0;
        for (const [body, bytes] of cases) {
          await createUser(`unit_user${++i}`, body);
          const d = await detail(`unit_user${i}`);
          expect(d.data_limit_bytes, JSON.stringify(body)).to.equal(bytes);
        }
        expect(await detail('unit_user1')).to.include({ data_limit: 500, data_limit_unit: 'MB' });
      });

      it('expiry: expiry_date_str is valid through that whole UTC day; expiry_days counts from now; the date wins over days', async () => {
        await createUser('exp_date', { expiry_date_str: '2026-12-31' });
        await createUser('exp_days', { expiry_days: 30 });
        await createUser('exp_both', { expiry_date_str: '2026-07-01', expiry_days: 300 });
        await createUser('exp_none', { expiry_days: 0 });
        expect((await detail('exp_days')).expiry_date).to.equal(new Date(Date.parse(START) + 30 * DAY_MS).toISOString());
        expect((await detail('exp_both')).expiry_date).to.equal('2026-07-02T00:00:00.000Z');
        expect((await detail('exp_none')).expiry_date).to.equal(null);
        h.clock.set('2026-12-31T23:59:59.999Z');
        expect(await detail('exp_date')).to.include({ status: 'active', expiry_date: '2027-01-01T00:00:00.000Z' });
        h.clock.set('2027-01-01T00:00:00.000Z');
        expect((await detail('exp_date')).status).to.equal('expired');
        expect((await detail('exp_none')).status).to.equal('active');
      });

      it('a malformed or impossible expiry_date_str is 400 "Invalid expiry_date_str: expected YYYY-MM-DD."', async () => {
        for (const value of ['2026-02-30', '31-12-2026', '2026-1-5', '2026/12/31', 'tomorrow', '2026-12-31T00:00:00Z']) {
          const res = await admin().post('/users', { username: 'bad_date', expiry_date_str: value });
          expect(res.status, value).to.equal(400);
          expect(res.body).to.deep.equal({ success: false, message: 'Invalid expiry_date_str: expected YYYY-MM-DD.' });
        }
      });

      it('flexible_days: needs pending_activation_days, and the user is on_hold with no expiry until its first connection', async () => {
        const res = await admin().post('/users', { username: 'flex_none', activation_type: 'flexible_days' });
        expect(res.status).to.equal(400);
        expect(res.body).to.deep.equal({ success: false, message: 'pending_activation_days is required for flexible_days activation (a whole number of days, at least 1).' });
        await createUser('flex_user', { activation_type: 'flexible_days', pending_activation_days: 30, expiry_days: 5 });
        expect(await detail('flex_user')).to.include({ status: 'on_hold', activation_type: 'flexible_days', pending_activation_days: 30, expiry_date: null, first_connection_at: null });
      });

      it('protocol passwords: generated when needed and absent, stored when given, refused when unsafe for a secrets file', async () => {
        await createUser('proto_gen', { enable_l2tp: true, enable_cisco: true, enable_openvpn: false });
        const gen = await detail('proto_gen');
        expect(gen.l2tp_password).to.match(/^[A-Za-z0-9]{12}$/);
        expect(gen.cisco_password).to.match(/^[A-Za-z0-9]{12}$/);
        expect(gen.openvpn_password).to.equal(null);
        expect(gen.openvpn_servers).to.deep.equal([]);
        expect(gen.l2tp_servers).to.deep.equal([{ name: 'Main Server', is_tunnel: false, address: 'panel.example.test', port: 500, protocol: 'udp' }]);
        expect(gen.cisco_servers).to.deep.equal([{ name: 'Main Server', is_tunnel: false, address: 'panel.example.test', port: 443, protocol: 'tcp' }]);

        await createUser('proto_given', { enable_l2tp: true, l2tp_password: 'P@ss1234', cisco_password: 'c!sco#9', openvpn_password: 'ovpn-Pass_1' });
        expect(await detail('proto_given')).to.include({ l2tp_password: 'P@ss1234', cisco_password: 'c!sco#9', openvpn_password: 'ovpn-Pass_1', enable_cisco: false });

        for (const field of ['l2tp_password', 'cisco_password', 'openvpn_password']) {
          for (const bad of ['', 'has space', 'quo"te', 'back\\slash', 'tab\there', 'new\nline', 'x'.repeat(65), 'ümlaut']) {
            const res = await admin().post('/users', { username: 'proto_bad', [field]: bad });
            expect(res.status, `${field}=${JSON.stringify(bad)}`).to.equal(400);
            expect(res.body).to.deep.equal({ success: false, message: `Invalid ${field}: use 1-64 printable ASCII characters without spaces, double quotes or backslashes.` });
          }
        }
        expect(await User.count({ where: { username: 'proto_bad' } })).to.equal(0);
      });

      it('WireGuard: a real X25519 key pair and a unique address 10.66.x.y/32 leased from the pool', async () => {
        await createUser('wg_one', { enable_wg1: true });
        await createUser('wg_two', { enable_wg1: true });
        for (const name of ['wg_one', 'wg_two']) {
          const row = (await User.findOne({ where: { username: name }, raw: true }))!;
          const d = await detail(name);
          expect(d.wg_address).to.match(/^10\.66\.\d+\.\d+\/32$/);
          expect(d.wg_address).to.not.equal('10.66.0.1/32', 'the first host is the server side of every tunnel');
          expect(row.wg_address).to.equal(d.wg_address);
          expect(d.wg_public_key).to.match(/^[A-Za-z0-9+/]{43}=$/);
          expect(row.wg_private_key).to.match(/^[A-Za-z0-9+/]{43}=$/);
          expect(wireGuardPublicKeyOf(row.wg_private_key!)).to.equal(d.wg_public_key);
          expect(d).to.not.have.property('wg_private_key');
        }
        expect((await detail('wg_one')).wg_address).to.not.equal((await detail('wg_two')).wg_address);
      });

      it('notes and data_limit_reset_strategy are stored and shown', async () => {
        await createUser('notes_user', { notes: 'VIP user', data_limit_reset_strategy: 'month' });
        expect(await detail('notes_user')).to.include({ notes: 'VIP user', data_limit_reset_strategy: 'month' });
      });
    });

    // ---------------------------------------------------------------------------------------
    describe('POST /users with bulk_count', () => {
      it('creates N users with random unique names like user1234, all sharing the given settings', async () => {
        const res = await admin().post('/users', { bulk_count: 3, activation_type: 'flexible_days', pending_activation_days: 30, enable_l2tp: true, l2tp_password: 'P@ss1234' });
        expect(res.status).to.equal(200);
        expect(res.body).to.have.keys(['success', 'message', 'created_users']);
        expect(res.body).to.include({ success: true, message: 'Users created successfully.' });
        const names: string[] = res.body.created_users;
        expect(names).to.have.length(3);
        expect(new Set(names).size).to.equal(3);
        for (const name of names) {
          expect(name).to.match(/^user\d{4,}$/);
          const d = await detail(name);
          expect(d).to.include({ status: 'on_hold', pending_activation_days: 30, enable_l2tp: true, l2tp_password: 'P@ss1234' });
          expect(d.subscription_url).to.match(new RegExp(`/sub/${name}\\?token=`));
        }
        const tokens = await Promise.all(names.map(async (n) => tokenOf((await detail(n)).subscription_url)));
        expect(new Set(tokens).size).to.equal(3);
      });

      it('bulk_count wins over username when both are sent', async () => {
        const res = await admin().post('/users', { username: 'ignored_name', bulk_count: 2 });
        expect(res.status).to.equal(200);
        expect(res.body.created_users).to.have.length(2);
        expect(res.body.created_users).to.not.include('ignored_name');
        expect(await User.count({ where: { username: 'ignored_name' } })).to.equal(0);
      });

      it('1000 users in one call: all created with distinct names, passwords and WireGuard addresses', async () => {
        const before = await countUsers();
        const started = Date.now();
        const res = await admin().post('/users', { bulk_count: 1000, enable_wg1: true, enable_l2tp: true });
        const elapsed = Date.now() - started;
        expect(res.status).to.equal(200);
        expect(new Set(res.body.created_users).size).to.equal(1000);
        expect(await countUsers()).to.equal(before + 1000);
        const rows = await User.findAll({ where: { username: res.body.created_users }, raw: true });
        expect(new Set(rows.map((r) => r.wg_address)).size).to.equal(1000);
        expect(rows.every((r) => /^10\.66\.\d+\.\d+\/32$/.test(r.wg_address ?? ''))).to.equal(true);
        expect(new Set(rows.map((r) => r.l2tp_password)).size).to.be.greaterThan(990);
        expect(await SubscriptionToken.count({ where: { user_id: rows.map((r) => r.id), revoked_at: null } })).to.equal(1000);
        // The goal is well under a second on SQLite; the bound here only catches pathologies on a busy CI machine.
        expect(elapsed).to.be.below(10_000);
      });

      it('random names never collide with existing users, growing past 4 digits when those are taken', async () => {
        const taken = Array.from({ length: 9000 }, (_, i) => `user${1000 + i}`);
        const existing = new Set((await User.findAll({ attributes: ['username'], raw: true })).map((u) => u.username));
        await User.bulkCreate(taken.filter((n) => !existing.has(n)).map((username) => ({ username, sub_admin_id: null, pending_activation_days: null, expiry_date: null, first_connection_at: null, last_traffic_reset_at: null, openvpn_password: null, l2tp_password: null, cisco_password: null, wg_private_key: null, wg_public_key: null, wg_address: null, nodes: null, notes: null })));
        const res = await admin().post('/users', { bulk_count: 5 });
        expect(res.status).to.equal(200);
        for (const name of res.body.created_users) expect(name).to.match(/^user\d{5,}$/);
        await User.destroy({ where: { username: taken.filter((n) => !existing.has(n)) } });
      });
    });

    // ---------------------------------------------------------------------------------------
    describe('reseller limits and ownership', () => {
      it('a sub-admin over max_users_limit gets 403 and no user of the batch is created (all or nothing)', async () => {
        const r = await createReseller({ max_users_limit: 5 });
        const first = await api(r.key).post('/users', { bulk_count: 3 });
        expect(first.status).to.equal(200);
        const before = await countUsers();
        const over = await api(r.key).post('/users', { bulk_count: 3 });
        expect(over.status).to.equal(403);
        expect(over.body).to.deep.equal({ success: false, message: 'User limit reached: this sub-admin may have at most 5 users (3 exist).' });
        expect(await countUsers()).to.equal(before);
        expect((await api(r.key).post('/users', { bulk_count: 2 })).status).to.equal(200);
        const single = await api(r.key).post('/users', { username: 'one_too_many' });
        expect(single.status).to.equal(403);
        expect(single.body).to.deep.equal({ success: false, message: 'User limit reached: this sub-admin may have at most 5 users (5 exist).' });
        expect(await User.count({ where: { sub_admin_id: r.id } })).to.equal(5);
      });

      it('concurrent creates cannot together pass a reseller\'s max_users_limit', async () => {
        const r = await createReseller({ max_users_limit: 3 });
        const results = await Promise.all([1, 2, 3].map(() => api(r.key).post('/users', { bulk_count: 2 })));
        expect(results.map((res) => res.status).sort()).to.deep.equal([200, 403, 403]);
        expect(await User.count({ where: { sub_admin_id: r.id } })).to.equal(2);
      });

      it('a sub-admin whose used traffic reached total_usage_quota_gb gets 403 and nothing is created', async () => {
        const r = await createReseller({ total_usage_quota_gb: 1, used_traffic_bytes: GiB });
        const before = await countUsers();
        for (const body of [{ username: 'quota_user' }, { bulk_count: 4 }]) {
          const res = await api(r.key).post('/users', body);
          expect(res.status).to.equal(403);
          expect(res.body).to.deep.equal({ success: false, message: 'Traffic quota exhausted: this sub-admin has used its total_usage_quota_gb.' });
        }
        expect(await countUsers()).to.equal(before);
        await SubAdmin.update({ used_traffic_bytes: GiB - 1 }, { where: { id: r.id } });
        expect((await api(r.key).post('/users', { username: 'quota_user' })).status).to.equal(200);
      });

      it('a sub-admin key owns what it creates; sub_admin_id in its body is ignored', async () => {
        const r = await createReseller();
        const other = await createReseller();
        await createUser('owned_by_r', { sub_admin_id: other.id }, r.key);
        expect((await detail('owned_by_r')).sub_admin_id).to.equal(r.id);
        await createUser('owned_by_r2', { sub_admin_id: null }, r.key);
        expect((await detail('owned_by_r2')).sub_admin_id).to.equal(r.id);
      });

      it('the main admin assigns a user to a reseller with sub_admin_id (not held to its limits); an unknown id is 400 "Unknown sub_admin_id."', async () => {
        const r = await createReseller({ max_users_limit: 1, total_usage_quota_gb: 1, used_traffic_bytes: 5 * GiB });
        const res = await admin().post('/users', { bulk_count: 2, sub_admin_id: r.id });
        expect(res.status).to.equal(200);
        for (const name of res.body.created_users) expect((await detail(name)).sub_admin_id).to.equal(r.id);
        for (const sub_admin_id of [999_999, -1, 1.5]) {
          const bad = await admin().post('/users', { username: 'nobody_owns', sub_admin_id });
          expect(bad.status).to.equal(400);
          expect(bad.body).to.deep.equal({ success: false, message: 'Unknown sub_admin_id.' });
        }
      });
    });

    // ---------------------------------------------------------------------------------------
    describe('nodes and server lists', () => {
      let nodeA: number;
      let nodeB: number;
      before(async () => {
        nodeA = (await NodeRecord.create({ name: 'Node A', ip_address: '203.0.113.10', ssh_secret: null, communication_method: null, status_message: null, status: 'active' })).id;
        nodeB = (await NodeRecord.create({ name: 'Node B', ip_address: '203.0.113.20', ssh_secret: null, communication_method: null, status_message: null, status: 'active', openvpn_port: 1195, protocol: 'tcp' })).id;
      });

      it('nodes pins a user to servers; the server lists show exactly those, with each server\'s address', async () => {
        await createUser('pinned', { nodes: ['main', `node_${nodeA}`, 'main'], enable_l2tp: true });
        const d = await detail('pinned');
        expect(d.nodes).to.deep.equal(['main', `node_${nodeA}`]);
        expect(d.openvpn_servers).to.deep.equal([
          { name: 'Main Server', is_tunnel: false, address: 'panel.example.test', port: 1194, protocol: 'udp' },
          { name: 'Node: Node A', is_tunnel: false, address: '203.0.113.10', port: 1194, protocol: 'udp' },
        ]);
        expect(d.l2tp_servers.map((s: { address: string }) => s.address)).to.deep.equal(['panel.example.test', '203.0.113.10']);
      });

      it('without nodes (or with an empty list) a user may use every server', async () => {
        await createUser('unpinned', { nodes: [] });
        const d = await detail('unpinned');
        expect(d.nodes).to.deep.equal([]);
        expect(d.openvpn_servers.map((s: { name: string; port: number; protocol: string }) => `${s.name}:${s.port}/${s.protocol}`)).to.deep.equal([
          'Main Server:1194/udp',
          'Node: Node A:1194/udp',
          'Node: Node B:1195/tcp',
        ]);
      });

      it('an unknown server id is 400 naming it; a server outside the reseller\'s allowed_servers is 400 naming it', async () => {
        let res = await admin().post('/users', { username: 'bad_nodes', nodes: ['main', 'node_999'] });
        expect(res.status).to.equal(400);
        expect(res.body).to.deep.equal({ success: false, message: "Invalid nodes: unknown server 'node_999'." });
        const r = await createReseller({ allowed_servers: ['main', `node_${nodeA}`] });
        res = await api(r.key).post('/users', { username: 'bad_nodes', nodes: [`node_${nodeB}`] });
        expect(res.status).to.equal(400);
        expect(res.body).to.deep.equal({ success: false, message: `Invalid nodes: server 'node_${nodeB}' is not allowed for this sub-admin.` });
        res = await admin().post('/users', { username: 'bad_nodes', nodes: [`node_${nodeB}`], sub_admin_id: r.id });
        expect(res.status).to.equal(400);
        expect(await User.count({ where: { username: 'bad_nodes' } })).to.equal(0);

        await createUser('res_user_nodes', {}, r.key);
        res = await api(r.key).put('/users/res_user_nodes', { allowed_nodes: ['main', `node_${nodeB}`] });
        expect(res.status).to.equal(400);
        expect(res.body).to.deep.equal({ success: false, message: `Invalid allowed_nodes: server 'node_${nodeB}' is not allowed for this sub-admin.` });
        // Unpinned, a reseller's user sees only the servers its reseller may use.
        expect((await detail('res_user_nodes', r.key)).openvpn_servers.map((s: { name: string }) => s.name)).to.deep.equal(['Main Server', 'Node: Node A']);
      });

      it('all_ovpn_links: one link per OpenVPN endpoint the user may use, custom ports included; none when OpenVPN is off', async () => {
        const port = await Port.create({ public_port: 443, protocol: 'tcp' });
        await PortAssignment.create({ port_id: port.id, server_identifier: 'main' });
        await createUser('links_user', { nodes: ['main', `node_${nodeA}`] });
        const token = tokenOf((await detail('links_user')).subscription_url);
        const res = await admin().get('/users/links_user/all_ovpn_links');
        expect(res.status).to.equal(200);
        const link = (name: string) => ({ name, url: `${BASE}/download/links_user/${name}.ovpn?token=${token}` });
        expect(res.body).to.deep.equal({ success: true, username: 'links_user', links: [link('main_udp'), link(`node_${nodeA}_udp`), link('main_tcp_443')] });
        expect((await detail('links_user')).openvpn_servers.map((s: { port: number }) => s.port)).to.deep.equal([1194, 1194, 443]);

        await PortAssignment.destroy({ where: { port_id: port.id } });
        await Port.destroy({ where: { id: port.id } });
        const after = await admin().get('/users/links_user/all_ovpn_links');
        expect(after.body.links.map((l: { name: string }) => l.name)).to.deep.equal(['main_udp', `node_${nodeA}_udp`]);

        await admin().put('/users/links_user', { enable_openvpn: false });
        expect((await admin().get('/users/links_user/all_ovpn_links')).body).to.deep.equal({ success: true, username: 'links_user', links: [] });
      });

      it('a node added after a detail was served shows up in the next one (no stale server cache)', async () => {
        await createUser('cache_user');
        const before = (await detail('cache_user')).openvpn_servers.length;
        const node = await NodeRecord.create({ name: 'Node C', ip_address: '203.0.113.30', ssh_secret: null, communication_method: null, status_message: null });
        expect((await detail('cache_user')).openvpn_servers.length).to.equal(before + 1);
        await node.destroy();
        expect((await detail('cache_user')).openvpn_servers.length).to.equal(before);
      });
    });

    // ---------------------------------------------------------------------------------------
    describe('GET /users/list_all', () => {
      it('main admin: its own users under main_admin, each reseller\'s users under sub_admins, with status and usage summary', async () => {
        const r = await createReseller();
        await createUser('list_main', { data_limit: 10, expiry_date_str: '2026-12-31', max_clients: 3 });
        await createUser('list_res', {}, r.key);
        await setUsage('list_main', 5, 7);
        const res = await admin().get('/users/list_all');
        expect(res.status).to.equal(200);
        expect(res.body).to.have.keys(['success', 'main_admin', 'sub_admins']);
        expect(res.body.success).to.equal(true);
        const mine = res.body.main_admin.users.find((u: { username: string }) => u.username === 'list_main');
        expect(Object.keys(mine).sort()).to.deep.equal([...LIST_ITEM_KEYS].sort());
        expect(mine).to.deep.equal({ username: 'list_main', status: 'active', is_active: true, is_online: false, data_limit: 10, data_limit_unit: 'GB', total_traffic_bytes: 12, expiry_date: '2027-01-01T00:00:00.000Z', max_clients: 3, sub_admin_id: null });
        expect(res.body.main_admin.users.every((u: { sub_admin_id: number | null }) => u.sub_admin_id === null)).to.equal(true);
        const group = res.body.sub_admins.find((s: { id: number }) => s.id === r.id);
        expect(group).to.deep.equal({ id: r.id, username: `reseller${resellerCounter}`, users: [{ username: 'list_res', status: 'active', is_active: true, is_online: false, data_limit: 0, data_limit_unit: 'GB', total_traffic_bytes: 0, expiry_date: null, max_clients: 1, sub_admin_id: r.id }] });
        const total = res.body.main_admin.users.length + res.body.sub_admins.reduce((n: number, s: { users: unknown[] }) => n + s.users.length, 0);
        expect(total).to.equal(await countUsers());
      });

      it('sub-admin: {success, users} with its own users only', async () => {
        const r = await createReseller();
        const other = await createReseller();
        await createUser('list_sa_user1', {}, r.key);
        await createUser('list_sa_user2', {}, r.key);
        await createUser('list_other', {}, other.key);
        const res = await api(r.key).get('/users/list_all');
        expect(res.status).to.equal(200);
        expect(res.body).to.have.keys(['success', 'users']);
        expect(res.body.users.map((u: { username: string }) => u.username)).to.deep.equal(['list_sa_user1', 'list_sa_user2']);
      });

      it('the status reflects the reseller: a reseller over quota makes its users limited', async () => {
        const r = await createReseller({ total_usage_quota_gb: 1 });
        await createUser('quota_list_user', {}, r.key);
        await SubAdmin.update({ used_traffic_bytes: 2 * GiB }, { where: { id: r.id } });
        const res = await api(r.key).get('/users/list_all');
        expect(res.body.users[0].status).to.equal('limited');
        expect((await detail('quota_list_user', r.key)).status).to.equal('limited');
      });
    });

    // ---------------------------------------------------------------------------------------
    describe('GET /users/{username}', () => {
      it('unknown user: 404 "User not found or permission denied"', async () => {
        const r = await createReseller();
        for (const key of [h.adminKey, r.key]) {
          const res = await api(key).get('/users/unknown_user');
          expect(res.status).to.equal(404);
          expect(res.body).to.deep.equal(NOT_FOUND);
        }
      });

      it('a user inserted without a token (by another component) gets one on first view, stable afterwards', async () => {
        await User.create({ username: 'tokenless', sub_admin_id: null, pending_activation_days: null, expiry_date: null, first_connection_at: null, last_traffic_reset_at: null, openvpn_password: null, l2tp_password: null, cisco_password: null, wg_private_key: null, wg_public_key: null, wg_address: null, nodes: null, notes: null });
        const url = (await detail('tokenless')).subscription_url;
        expect(url).to.match(/\/sub\/tokenless\?token=[A-Za-z0-9_-]{43}$/);
        expect((await admin().get('/users/tokenless/sub')).body.sub_url).to.equal(url);
        expect((await h.services.users.resolveSubscription('tokenless', tokenOf(url)))?.detail).to.include({ username: 'tokenless' });
      });

      it('the main admin sees a reseller\'s user; is_online/active_connections come from live sessions', async () => {
        const r = await createReseller();
        await createUser('seen_by_main', {}, r.key);
        expect(await detail('seen_by_main')).to.include({ sub_admin_id: r.id, is_online: false, active_connections: 0 });
        const live = h.core.ctx.live;
        h.core.ctx.live = { connectionsOf: (u) => (u === 'seen_by_main' ? 2 : 0), totalConnections: () => 2 };
        try {
          expect(await detail('seen_by_main')).to.include({ is_online: true, active_connections: 2 });
          const listed = (await api(r.key).get('/users/list_all')).body.users.find((u: { username: string }) => u.username === 'seen_by_main');
          expect(listed.is_online).to.equal(true);
        } finally {
          h.core.ctx.live = live;
        }
      });
    });

    // ---------------------------------------------------------------------------------------
    describe('PUT /users/{username}', () => {
      it('the reference examples answer "User updated successfully." and change what they say', async () => {
        const node = await NodeRecord.create({ name: 'Edit Node', ip_address: '198.51.100.7', ssh_secret: null, communication_method: null, status_message: null });
        await createUser('edit_user');
        let res = await admin().put('/users/edit_user', { max_clients: 3, data_limit: 100, data_limit_unit: 'GB', notes: 'VIP user' });
        expect(res.status).to.equal(200);
        expect(res.body).to.deep.equal({ success: true, message: 'User updated successfully.' });
        expect(await detail('edit_user')).to.include({ max_clients: 3, data_limit: 100, data_limit_bytes: 100 * GiB, notes: 'VIP user' });
        res = await admin().put('/users/edit_user', { enable_wg1: true, nodes: ['main', `node_${node.id}`] });
        expect(res.body).to.deep.equal({ success: true, message: 'User updated successfully.' });
        const d = await detail('edit_user');
        expect(d.nodes).to.deep.equal(['main', `node_${node.id}`]);
        expect(d.enable_wg1).to.equal(true);
        expect(d.wg_address).to.match(/^10\.66\.\d+\.\d+\/32$/);
        expect(d.wg_public_key).to.match(/^[A-Za-z0-9+/]{43}=$/);
        await node.destroy();
      });

      // An unknown field is its own 400 naming it (test/contract/strict-input.test.ts).
      it('an empty body, a non-object body or one with only the path\'s username is 400 "Request body must be JSON and not empty"', async () => {
        await createUser('edit_empty');
        for (const body of [{}, { username: 'renamed' }]) {
          const res = await admin().put('/users/edit_empty', body);
          expect(res.status, JSON.stringify(body)).to.equal(400);
          expect(res.body).to.deep.equal({ success: false, message: 'Request body must be JSON and not empty' });
        }
        const res = await h.http.put('/api/v1/users/edit_empty').set('X-API-KEY', h.adminKey).set('Content-Type', 'application/json').send('[1,2]');
        expect(res.status).to.equal(400);
        expect(res.body).to.deep.equal({ success: false, message: 'Request body must be JSON and not empty' });
        const broken = await h.http.put('/api/v1/users/edit_empty').set('X-API-KEY', h.adminKey).set('Content-Type', 'application/json').send('{"notes":');
        expect(broken.status).to.equal(400);
        expect(broken.body).to.deep.equal({ success: false, message: 'Request body must be JSON and not empty' });
        expect(await User.count({ where: { username: 'renamed' } })).to.equal(0);
      });

      it('wrong types and bad values are 400 naming the field, and nothing changes', async () => {
        await createUser('edit_typed', { max_clients: 2, notes: 'keep' });
        const before = await detail('edit_typed');
        const cases: [object, string][] = [
          [{ max_clients: '3', notes: 'changed' }, "Field 'max_clients' must be a number, not a string."],
          [{ is_active: 'false' }, "Field 'is_active' must be a boolean, not a string."],
          [{ allowed_nodes: 'main' }, "Field 'allowed_nodes' must be an array, not a string."],
          [{ notes: 'changed', data_limit: -5 }, 'Invalid data_limit: must be 0 (unlimited) or a positive number.'],
          [{ notes: 'changed', expiry_date_str: '2026-13-01' }, 'Invalid expiry_date_str: expected YYYY-MM-DD.'],
          [{ notes: 'changed', cisco_password: 'a b' }, 'Invalid cisco_password: use 1-64 printable ASCII characters without spaces, double quotes or backslashes.'],
          [{ notes: 'changed', nodes: ['node_424242'] }, "Invalid nodes: unknown server 'node_424242'."],
          [{ notes: 'changed', activation_type: 'flexible_days' }, 'pending_activation_days is required for flexible_days activation (a whole number of days, at least 1).'],
          [{ notes: 'changed', sub_admin_id: 987654 }, 'Unknown sub_admin_id.'],
        ];
        for (const [body, message] of cases) {
          const res = await admin().put('/users/edit_typed', body);
          expect(res.status, JSON.stringify(body)).to.equal(400);
          expect(res.body).to.deep.equal({ success: false, message });
        }
        expect(await detail('edit_typed')).to.deep.equal(before);
      });

      it('a unit change alone recomputes data_limit_bytes; data_limit_reset_strategy and is_active are editable', async () => {
        await createUser('edit_unit', { data_limit: 3 });
        await admin().put('/users/edit_unit', { data_limit_unit: 'MB' });
        expect(await detail('edit_unit')).to.include({ data_limit: 3, data_limit_unit: 'MB', data_limit_bytes: 3 * 1024 ** 2 });
        await admin().put('/users/edit_unit', { data_limit_reset_strategy: 'week', is_active: false });
        expect(await detail('edit_unit')).to.include({ data_limit_reset_strategy: 'week', is_active: false, status: 'disabled' });
      });

      it('expiry edits: expiry_date_str, expiry_days, and null/"" to remove the expiry; other fields keep the expiry', async () => {
        await createUser('edit_exp', { expiry_days: 10 });
        await admin().put('/users/edit_exp', { expiry_date_str: '2027-03-15' });
        expect((await detail('edit_exp')).expiry_date).to.equal('2027-03-16T00:00:00.000Z');
        await admin().put('/users/edit_exp', { notes: 'n' });
        expect((await detail('edit_exp')).expiry_date).to.equal('2027-03-16T00:00:00.000Z');
        h.clock.set('2026-08-01T00:00:00.000Z');
        await admin().put('/users/edit_exp', { expiry_days: 2 });
        expect((await detail('edit_exp')).expiry_date).to.equal('2026-08-03T00:00:00.000Z');
        await admin().put('/users/edit_exp', { expiry_date_str: '' });
        expect((await detail('edit_exp')).expiry_date).to.equal(null);
        await admin().put('/users/edit_exp', { expiry_days: 1 });
        await admin().put('/users/edit_exp', { expiry_date_str: null });
        expect((await detail('edit_exp')).expiry_date).to.equal(null);
      });

      it('switching to flexible_days puts the user on hold; back to fixed_date with a date sets it', async () => {
        await createUser('edit_flex', { expiry_days: 10 });
        await admin().put('/users/edit_flex', { activation_type: 'flexible_days', pending_activation_days: 7 });
        expect(await detail('edit_flex')).to.include({ status: 'on_hold', activation_type: 'flexible_days', pending_activation_days: 7, expiry_date: null });
        await admin().put('/users/edit_flex', { activation_type: 'fixed_date', expiry_date_str: '2026-09-30' });
        expect(await detail('edit_flex')).to.include({ status: 'active', activation_type: 'fixed_date', pending_activation_days: null, expiry_date: '2026-10-01T00:00:00.000Z' });
      });

      it('an activated flexible user whose pending_activation_days changes gets its expiry moved from the first connection', async () => {
        await createUser('edit_flex_active', { activation_type: 'flexible_days', pending_activation_days: 10 });
        const first = new Date('2026-06-02T08:00:00.000Z');
        await User.update({ first_connection_at: first, expiry_date: new Date(first.getTime() + 10 * DAY_MS) }, { where: { username: 'edit_flex_active' } });
        await admin().put('/users/edit_flex_active', { pending_activation_days: 20 });
        expect(await detail('edit_flex_active')).to.include({ status: 'active', pending_activation_days: 20, expiry_date: new Date(first.getTime() + 20 * DAY_MS).toISOString(), first_connection_at: first.toISOString() });
      });

      it('enabling a protocol generates its password; a given one replaces it; the main admin can move a user to a reseller and back', async () => {
        const r = await createReseller();
        await createUser('edit_proto');
        await admin().put('/users/edit_proto', { enable_cisco: true });
        const generated = (await detail('edit_proto')).cisco_password;
        expect(generated).to.match(/^[A-Za-z0-9]{12}$/);
        await admin().put('/users/edit_proto', { cisco_password: 'NewPass#1', openvpn_password: 'Ovpn!2' });
        expect(await detail('edit_proto')).to.include({ cisco_password: 'NewPass#1', openvpn_password: 'Ovpn!2' });
        await admin().put('/users/edit_proto', { sub_admin_id: r.id });
        expect((await detail('edit_proto', r.key)).sub_admin_id).to.equal(r.id);
        // A sub-admin's sub_admin_id is ignored: it cannot give its user away.
        await api(r.key).put('/users/edit_proto', { sub_admin_id: null, notes: 'still mine' });
        expect(await detail('edit_proto', r.key)).to.include({ sub_admin_id: r.id, notes: 'still mine' });
        await admin().put('/users/edit_proto', { sub_admin_id: null });
        expect((await detail('edit_proto')).sub_admin_id).to.equal(null);
      });

      it('unknown user: 404', async () => {
        const res = await admin().put('/users/unknown_user', { notes: 'x' });
        expect(res.status).to.equal(404);
        expect(res.body).to.deep.equal(NOT_FOUND);
      });
    });

    // ---------------------------------------------------------------------------------------
    describe('toggle, reset_traffic, revoke, delete, sub', () => {
      it('toggle flips is_active and answers {"message": "User toggled", "is_active"}', async () => {
        await createUser('toggle_user');
        let res = await admin().post('/users/toggle_user/toggle');
        expect(res.status).to.equal(200);
        expect(res.body).to.deep.equal({ success: true, message: 'User toggled', is_active: false });
        expect((await detail('toggle_user')).status).to.equal('disabled');
        res = await admin().post('/users/toggle_user/toggle');
        expect(res.body).to.deep.equal({ success: true, message: 'User toggled', is_active: true });
        res = await admin().post('/users/unknown_user/toggle');
        expect(res.status).to.equal(404);
        expect(res.body).to.deep.equal(NOT_FOUND);
      });

      it('reset_traffic zeroes usage and says user_re_enabled only when the user\'s own limit was what held it back', async () => {
        const r = await createReseller({ total_usage_quota_gb: 1 });
        await createUser('reset_limited', { data_limit: 1 });
        await createUser('reset_unlimited');
        await createUser('reset_disabled', { data_limit: 1 });
        await createUser('reset_expired', { data_limit: 1, expiry_days: 1 });
        await createUser('reset_reseller', { data_limit: 1 }, r.key);
        for (const name of ['reset_limited', 'reset_unlimited', 'reset_disabled', 'reset_expired', 'reset_reseller']) {
          await setUsage(name, GiB, GiB);
        }
        await admin().post('/users/reset_disabled/toggle');
        await SubAdmin.update({ used_traffic_bytes: 3 * GiB }, { where: { id: r.id } });
        h.clock.advance(2 * DAY_MS);
        expect((await detail('reset_limited')).status).to.equal('limited');

        const expected: Record<string, boolean> = { reset_limited: true, reset_unlimited: false, reset_disabled: false, reset_expired: false, reset_reseller: false };
        for (const [name, reEnabled] of Object.entries(expected)) {
          const res = await admin().post(`/users/${name}/reset_traffic`);
          expect(res.status).to.equal(200);
          expect(res.body, name).to.deep.equal({ success: true, message: `Traffic reset for '${name}'.`, user_re_enabled: reEnabled });
          expect(await detail(name)).to.include({ upload_bytes: 0, download_bytes: 0, total_traffic_bytes: 0 });
        }
        expect((await detail('reset_limited')).status).to.equal('active');
        expect((await detail('reset_reseller')).status).to.equal('limited');
        const res = await admin().post('/users/unknown_user/reset_traffic');
        expect(res.status).to.equal(404);
        expect(res.body).to.deep.equal(NOT_FOUND);
      });

      it('revoke replaces the token at once: the old one resolves to nothing, the new one to the user', async () => {
        await createUser('revoke_user', { enable_wg1: true, nodes: ['main'] });
        const oldUrl = (await detail('revoke_user')).subscription_url;
        const oldToken = tokenOf(oldUrl);
        expect((await h.services.users.resolveSubscription('revoke_user', oldToken))?.detail).to.include({ username: 'revoke_user' });
        const res = await admin().post('/users/revoke_user/revoke');
        expect(res.status).to.equal(200);
        expect(Object.keys(res.body).sort()).to.deep.equal(['message', 'new_subscription_url', 'success']);
        expect(res.body).to.include({ success: true, message: 'Token revoked instantly. Certificate generation running in background.' });
        const newUrl: string = res.body.new_subscription_url;
        expect(newUrl).to.match(/^http:\/\/panel\.example\.test:8080\/sub\/revoke_user\?token=[A-Za-z0-9_-]{43}$/);
        expect(newUrl).to.not.equal(oldUrl);
        expect(await h.services.users.resolveSubscription('revoke_user', oldToken)).to.equal(null);
        const resolved = await h.services.users.resolveSubscription('revoke_user', tokenOf(newUrl));
        expect(resolved!.detail).to.include({ username: 'revoke_user', subscription_url: newUrl });
        expect(resolved!.row.material.wg_private_key).to.match(/^[A-Za-z0-9+/]{43}=$/);
        expect(resolved!.clientConfigs.map((c) => ({ name: c.endpoint.name, url: c.url }))).to.deep.equal([{ name: 'main_udp', url: `${BASE}/download/revoke_user/main_udp.ovpn?token=${tokenOf(newUrl)}` }]);
        expect((await detail('revoke_user')).subscription_url).to.equal(newUrl);
        expect((await admin().get('/users/revoke_user/sub')).body).to.deep.equal({ success: true, sub_url: newUrl });
        const row = (await User.findOne({ where: { username: 'revoke_user' }, raw: true }))!;
        const tokens = await SubscriptionToken.findAll({ where: { user_id: row.id }, raw: true });
        expect(tokens.filter((t) => t.revoked_at === null)).to.have.length(1);
        expect(tokens.find((t) => t.token === oldToken)!.revoked_at).to.not.equal(null);

        const unknown = await admin().post('/users/unknown_user/revoke');
        expect(unknown.status).to.equal(404);
        expect(unknown.body).to.deep.equal(NOT_FOUND_REVOKE);
      });

      it('resolveSubscription: wrong token, another user\'s token, unknown user and empty token all give null', async () => {
        await createUser('resolve_a');
        await createUser('resolve_b');
        const tokenA = tokenOf((await detail('resolve_a')).subscription_url);
        const users = h.services.users;
        expect(await users.resolveSubscription('resolve_a', `${tokenA.slice(0, -1)}${tokenA.endsWith('A') ? 'B' : 'A'}`)).to.equal(null);
        expect(await users.resolveSubscription('resolve_b', tokenA)).to.equal(null);
        expect(await users.resolveSubscription('nobody_here', tokenA)).to.equal(null);
        expect(await users.resolveSubscription('resolve_a', '')).to.equal(null);
        expect((await users.resolveSubscription('resolve_a', tokenA))?.detail).to.include({ username: 'resolve_a' });
      });

      it('GET /users/{u}/sub gives the subscription URL; a reseller with a subscription_port gets that port', async () => {
        const r = await createReseller({ subscription_port: 2096 });
        await createUser('sub_main');
        await createUser('sub_res', {}, r.key);
        const main = await admin().get('/users/sub_main/sub');
        expect(main.status).to.equal(200);
        expect(Object.keys(main.body).sort()).to.deep.equal(['sub_url', 'success']);
        expect(main.body.sub_url).to.match(/^http:\/\/panel\.example\.test:8080\/sub\/sub_main\?token=[A-Za-z0-9_-]{43}$/);
        const res = await api(r.key).get('/users/sub_res/sub');
        expect(res.body.sub_url).to.match(/^http:\/\/panel\.example\.test:2096\/sub\/sub_res\?token=[A-Za-z0-9_-]{43}$/);
        expect((await detail('sub_res')).subscription_url).to.equal(res.body.sub_url);
        expect((await api(r.key).get('/users/sub_res/all_ovpn_links')).body.links[0].url).to.match(/^http:\/\/panel\.example\.test:2096\/download\/sub_res\/main_udp\.ovpn\?token=/);
        const unknown = await admin().get('/users/unknown_user/sub');
        expect(unknown.status).to.equal(404);
        expect(unknown.body).to.deep.equal(NOT_FOUND);
      });

      it('delete removes the user and its tokens; the name is free again', async () => {
        await createUser('delete_user');
        const row = (await User.findOne({ where: { username: 'delete_user' }, raw: true }))!;
        const token = tokenOf((await detail('delete_user')).subscription_url);
        const res = await admin().del('/users/delete_user');
        expect(res.status).to.equal(200);
        expect(res.body).to.deep.equal({ success: true, message: "User 'delete_user' deleted successfully." });
        expect((await admin().get('/users/delete_user')).status).to.equal(404);
        expect(await SubscriptionToken.count({ where: { user_id: row.id } })).to.equal(0);
        expect(await h.services.users.resolveSubscription('delete_user', token)).to.equal(null);
        const again = await admin().del('/users/delete_user');
        expect(again.status).to.equal(404);
        expect(again.body).to.deep.equal(NOT_FOUND);
        await createUser('delete_user');
      });

      it('events: users.changed after create/edit/toggle/reset, users.revoked, users.deleted — each after the commit', async () => {
        const rec = recordEvents();
        const committed: boolean[] = [];
        const off = h.core.ctx.events.on('users.changed', ({ usernames }) => {
          void User.count({ where: { username: usernames } }).then((n) => committed.push(n === usernames.length));
        });
        try {
          const created = await admin().post('/users', { bulk_count: 2 });
          await createUser('event_user');
          await admin().put('/users/event_user', { notes: 'n' });
          await admin().post('/users/event_user/toggle');
          await admin().post('/users/event_user/reset_traffic');
          await admin().post('/users/event_user/revoke');
          await admin().del('/users/event_user');
          await admin().put('/users/event_user', { notes: 'gone' });
          expect(rec.seen).to.deep.equal([
            { name: 'users.changed', payload: { usernames: created.body.created_users } },
            { name: 'users.changed', payload: { usernames: ['event_user'] } },
            { name: 'users.changed', payload: { usernames: ['event_user'] } },
            { name: 'users.changed', payload: { usernames: ['event_user'] } },
            { name: 'users.changed', payload: { usernames: ['event_user'] } },
            { name: 'users.revoked', payload: { username: 'event_user' } },
            { name: 'users.deleted', payload: { usernames: ['event_user'] } },
          ]);
          await new Promise((resolve) => setTimeout(resolve, 50));
          expect(committed.slice(0, 2)).to.deep.equal([true, true]);
        } finally {
          rec.stop();
          off();
        }
      });
    });

    // ---------------------------------------------------------------------------------------
    describe('reseller isolation', () => {
      it('reseller B gets the same 404 for A\'s user as for a user that does not exist, on every endpoint, and A\'s user is unchanged', async () => {
        const a = await createReseller();
        const b = await createReseller();
        await createUser('iso_user', { data_limit: 5, notes: 'A owns this', enable_l2tp: true }, a.key);
        await setUsage('iso_user', 100, 200);
        const before = await detail('iso_user', a.key);
        const tokensBefore = await SubscriptionToken.findAll({ raw: true, order: [['id', 'ASC']] });

        for (const target of ['iso_user', 'iso_missing']) {
          const calls: [string, Promise<{ status: number; body: unknown }>, object][] = [
            ['GET', api(b.key).get(`/users/${target}`), NOT_FOUND],
            ['PUT', api(b.key).put(`/users/${target}`, { notes: 'B was here', max_clients: 9 }), NOT_FOUND],
            ['toggle', api(b.key).post(`/users/${target}/toggle`), NOT_FOUND],
            ['revoke', api(b.key).post(`/users/${target}/revoke`), NOT_FOUND_REVOKE],
            ['reset', api(b.key).post(`/users/${target}/reset_traffic`), NOT_FOUND],
            ['sub', api(b.key).get(`/users/${target}/sub`), NOT_FOUND],
            ['links', api(b.key).get(`/users/${target}/all_ovpn_links`), NOT_FOUND],
            ['DELETE', api(b.key).del(`/users/${target}`), NOT_FOUND],
          ];
          for (const [label, call, body] of calls) {
            const res = await call;
            expect(res.status, `${label} ${target}`).to.equal(404);
            expect(res.body, `${label} ${target}`).to.deep.equal(body);
          }
        }
        const listed = await api(b.key).get('/users/list_all');
        expect(listed.body).to.deep.equal({ success: true, users: [] });

        expect(await detail('iso_user', a.key)).to.deep.equal(before);
        expect(await SubscriptionToken.findAll({ raw: true, order: [['id', 'ASC']] })).to.deep.equal(tokensBefore);
        expect(before).to.include({ notes: 'A owns this', total_traffic_bytes: 300, is_active: true, sub_admin_id: a.id });
      });

      it('a reseller can run every endpoint on its own user', async () => {
        const a = await createReseller();
        const k = api(a.key);
        await createUser('own_user', {}, a.key);
        expect((await k.get('/users/own_user')).status).to.equal(200);
        expect((await k.put('/users/own_user', { notes: 'mine' })).body).to.deep.equal({ success: true, message: 'User updated successfully.' });
        expect((await k.post('/users/own_user/toggle')).body).to.deep.equal({ success: true, message: 'User toggled', is_active: false });
        expect((await k.post('/users/own_user/reset_traffic')).body).to.deep.equal({ success: true, message: "Traffic reset for 'own_user'.", user_re_enabled: false });
        expect((await k.post('/users/own_user/revoke')).status).to.equal(200);
        expect((await k.get('/users/own_user/sub')).status).to.equal(200);
        expect((await k.get('/users/own_user/all_ovpn_links')).status).to.equal(200);
        expect((await k.del('/users/own_user')).body).to.deep.equal({ success: true, message: "User 'own_user' deleted successfully." });
      });
    });

    // ---------------------------------------------------------------------------------------
    describe('tRPC transport', () => {
      it('the same procedures answer with the same domain messages', async () => {
        const caller = h.caller(h.adminKey);
        await caller.users.create({ username: 'trpc_user', data_limit: 2, data_limit_unit: 'MB' });
        const d = await caller.users.get({ username: 'trpc_user' });
        expect(d).to.include({ username: 'trpc_user', data_limit_bytes: 2 * 1024 ** 2 });
        let message = '';
        try {
          await caller.users.create({ max_clients: 1 });
        } catch (e) {
          message = (e as Error).message;
        }
        expect(message).to.equal('Username is required.');
      });
    });
  });
});
