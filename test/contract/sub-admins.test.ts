import { expect } from 'chai';
import { ApiKey, NodeRecord, PortReservation, SubAdmin, SubscriptionToken, User } from '../../core/db';
import type { DomainEventMap } from '../../core/events';
import { randomKey, sha256Hex, verifyPassword } from '../../core/secrets';
import { GiB } from '../../core/services/user-status';
import { insertUserRow } from '../helpers/user-rows';
import { createHarness, forEachDatabase, type Harness } from '../helpers/harness';

const GB = GiB;

/** Collects domain events of the given names while a test runs. */
function recordEvents(h: Harness, names: (keyof DomainEventMap)[]) {
  const seen: { name: string; payload: unknown }[] = [];
  const offs = names.map((name) => h.services.ctx.events.on(name, (payload) => seen.push({ name, payload })));
  return { seen, stop: () => offs.forEach((off) => off()) };
}

let userCounter = 0;
/** Users are inserted directly: this suite is about resellers, not the users API. */
/** A user row (plus its usage counters in user_usage when given) and a subscription token. */
async function insertUser(
  subAdminId: number | null,
  { upload_bytes = 0, download_bytes = 0, ...fields }: Partial<Parameters<typeof User.create>[0]> & { upload_bytes?: number; download_bytes?: number } = {},
): Promise<User> {
  const user = await insertUserRow({
    username: `u${++userCounter}_${randomKey(3).replace(/[^a-zA-Z0-9]/g, 'x')}`,
    sub_admin_id: subAdminId,
    upload_bytes,
    download_bytes,
    ...fields,
  });
  await SubscriptionToken.create({ user_id: user.id, token: randomKey(24), revoked_at: null });
  return user;
}

forEachDatabase((kind) => {
  describe(`sub-admins API [${kind}]`, () => {
    let h: Harness;
    let n = 0;
    const name = (prefix = 'sa') => `${prefix}${++n}`;

    async function createSubAdmin(body: Record<string, unknown> = {}) {
      const username = (body.username as string | undefined) ?? name();
      const res = await h.http.post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey).send({ username, password: 'pass', ...body });
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      return res.body.sub_admin as { id: number; username: string; api_key: string };
    }

    before(async () => {
      h = await createHarness(kind);
    });
    after(() => h.close());

    describe('authorization', () => {
      let resellerKey: string;
      before(async () => {
        resellerKey = (await createSubAdmin()).api_key;
      });

      it('a missing key is 401 "API key is missing" and an unknown key 401 "Invalid or inactive API key"', async () => {
        let res = await h.http.get('/api/v1/sub_admins');
        expect(res.status).to.equal(401);
        expect(res.body).to.deep.equal({ success: false, message: 'API key is missing' });
        res = await h.http.get('/api/v1/sub_admins').set('X-API-KEY', 'INVALID_KEY');
        expect(res.status).to.equal(401);
        expect(res.body).to.deep.equal({ success: false, message: 'Invalid or inactive API key' });
      });

      it('every sub-admin endpoint refuses a sub-admin key with 403 "Permission denied"', async () => {
        const calls = [
          h.http.get('/api/v1/sub_admins'),
          h.http.post('/api/v1/sub_admins').send({ username: 'x_reseller', password: 'p' }),
          h.http.put('/api/v1/sub_admins/1').send({ notes: 'x' }),
          h.http.post('/api/v1/sub_admins/1/reset_usage'),
          h.http.delete('/api/v1/sub_admins/1'),
        ];
        for (const call of calls) {
          const res = await call.set('X-API-KEY', resellerKey);
          expect(res.status).to.equal(403);
          expect(res.body).to.deep.equal({ success: false, message: 'Permission denied' });
        }
        expect(await SubAdmin.count({ where: { username: 'x_reseller' } })).to.equal(0);
      });

      it('the tRPC transport refuses a sub-admin with the same FORBIDDEN message', async () => {
        let error: unknown;
        await h
          .caller(resellerKey)
          .subAdmins.list()
          .catch((e: unknown) => (error = e));
        expect((error as { code?: string }).code).to.equal('FORBIDDEN');
        expect((error as Error).message).to.equal('Permission denied');
      });
    });

    describe('POST /sub_admins', () => {
      it('creates a reseller: the answer carries the key once, only its SHA-256 and a scrypt hash are stored', async () => {
        const node = await NodeRecord.create({ name: 'Node A', ip_address: '198.51.100.7', ssh_secret: null, communication_method: null, status_message: null });
        const events = recordEvents(h, ['sub_admins.changed']);
        const res = await h.http
          .post('/api/v1/sub_admins')
          .set('X-API-KEY', h.adminKey)
          .send({
            username: 'sa_create',
            password: 'pass',
            subscription_port: 42096,
            panel_port: 48888,
            max_users_limit: 100,
            total_usage_quota_gb: 500,
            is_active: true,
            notes: 'Reseller A',
            allowed_servers: ['main', `node_${node.id}`],
          });
        events.stop();
        expect(res.status).to.equal(200);
        expect(Object.keys(res.body).sort()).to.deep.equal(['message', 'sub_admin', 'success']);
        expect(res.body.success).to.equal(true);
        expect(res.body.message).to.equal('Sub-admin created successfully and ports configured.');
        const { id, username, api_key } = res.body.sub_admin;
        expect(username).to.equal('sa_create');
        expect(id).to.be.a('number');
        expect(api_key).to.be.a('string').with.length.of.at.least(43);
        expect(events.seen).to.deep.equal([{ name: 'sub_admins.changed', payload: { subAdminId: id } }]);

        const key = await ApiKey.findOne({ where: { sub_admin_id: id }, raw: true });
        expect(key?.kind).to.equal('sub_admin');
        expect(key?.key_hash).to.equal(sha256Hex(api_key));
        const row = await SubAdmin.findByPk(id);
        expect(row!.password_hash).to.not.contain('pass');
        expect(verifyPassword('pass', row!.password_hash)).to.equal(true);

        const claims = await PortReservation.findAll({ where: { owner: [`sub_admin:${id}:panel`, `sub_admin:${id}:subscription`] }, raw: true, order: [['port', 'ASC']] });
        expect(claims.map((c) => [c.server_identifier, c.port, c.protocol, c.owner])).to.deep.equal([
          ['main', 42096, 'tcp', `sub_admin:${id}:subscription`],
          ['main', 48888, 'tcp', `sub_admin:${id}:panel`],
        ]);

        const health = await h.http.get('/api/v1/health').set('X-API-KEY', api_key);
        expect(health.status).to.equal(200);
      });

      it('missing username or password (or empty ones) is 400 "Username and password are required."', async () => {
        for (const body of [{ username: 'sa2' }, { password: 'pass' }, {}, { username: '', password: 'x' }, { username: 'sa2', password: '' }]) {
          const res = await h.http.post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey).send(body);
          expect(res.status).to.equal(400);
          expect(res.body).to.deep.equal({ success: false, message: 'Username and password are required.' });
        }
        const res = await h.http.post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey);
        expect(res.body).to.deep.equal({ success: false, message: 'Username and password are required.' });
      });

      it('tRPC clients get the same required-fields message', async () => {
        let error: unknown;
        await h
          .caller(h.adminKey)
          .subAdmins.create({ username: 'sa2' })
          .catch((e: unknown) => (error = e));
        expect((error as { code?: string }).code).to.equal('BAD_REQUEST');
        expect((error as Error).message).to.equal('Username and password are required.');
      });

      it('a duplicate username is 409 "A sub-admin with this username already exists."', async () => {
        await createSubAdmin({ username: 'sa_dup' });
        const res = await h.http.post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey).send({ username: 'sa_dup', password: 'pass' });
        expect(res.status).to.equal(409);
        expect(res.body).to.deep.equal({ success: false, message: 'A sub-admin with this username already exists.' });
      });

      it('a username outside ^[a-zA-Z0-9_.-]{3,64}$ is a 400 naming the field', async () => {
        for (const username of ['ab', 'a b c', 'x'.repeat(65), 'rm;-rf', 'émile']) {
          const res = await h.http.post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey).send({ username, password: 'pass' });
          expect(res.status, username).to.equal(400);
          expect(res.body).to.deep.equal({ success: false, message: "Field 'username' must be 3 to 64 characters: letters, digits, '_', '.' or '-'." });
        }
        await createSubAdmin({ username: 'Ok.name-1_x' });
      });

      it('ports must be integers in 1024–65535: otherwise a 400 naming the field', async () => {
        const cases: [Record<string, unknown>, string][] = [
          [{ panel_port: 80 }, "Field 'panel_port' must be an integer between 1024 and 65535."],
          [{ panel_port: 65536 }, "Field 'panel_port' must be an integer between 1024 and 65535."],
          [{ subscription_port: 1023 }, "Field 'subscription_port' must be an integer between 1024 and 65535."],
          [{ subscription_port: 2096.5 }, "Field 'subscription_port' must be an integer between 1024 and 65535."],
          [{ panel_port: 'abc' }, "Field 'panel_port' must be a number, not a string."],
          [{ panel_port: 41000, subscription_port: 41000 }, "Fields 'panel_port' and 'subscription_port' must be different ports."],
        ];
        for (const [ports, message] of cases) {
          const res = await h.http.post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey).send({ username: name('bad'), password: 'pass', ...ports });
          expect(res.status, JSON.stringify(ports)).to.equal(400);
          expect(res.body).to.deep.equal({ success: false, message });
        }
      });

      it('other fields are checked: wrong types, negative limits, unknown servers are 400s naming the field', async () => {
        const cases: [Record<string, unknown>, string][] = [
          [{ max_users_limit: -1 }, "Field 'max_users_limit' must be a whole number of users, 0 or more."],
          [{ max_users_limit: 2.5 }, "Field 'max_users_limit' must be a whole number of users, 0 or more."],
          [{ total_usage_quota_gb: -5 }, "Field 'total_usage_quota_gb' must be a number of GB, 0 or more."],
          [{ is_active: 'yes' }, "Field 'is_active' must be a boolean, not a string."],
          [{ allowed_servers: 'main' }, "Field 'allowed_servers' must be an array, not a string."],
          [{ allowed_servers: ['main', 'node_9999'] }, "Field 'allowed_servers' names an unknown server: 'node_9999'."],
          [{ allowed_servers: ['elsewhere'] }, "Field 'allowed_servers' names an unknown server: 'elsewhere'."],
          [{ notes: 'x'.repeat(1001) }, "Field 'notes' must be at most 1000 characters."],
        ];
        for (const [fields, message] of cases) {
          const username = name('bad');
          const res = await h.http.post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey).send({ username, password: 'pass', ...fields });
          expect(res.status, JSON.stringify(fields)).to.equal(400);
          expect(res.body).to.deep.equal({ success: false, message });
          expect(await SubAdmin.count({ where: { username } })).to.equal(0);
        }
      });

      it("a port held by the panel, another reseller or OpenVPN is a 409 naming the owner, and nothing is created", async () => {
        const holder = await createSubAdmin({ username: 'sa_holder', panel_port: 43000, subscription_port: 43001 });
        const custom = await h.http.post('/api/v1/public/ports').set('X-API-KEY', h.adminKey).send({ public_port: 44443, protocol: 'tcp', server_ids: ['main'] });
        expect(custom.status).to.equal(200);
        const panelPort = h.services.ctx.config.port;
        const cases: [Record<string, unknown>, string][] = [
          [{ panel_port: panelPort }, `Port ${panelPort}/tcp on main is already used by the panel.`],
          [{ subscription_port: 43000 }, "Port 43000/tcp on main is already used by sub-admin 'sa_holder' (panel port)."],
          [{ panel_port: 43001 }, "Port 43001/tcp on main is already used by sub-admin 'sa_holder' (subscription port)."],
          [{ panel_port: 44443 }, 'Port 44443/tcp on main is already used by OpenVPN.'],
        ];
        for (const [ports, message] of cases) {
          const username = name('clash');
          const res = await h.http.post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey).send({ username, password: 'pass', panel_port: 45000, subscription_port: 45001, ...ports });
          expect(res.status, JSON.stringify(ports)).to.equal(409);
          expect(res.body).to.deep.equal({ success: false, message });
          // The row, its key and the claim of the other (free) port were rolled back together.
          expect(await SubAdmin.count({ where: { username } })).to.equal(0);
          expect(await PortReservation.count({ where: { port: [45000, 45001] } })).to.equal(0);
        }
        expect(await ApiKey.count({ where: { kind: 'sub_admin' } })).to.equal(await SubAdmin.count());
        expect(holder.id).to.be.a('number');
      });

      it('a reseller without ports is fine (an unknown field is refused: test/contract/strict-input.test.ts)', async () => {
        const created = await createSubAdmin({ username: 'sa_noports' });
        const row = await SubAdmin.findByPk(created.id, { raw: true });
        expect(row?.panel_port).to.equal(null);
        expect(row?.subscription_port).to.equal(null);
      });
    });

    describe('GET /sub_admins', () => {
      it('lists every reseller with its settings, users_count (one GROUP BY) and usage, never a secret', async () => {
        const node = await NodeRecord.create({ name: 'Node L', ip_address: '198.51.100.8', ssh_secret: null, communication_method: null, status_message: null });
        const a = await createSubAdmin({ username: 'sa_list', panel_port: 46000, max_users_limit: 5, total_usage_quota_gb: 1.5, notes: 'n', allowed_servers: [`node_${node.id}`, `node_${node.id}`] });
        await SubAdmin.update({ used_traffic_bytes: 5 * GB }, { where: { id: a.id } });
        await insertUser(a.id);
        await insertUser(a.id);
        await insertUser(null);
        const res = await h.http.get('/api/v1/sub_admins').set('X-API-KEY', h.adminKey);
        expect(res.status).to.equal(200);
        expect(Object.keys(res.body).sort()).to.deep.equal(['sub_admins', 'success']);
        expect(res.body.success).to.equal(true);
        const ids = res.body.sub_admins.map((s: { id: number }) => s.id);
        expect(ids).to.deep.equal([...ids].sort((x: number, y: number) => x - y));
        const entry = res.body.sub_admins.find((s: { id: number }) => s.id === a.id);
        expect(entry).to.deep.equal({
          id: a.id,
          username: 'sa_list',
          subscription_port: null,
          panel_port: 46000,
          max_users_limit: 5,
          total_usage_quota_gb: 1.5,
          is_active: true,
          notes: 'n',
          support_contact: null,
          allowed_servers: [`node_${node.id}`],
          users_count: 2,
          used_traffic_bytes: 5 * GB,
        });
        const empty = res.body.sub_admins.find((s: { username: string }) => s.username === 'sa_noports');
        expect(empty.users_count).to.equal(0);
        expect(empty.allowed_servers).to.deep.equal([]);
        expect(JSON.stringify(res.body)).to.not.match(/api_key|password|scrypt/);
      });
    });

    describe('PUT /sub_admins/{id}', () => {
      it('unknown id is 404 "Sub-admin not found"', async () => {
        const res = await h.http.put('/api/v1/sub_admins/999999').set('X-API-KEY', h.adminKey).send({ notes: 'x' });
        expect(res.status).to.equal(404);
        expect(res.body).to.deep.equal({ success: false, message: 'Sub-admin not found' });
      });

      it('updates limits and notes and answers "Sub-admin updated successfully." with the id', async () => {
        const a = await createSubAdmin();
        const events = recordEvents(h, ['sub_admins.changed']);
        const res = await h.http.put(`/api/v1/sub_admins/${a.id}`).set('X-API-KEY', h.adminKey).send({ max_users_limit: 200, total_usage_quota_gb: 1000, notes: 'Upgraded' });
        events.stop();
        expect(res.status).to.equal(200);
        expect(res.body).to.deep.equal({ success: true, message: 'Sub-admin updated successfully.', sub_admin: { id: a.id } });
        expect(events.seen).to.deep.equal([{ name: 'sub_admins.changed', payload: { subAdminId: a.id } }]);
        const row = await SubAdmin.findByPk(a.id, { raw: true });
        expect([row?.max_users_limit, Number(row?.total_usage_quota_gb), row?.notes]).to.deep.equal([200, 1000, 'Upgraded']);
        // null clears an optional setting
        await h.http.put(`/api/v1/sub_admins/${a.id}`).set('X-API-KEY', h.adminKey).send({ max_users_limit: null, notes: null });
        const cleared = await SubAdmin.findByPk(a.id, { raw: true });
        expect([cleared?.max_users_limit, cleared?.notes]).to.deep.equal([null, null]);
      });

      it('moving ports releases the old claims and takes the new ones; swapping the two ports works', async () => {
        const a = await createSubAdmin({ panel_port: 47000, subscription_port: 47001 });
        let res = await h.http.put(`/api/v1/sub_admins/${a.id}`).set('X-API-KEY', h.adminKey).send({ subscription_port: 47097, panel_port: 47090 });
        expect(res.status).to.equal(200);
        const claims = async () =>
          (await PortReservation.findAll({ where: { owner: [`sub_admin:${a.id}:panel`, `sub_admin:${a.id}:subscription`] }, raw: true, order: [['owner', 'ASC']] })).map((c) => [c.owner, c.port]);
        expect(await claims()).to.deep.equal([
          [`sub_admin:${a.id}:panel`, 47090],
          [`sub_admin:${a.id}:subscription`, 47097],
        ]);
        // The old ports are free again for anyone.
        await createSubAdmin({ panel_port: 47000, subscription_port: 47001 });

        res = await h.http.put(`/api/v1/sub_admins/${a.id}`).set('X-API-KEY', h.adminKey).send({ subscription_port: 47090, panel_port: 47097 });
        expect(res.status).to.equal(200);
        expect(await claims()).to.deep.equal([
          [`sub_admin:${a.id}:panel`, 47097],
          [`sub_admin:${a.id}:subscription`, 47090],
        ]);

        res = await h.http.put(`/api/v1/sub_admins/${a.id}`).set('X-API-KEY', h.adminKey).send({ subscription_port: null });
        expect(res.status).to.equal(200);
        expect(await claims()).to.deep.equal([[`sub_admin:${a.id}:panel`, 47097]]);
        expect((await SubAdmin.findByPk(a.id, { raw: true }))?.subscription_port).to.equal(null);
      });

      it('a port collision on update is a 409 naming the owner and changes nothing', async () => {
        const a = await createSubAdmin({ username: 'sa_upd_a', panel_port: 48100 });
        const b = await createSubAdmin({ panel_port: 48200, notes: 'before' });
        const res = await h.http.put(`/api/v1/sub_admins/${b.id}`).set('X-API-KEY', h.adminKey).send({ panel_port: 48100, notes: 'after' });
        expect(res.status).to.equal(409);
        expect(res.body).to.deep.equal({ success: false, message: "Port 48100/tcp on main is already used by sub-admin 'sa_upd_a' (panel port)." });
        const row = await SubAdmin.findByPk(b.id, { raw: true });
        expect([row?.panel_port, row?.notes]).to.deep.equal([48200, 'before']);
        expect(await PortReservation.count({ where: { owner: `sub_admin:${b.id}:panel`, port: 48200 } })).to.equal(1);
        expect(a.id).to.not.equal(b.id);
      });

      it('update validation: same ports, bad ranges, unknown servers, empty password are 400s', async () => {
        const a = await createSubAdmin({ panel_port: 48300 });
        const cases: [Record<string, unknown>, string][] = [
          [{ subscription_port: 48300 }, "Fields 'panel_port' and 'subscription_port' must be different ports."],
          [{ panel_port: 22 }, "Field 'panel_port' must be an integer between 1024 and 65535."],
          [{ allowed_servers: ['node_424242'] }, "Field 'allowed_servers' names an unknown server: 'node_424242'."],
          [{ password: '' }, "Field 'password' cannot be empty."],
        ];
        for (const [fields, message] of cases) {
          const res = await h.http.put(`/api/v1/sub_admins/${a.id}`).set('X-API-KEY', h.adminKey).send(fields);
          expect(res.status, JSON.stringify(fields)).to.equal(400);
          expect(res.body).to.deep.equal({ success: false, message });
        }
      });

      it('a new password is stored as a fresh scrypt hash', async () => {
        const a = await createSubAdmin();
        const res = await h.http.put(`/api/v1/sub_admins/${a.id}`).set('X-API-KEY', h.adminKey).send({ password: 'n3w-secret' });
        expect(res.status).to.equal(200);
        const row = await SubAdmin.findByPk(a.id);
        expect(verifyPassword('n3w-secret', row!.password_hash)).to.equal(true);
        expect(verifyPassword('pass', row!.password_hash)).to.equal(false);
      });

      it("deactivation makes the reseller's key invalid at once (401), reactivation restores it, and its users are re-evaluated", async () => {
        const a = await createSubAdmin();
        const user = await insertUser(a.id);
        expect((await h.http.get('/api/v1/health').set('X-API-KEY', a.api_key)).status).to.equal(200);
        const events = recordEvents(h, ['users.changed']);
        let res = await h.http.put(`/api/v1/sub_admins/${a.id}`).set('X-API-KEY', h.adminKey).send({ is_active: false });
        events.stop();
        expect(res.status).to.equal(200);
        expect(events.seen).to.deep.equal([{ name: 'users.changed', payload: { usernames: [user.username] } }]);
        res = await h.http.get('/api/v1/health').set('X-API-KEY', a.api_key);
        expect(res.status).to.equal(401);
        expect(res.body).to.deep.equal({ success: false, message: 'Invalid or inactive API key' });
        await h.http.put(`/api/v1/sub_admins/${a.id}`).set('X-API-KEY', h.adminKey).send({ is_active: true });
        expect((await h.http.get('/api/v1/health').set('X-API-KEY', a.api_key)).status).to.equal(200);
      });

      it('a non-numeric id is a 400 naming the field, not a 500', async () => {
        const res = await h.http.put('/api/v1/sub_admins/abc').set('X-API-KEY', h.adminKey).send({ notes: 'x' });
        expect(res.status).to.equal(400);
        expect(res.body.success).to.equal(false);
        expect(res.body.message).to.contain("'id'");
      });
    });

    describe('POST /sub_admins/{id}/reset_usage', () => {
      it('unknown id is 404 "Sub-admin not found." (with the period)', async () => {
        const res = await h.http.post('/api/v1/sub_admins/999999/reset_usage').set('X-API-KEY', h.adminKey);
        expect(res.status).to.equal(404);
        expect(res.body).to.deep.equal({ success: false, message: 'Sub-admin not found.' });
      });

      it('zeroes the usage and counts exactly the users the reseller quota alone was keeping off', async () => {
        const a = await createSubAdmin({ total_usage_quota_gb: 1 });
        await SubAdmin.update({ used_traffic_bytes: 2 * GB }, { where: { id: a.id } });
        const now = h.clock.now();
        const quotaOnly = await insertUser(a.id);
        const onHold = await insertUser(a.id, { activation_type: 'flexible_days', pending_activation_days: 30 });
        const withinOwnLimit = await insertUser(a.id, { data_limit_bytes: GB, upload_bytes: 100, download_bytes: 100 });
        await insertUser(a.id, { data_limit_bytes: GB, upload_bytes: GB, download_bytes: 1 }); // over its own limit: stays limited
        await insertUser(a.id, { is_active: false }); // disabled, not limited
        await insertUser(a.id, { expiry_date: new Date(now.getTime() - 1000) }); // expired, not limited
        const other = await createSubAdmin({ total_usage_quota_gb: 1 });
        await SubAdmin.update({ used_traffic_bytes: 2 * GB }, { where: { id: other.id } });
        await insertUser(other.id);

        const events = recordEvents(h, ['users.changed']);
        const res = await h.http.post(`/api/v1/sub_admins/${a.id}/reset_usage`).set('X-API-KEY', h.adminKey);
        events.stop();
        expect(res.status).to.equal(200);
        expect(res.body).to.deep.equal({ success: true, message: 'Total data usage reset successfully. 3 user(s) were re-enabled.' });
        expect(events.seen).to.have.length(1);
        expect((events.seen[0]!.payload as { usernames: string[] }).usernames.sort()).to.deep.equal(
          [quotaOnly.username, onHold.username, withinOwnLimit.username].sort(),
        );
        expect((await SubAdmin.findByPk(a.id))!.used_traffic_bytes).to.equal(0);
        expect((await SubAdmin.findByPk(other.id))!.used_traffic_bytes).to.equal(2 * GB);

        const again = await h.http.post(`/api/v1/sub_admins/${a.id}/reset_usage`).set('X-API-KEY', h.adminKey);
        expect(again.body).to.deep.equal({ success: true, message: 'Total data usage reset successfully. 0 user(s) were re-enabled.' });
      });

      it('a reseller under its quota re-enables nobody', async () => {
        const a = await createSubAdmin({ total_usage_quota_gb: 10 });
        await SubAdmin.update({ used_traffic_bytes: GB }, { where: { id: a.id } });
        await insertUser(a.id);
        const res = await h.http.post(`/api/v1/sub_admins/${a.id}/reset_usage`).set('X-API-KEY', h.adminKey);
        expect(res.body).to.deep.equal({ success: true, message: 'Total data usage reset successfully. 0 user(s) were re-enabled.' });
        expect((await SubAdmin.findByPk(a.id))!.used_traffic_bytes).to.equal(0);
      });
    });

    describe('DELETE /sub_admins/{id}', () => {
      it('unknown id is 404 "Sub-admin not found"', async () => {
        const res = await h.http.delete('/api/v1/sub_admins/999999').set('X-API-KEY', h.adminKey);
        expect(res.status).to.equal(404);
        expect(res.body).to.deep.equal({ success: false, message: 'Sub-admin not found' });
      });

      it('deletes the reseller, its key, its port claims and all its users with their tokens; others are untouched', async () => {
        const a = await createSubAdmin({ panel_port: 49000, subscription_port: 49001 });
        const b = await createSubAdmin();
        const doomed = [await insertUser(a.id), await insertUser(a.id), await insertUser(a.id)];
        const keptOfB = await insertUser(b.id);
        const keptOfMain = await insertUser(null);

        const events = recordEvents(h, ['users.deleted', 'sub_admins.deleted']);
        const res = await h.http.delete(`/api/v1/sub_admins/${a.id}`).set('X-API-KEY', h.adminKey);
        events.stop();
        expect(res.status).to.equal(200);
        expect(res.body).to.deep.equal({ success: true, message: 'Sub-admin deleted successfully.' });

        expect(events.seen.map((e) => e.name)).to.deep.equal(['users.deleted', 'sub_admins.deleted']);
        expect((events.seen[0]!.payload as { usernames: string[] }).usernames.sort()).to.deep.equal(doomed.map((u) => u.username).sort());
        expect(events.seen[1]!.payload).to.deep.equal({ subAdminId: a.id });

        expect(await SubAdmin.findByPk(a.id)).to.equal(null);
        expect(await ApiKey.count({ where: { sub_admin_id: a.id } })).to.equal(0);
        expect(await User.count({ where: { sub_admin_id: a.id } })).to.equal(0);
        expect(await SubscriptionToken.count({ where: { user_id: doomed.map((u) => u.id) } })).to.equal(0);
        expect(await PortReservation.count({ where: { port: [49000, 49001] } })).to.equal(0);
        expect(await User.count({ where: { id: [keptOfB.id, keptOfMain.id] } })).to.equal(2);
        expect(await SubscriptionToken.count({ where: { user_id: [keptOfB.id, keptOfMain.id] } })).to.equal(2);

        const res401 = await h.http.get('/api/v1/health').set('X-API-KEY', a.api_key);
        expect(res401.status).to.equal(401);
        expect(res401.body).to.deep.equal({ success: false, message: 'Invalid or inactive API key' });
        expect((await h.http.get('/api/v1/health').set('X-API-KEY', b.api_key)).status).to.equal(200);

        // Its ports can be claimed by someone else now; a second delete is a 404.
        await createSubAdmin({ panel_port: 49000, subscription_port: 49001 });
        const again = await h.http.delete(`/api/v1/sub_admins/${a.id}`).set('X-API-KEY', h.adminKey);
        expect(again.status).to.equal(404);
      });
    });
  });
});
