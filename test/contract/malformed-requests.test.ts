import { expect } from 'chai';
import { gzipSync } from 'node:zlib';
import { captureLogs } from '../../core/logger';
import { User } from '../../core/db';
import { createHarness, forEachDatabase, type Harness } from '../helpers/harness';

/*
 * Every malformed request is a 4xx in the envelope and leaves no stack in the log (issue 8,
 * findings 3 and 4): undecodable percent-encoding in any path parameter, NUL bytes in paths
 * and values, broken Content-Encoding bodies, control characters in string fields (refused
 * naming the field, on REST and tRPC alike). Before: URIError / SQLITE_ERROR 500s with stacks.
 */

forEachDatabase((kind) => {
  describe(`malformed requests [${kind}]`, () => {
    let h: Harness;
    let logs: ReturnType<typeof captureLogs>;
    before(async () => {
      h = await createHarness(kind);
      await h.http.post('/api/v1/users').set('X-API-KEY', h.adminKey).send({ username: 'existing_user' }).expect(200);
    });
    beforeEach(() => {
      logs = captureLogs();
    });
    afterEach(function () {
      logs.stop();
      // Nothing above info level and no stack for any of this: the client's fault is not ours.
      const loud = logs.lines.filter((l) => (JSON.parse(l) as { level: number }).level >= 40 || l.includes('"stack"'));
      if (this.currentTest?.state === 'passed') expect(loud, 'log lines').to.deep.equal([]);
    });
    after(() => h.close());

    const envelope400 = (res: { status: number; body: unknown }, what: string) => {
      expect(res.status, what).to.equal(400);
      expect(res.body, what).to.have.keys(['success', 'message']);
      expect((res.body as { success: boolean }).success, what).to.equal(false);
    };

    it('undecodable percent-encoding or a NUL in any path parameter is a 400 envelope, authenticated or not', async () => {
      const paths = [
        '/download/%ff/x.ovpn',
        '/download/existing_user/%ff.ovpn',
        '/sub/%ff',
        '/sub/a%00b',
        '/sub/%E0%A4%A',
        '/api/v1/users/%E0%A4%A',
        '/api/v1/users/a%00b',
        '/api/v1/users/%ff/sub',
        '/api/v1/sub_admins/%ff',
        '/api/v1/nodes/%c0%80',
        '/api/v1/ports/assign/%ff',
        '/nonexistent/%ff',
      ];
      for (const p of paths) {
        envelope400(await h.http.get(p), `GET ${p} without key`);
        envelope400(await h.http.get(p).set('X-API-KEY', h.adminKey), `GET ${p}`);
        envelope400(await h.http.put(p).set('X-API-KEY', h.adminKey).send({ notes: 'x' }), `PUT ${p}`);
      }
    });

    it('a NUL in the subscription token or other query values does not reach SQL: the usual 404 / 400', async () => {
      const sub = await h.http.get('/sub/existing_user?token=a%00b').set('Accept', 'application/json');
      expect(sub.status).to.equal(404);
      const traffic = await h.http.get('/api/v1/stats/traffic?days=1%00').set('X-API-KEY', h.adminKey);
      expect(traffic.status).to.be.within(400, 499);
    });

    it('a body with a broken Content-Encoding (gzip, deflate) is a 400 envelope', async () => {
      const truncated = gzipSync(Buffer.from(JSON.stringify({ username: 'gz_user' }))).subarray(0, 12);
      for (const [encoding, body] of [
        ['gzip', Buffer.concat([truncated, Buffer.from('not gzip at all')])],
        ['gzip', Buffer.from('plain text claiming to be gzip')],
        ['deflate', Buffer.from('plain text claiming to be deflate')],
      ] as const) {
        const res = await h.http.post('/api/v1/users').set('X-API-KEY', h.adminKey).set('Content-Type', 'application/json').set('Content-Encoding', encoding).send(body);
        envelope400(res, encoding);
        expect(res.body.message).to.equal('Request body could not be decoded as its Content-Encoding says.');
      }
      const unknown = await h.http.post('/api/v1/users').set('X-API-KEY', h.adminKey).set('Content-Type', 'application/json').set('Content-Encoding', 'x-weird').send('{}');
      expect(unknown.status).to.equal(415);
    });

    it('NUL and other control characters are refused in every string field, naming it, on REST', async () => {
      const cases: Array<[string, string, Record<string, unknown>, string]> = [
        ['POST', '/api/v1/users', { username: 'a\u0000b' }, 'username'],
        ['POST', '/api/v1/users', { username: 'ctl_user', notes: 'a\u0000b' }, 'notes'],
        ['POST', '/api/v1/users', { username: 'ctl_user', notes: 'colour \u001b[31m' }, 'notes'],
        ['POST', '/api/v1/users', { username: 'ctl_user', nodes: ['main', 'x\u0007'] }, 'nodes.1'],
        ['POST', '/api/v1/users', { username: 'ctl_user', expiry_date_str: '2030-01-01\u0000' }, 'expiry_date_str'],
        ['POST', '/api/v1/users', { bulk_count: 3, notes: 'bulk\u0000' }, 'notes'],
        ['PUT', '/api/v1/users/existing_user', { notes: 'put\u0000nul' }, 'notes'],
        ['PUT', '/api/v1/users/existing_user', { allowed_nodes: ['\u007f'] }, 'allowed_nodes.0'],
        ['POST', '/api/v1/sub_admins', { username: 'res\u0001', password: 'p' }, 'username'],
        ['POST', '/api/v1/sub_admins', { username: 'res_ok', password: 'p\u0000w' }, 'password'],
        ['POST', '/api/v1/nodes', { name: 'n\u0000', ip_address: '127.0.0.1', ssh_password: 'x' }, 'name'],
      ];
      for (const [method, p, body, field] of cases) {
        const res = await h.http[method === 'POST' ? 'post' : 'put'](p).set('X-API-KEY', h.adminKey).send(body);
        envelope400(res, `${method} ${p} ${field}`);
        expect(res.body.message, `${method} ${p}`).to.match(new RegExp(`^Field '${field.replace('.', '\\.')}' must not contain control characters`));
      }
      expect(await User.count({ where: { username: 'ctl_user' } })).to.equal(0);
      const stored = await h.http.get('/api/v1/users/existing_user').set('X-API-KEY', h.adminKey);
      expect(stored.body.notes).to.equal(null);
    });

    it('VPN passwords and the PSK keep their own stricter rule and sentence (NUL included)', async () => {
      const res = await h.http.post('/api/v1/users').set('X-API-KEY', h.adminKey).send({ username: 'pw_user', l2tp_password: 'ab\u0000cd' });
      envelope400(res, 'l2tp_password');
      expect(res.body.message).to.equal('Invalid l2tp_password: use 1-64 printable ASCII characters without spaces, double quotes or backslashes.');
    });

    it('the same refusal on tRPC: BAD_REQUEST naming the field', async () => {
      const res = await h.http.post('/trpc/users.create').set('X-API-KEY', h.adminKey).send({ username: 'trpc_ctl', notes: 'x\u0000' });
      expect(res.status).to.equal(400);
      expect(res.body.error.message).to.equal("Field 'notes' must not contain control characters (tabs and line breaks are allowed).");
      const get = await h.http.get(`/trpc/users.get?input=${encodeURIComponent(JSON.stringify({ username: 'a\u0000b' }))}`).set('X-API-KEY', h.adminKey);
      expect(get.status).to.equal(400);
    });

    it('tabs and line breaks in notes are free text: stored and answered as sent, in single and bulk create', async () => {
      const notes = 'line one\n\tline two\r\nend';
      await h.http.post('/api/v1/users').set('X-API-KEY', h.adminKey).send({ username: 'notes_user', notes }).expect(200);
      const got = await h.http.get('/api/v1/users/notes_user').set('X-API-KEY', h.adminKey);
      expect(got.body.notes).to.equal(notes);
      const bulk = await h.http.post('/api/v1/users').set('X-API-KEY', h.adminKey).send({ bulk_count: 2, notes, enable_wg1: true });
      expect(bulk.status).to.equal(200);
      const one = await h.http.get(`/api/v1/users/${bulk.body.created_users[0]}`).set('X-API-KEY', h.adminKey);
      expect(one.body.notes).to.equal(notes);
    });
  });
});
