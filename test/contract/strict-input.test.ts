import { expect } from 'chai';
import { User } from '../../core/db';
import { closestName } from '../../api/input-guard';
import { listRestRoutes } from '../../api/rest';
import { createHarness, type Harness } from '../helpers/harness';

/*
 * Issue 12, finding 1: unknown fields were dropped in silence, so `{"datalimit": 5}` made an
 * unlimited user and `PUT {"foo": 1}` was answered "Request body must be JSON and not empty".
 * Now every input refuses a field it does not name, saying which one and, when one is close,
 * the accepted name; the contract's fields and legacy aliases stay accepted.
 */

describe('strict input: unknown fields are refused, naming them', () => {
  let h: Harness;
  const admin = () => h.adminKey;
  before(async () => {
    h = await createHarness('sqlite');
    await h.http.post('/api/v1/users').set('X-API-KEY', admin()).send({ username: 'alice' }).expect(200);
  });
  after(() => h.close());

  const refused = (res: { status: number; body: Record<string, unknown> }, message: string | RegExp) => {
    expect(res.status, JSON.stringify(res.body)).to.equal(400);
    expect(Object.keys(res.body).sort()).to.deep.equal(['message', 'success']);
    expect(res.body.success).to.equal(false);
    if (typeof message === 'string') expect(res.body.message).to.equal(message);
    else expect(res.body.message).to.match(message);
  };

  it('POST /users {"datalimit": 5}: 400 naming the field and data_limit, and no user is created', async () => {
    const res = await h.http.post('/api/v1/users').set('X-API-KEY', admin()).send({ username: 'typo_user', datalimit: 5 });
    refused(res, "Unknown field 'datalimit' (did you mean 'data_limit'?).");
    expect(await User.count({ where: { username: 'typo_user' } })).to.equal(0);
  });

  it('PUT /users/alice {"foo": 1}: the unknown field is the answer, not "Request body must be JSON and not empty"', async () => {
    const res = await h.http.put('/api/v1/users/alice').set('X-API-KEY', admin()).send({ foo: 1 });
    refused(res, /^Unknown field 'foo'\. Accepted fields: .*\bmax_clients\b.*\ballowed_nodes\b/);
    // An empty body keeps the contract's sentence.
    refused(await h.http.put('/api/v1/users/alice').set('X-API-KEY', admin()).send({}), 'Request body must be JSON and not empty');
  });

  it('a misspelt field wins over the other complaints it causes, and several are named in one sentence', async () => {
    const res = await h.http.put('/api/v1/users/alice').set('X-API-KEY', admin()).send({ max_client: 2, enable_wg: true, data_limit: 'x' });
    refused(res, "Unknown fields 'max_client' (did you mean 'max_clients'?), 'enable_wg' (did you mean 'enable_wg1'?).");
    const got = await h.http.get('/api/v1/users/alice').set('X-API-KEY', admin());
    expect(got.body.max_clients, 'nothing changed').to.equal(1);
  });

  it('every route refuses an unknown body field (or query parameter, for GETs that take input) with a 400', async () => {
    const problems: string[] = [];
    for (const route of listRestRoutes().filter((r) => r.takesInput)) {
      const path = `/api/v1${route.path.replace('{username}', 'alice').replace('{id}', '1')}`;
      const m = route.method.toLowerCase() as 'get' | 'post' | 'put' | 'delete';
      const req = m === 'get' ? h.http.get(`${path}?zzz_unknown=1`) : h.http[m](path).send({ zzz_unknown: 1 });
      const res = await req.set('X-API-KEY', admin());
      if (res.status !== 400 || !/^Unknown field 'zzz_unknown'/.test(res.body.message)) problems.push(`${route.method} ${route.path}: ${res.status} ${JSON.stringify(res.body)}`);
    }
    expect(problems, problems.join('\n')).to.deep.equal([]);
  });

  it('the same refusal reaches tRPC clients as the readable sentence', async () => {
    const res = await h.http.post('/trpc/users.create').set('X-API-KEY', admin()).send({ username: 'trpc_typo', datalimit: 5 });
    expect(res.status).to.equal(400);
    expect(res.body.error.message).to.equal("Unknown field 'datalimit' (did you mean 'data_limit'?).");
  });

  it('every field and legacy alias the contract names is still accepted', async () => {
    const create = await h.http
      .post('/api/v1/users')
      .set('X-API-KEY', admin())
      .send({
        username: 'all_fields',
        max_clients: 2,
        activation_type: 'fixed_date',
        expiry_date_str: '2026-12-31',
        expiry_days: 10,
        data_limit: 50,
        data_limit_unit: 'GB',
        enable_openvpn: true,
        enable_l2tp: true,
        l2tp_password: 'P@ss1234',
        enable_cisco: true,
        cisco_password: 'C1sco-pass',
        enable_wg1: true,
        nodes: ['main'],
        notes: 'n',
        sub_admin_id: null,
      });
    expect(create.status, JSON.stringify(create.body)).to.equal(200);
    const bulk = await h.http.post('/api/v1/users').set('X-API-KEY', admin()).send({ bulk_count: 2, activation_type: 'flexible_days', pending_activation_days: 30, allowed_nodes: ['main'] });
    expect(bulk.status, JSON.stringify(bulk.body)).to.equal(200);
    const one = await h.http.get(`/api/v1/users/${bulk.body.created_users[0]}`).set('X-API-KEY', admin());
    expect(one.body.nodes, 'allowed_nodes on create is the alias of nodes').to.deep.equal(['main']);
    const edit = await h.http.put('/api/v1/users/all_fields').set('X-API-KEY', admin()).send({ allowed_nodes: ['main'], expiry_date_str: '2027-01-31', is_active: true, data_limit_reset_strategy: 'month' });
    expect(edit.status, JSON.stringify(edit.body)).to.equal(200);

    const reseller = await h.http
      .post('/api/v1/sub_admins')
      .set('X-API-KEY', admin())
      .send({ username: 'sa1', password: 'pass', subscription_port: 42096, panel_port: 48888, max_users_limit: 100, total_usage_quota_gb: 500, is_active: true, notes: 'Reseller A', allowed_servers: ['main'] });
    expect(reseller.status, JSON.stringify(reseller.body)).to.equal(200);
    const node = await h.http.post('/api/v1/nodes').set('X-API-KEY', admin()).send({ name: 'Node C' });
    expect(node.body.message, 'node fields are known: the contract sentence, not an unknown field').to.equal('Missing required fields: name, ip_address, ssh_password');
    const ports = await h.http.post('/api/v1/public/ports').set('X-API-KEY', admin()).send({ public_port: 443, protocol: 'tcp', server_ids: [] });
    expect(ports.body.message).to.equal('Missing info.');
    const assignment = await h.http.delete('/api/v1/public/ports/assignment').set('X-API-KEY', admin()).send({ port_id: 2 });
    expect(assignment.body.message).to.equal('Missing info.');
    const psk = await h.http.post('/api/v1/update_ipsec_psk').set('X-API-KEY', admin()).send({ new_psk: '' });
    expect(psk.body.message).to.equal('Invalid PSK. Cannot be empty or contain double quotes.');
  });

  it('closestName: case, separators, one edit or a swap; nothing when nothing is close', () => {
    const names = ['data_limit', 'data_limit_unit', 'max_clients', 'expiry_days', 'nodes'];
    expect(closestName('datalimit', names)).to.equal('data_limit');
    expect(closestName('DATA-LIMIT-UNIT', names)).to.equal('data_limit_unit');
    expect(closestName('max_cleints', names)).to.equal('max_clients');
    expect(closestName('node', names)).to.equal('nodes');
    expect(closestName('foo', names)).to.equal(undefined);
    expect(closestName('x'.repeat(5000), names)).to.equal(undefined);
  });
});
