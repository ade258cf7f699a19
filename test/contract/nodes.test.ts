import { expect } from 'chai';
import { ApiKey, Job, NodeRecord, Port, PortAssignment, PortReservation, SubAdmin, User } from '../../core/db';
import { hashPassword, randomKey, sha256Hex } from '../../core/secrets';
import { createHarness, forEachDatabase, type Harness } from '../helpers/harness';
import { freePort, sshdUnavailableReason, startSilentServer, startSshd, SSHD_TEST_USER, type SshdFixture } from '../helpers/sshd';
import { requirePrerequisite } from '../helpers/prereq';
import { COMMUNICATION_METHOD_MESSAGE } from '../../core/services/nodes';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { publicKeyOf, SshHost } from '../../core/hosts/ssh-host';
import { nodeSshOptions } from '../../core/nodes/credentials';

/** Why a sudo login cannot be tested here, or null. */
const sudoMissing = ((): string | null => {
  try {
    execFileSync('sudo', ['-V'], { stdio: 'pipe' });
    return null;
  } catch {
    return 'sudo is not installed (scripts/ci/install-system-packages.sh installs it)';
  }
})();

const CREATED = 'Node created and installation started in background.';
const UPDATED = 'Node updated. Sync triggered only for changed services.';
const MISSING = 'Missing required fields: name, ip_address, ssh_password';
const STRICT_403 = { success: false, message: 'Permission denied: Main admin API key required.' };

async function waitFor(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

forEachDatabase((kind) => {
  describe(`nodes API [${kind}]`, function () {
    let h: Harness;
    let subKey: string;
    let sshd: SshdFixture | undefined;
    const sshdSkip = sshdUnavailableReason();

    const asMain = <T extends { set(k: string, v: string): T }>(req: T) => req.set('X-API-KEY', h.adminKey);
    const asSub = <T extends { set(k: string, v: string): T }>(req: T) => req.set('X-API-KEY', subKey);
    const nodeCount = () => NodeRecord.count();
    const jobsOf = (nodeId: number) => h.services.nodes.jobs.list<Record<string, unknown>>({ target: `node_${nodeId}` });
    const needSshd = (ctx: Mocha.Context) => {
      requirePrerequisite(ctx, !!sshd, sshdSkip ?? 'sshd did not start');
    };
    /** A node created through the API against the real sshd; provisioning has already failed (the test user is not root). */
    async function createNode(extra: Record<string, unknown> = {}, server: SshdFixture = sshd!): Promise<number> {
      const res = await asMain(h.http.post('/api/v1/nodes')).send({
        name: 'Node A',
        ip_address: server.host,
        ssh_port: server.port,
        ssh_username: server.username,
        ssh_password: server.password,
        ...extra,
      });
      expect(res.status, JSON.stringify(res.body)).to.equal(202);
      await h.services.nodes.jobs.waitForIdle(20_000);
      return res.body.node_id as number;
    }

    before(async function () {
      this.timeout(60_000);
      h = await createHarness(kind);
      h.services.nodes.sshPreflightTimeoutMs = 8000;
      h.services.nodes.deleteSshTimeoutMs = 1500;
      const admin = await SubAdmin.create({ username: 'reseller1', password_hash: hashPassword('secret-pass') });
      subKey = randomKey(32);
      await ApiKey.create({ key_hash: sha256Hex(subKey), kind: 'sub_admin', sub_admin_id: admin.id });
      if (sshdSkip) console.log(`      (real-sshd tests skip: ${sshdSkip})`);
      else sshd = await startSshd();
    });

    after(async function () {
      this.timeout(30_000);
      await h.services.nodes.jobs.stop();
      await sshd?.stop();
      await h.close();
    });

    afterEach(function () {
      if (this.currentTest?.state === 'failed' && sshd) console.log(`--- sshd log (tail) ---\n${sshd.log().split('\n').slice(-20).join('\n')}`);
    });

    describe('authentication and permissions', () => {
      it('GET /nodes without a key is 401 "API key is missing"; with an unknown key 401 "Invalid or inactive API key"', async () => {
        let res = await h.http.get('/api/v1/nodes');
        expect(res.status).to.equal(401);
        expect(res.body).to.deep.equal({ success: false, message: 'API key is missing' });
        res = await h.http.get('/api/v1/nodes').set('X-API-KEY', 'INVALID_KEY');
        expect(res.status).to.equal(401);
        expect(res.body).to.deep.equal({ success: false, message: 'Invalid or inactive API key' });
      });

      it('a sub-admin POST is 403 with the strict message and stores nothing', async () => {
        const res = await asSub(h.http.post('/api/v1/nodes')).send({ name: 'Node B', ip_address: '2.3.4.5', ssh_password: 'pass' });
        expect(res.status).to.equal(403);
        expect(res.body).to.deep.equal(STRICT_403);
        expect(await nodeCount()).to.equal(0);
      });

      it('a sub-admin PUT or DELETE is 403 with the strict message (even for an unknown id)', async () => {
        let res = await asSub(h.http.put('/api/v1/nodes/999999')).send({ protocol: 'udp' });
        expect(res.status).to.equal(403);
        expect(res.body).to.deep.equal(STRICT_403);
        res = await asSub(h.http.delete('/api/v1/nodes/999999'));
        expect(res.status).to.equal(403);
        expect(res.body).to.deep.equal(STRICT_403);
      });

      it('GET /nodes with no nodes is an empty list for both kinds of key', async () => {
        for (const req of [asMain(h.http.get('/api/v1/nodes')), asSub(h.http.get('/api/v1/nodes'))]) {
          const res = await req;
          expect(res.status).to.equal(200);
          expect(res.body).to.deep.equal({ success: true, nodes: [] });
        }
      });
    });

    describe('POST /nodes validation (nothing reaches SSH or the database)', () => {
      it('any of name, ip_address, ssh_password missing or empty → 400 with the one fixed message', async () => {
        const bodies: Record<string, unknown>[] = [
          {},
          { name: 'Node C' },
          { name: 'Node C', ip_address: '1.2.3.4' },
          { ip_address: '1.2.3.4', ssh_password: 'pass' },
          { name: 'Node C', ssh_password: 'pass' },
          { name: '', ip_address: '1.2.3.4', ssh_password: 'pass' },
          { name: '   ', ip_address: '1.2.3.4', ssh_password: 'pass' },
          { name: 'Node C', ip_address: '1.2.3.4', ssh_password: '' },
          { name: 'Node C', ip_address: null, ssh_password: 'pass' },
        ];
        for (const body of bodies) {
          const res = await asMain(h.http.post('/api/v1/nodes')).send(body);
          expect(res.status, JSON.stringify(body)).to.equal(400);
          expect(res.body, JSON.stringify(body)).to.deep.equal({ success: false, message: MISSING });
        }
        expect(await nodeCount()).to.equal(0);
      });

      it('bad field values are 400 sentences naming the field', async () => {
        const base = { name: 'Node C', ip_address: '1.2.3.4', ssh_password: 'pass' };
        const cases: [Record<string, unknown>, string][] = [
          [{ ip_address: 'bad host!' }, "Field 'ip_address' must be an IPv4 or IPv6 address or a host name."],
          [{ ip_address: '1.2.3.4; rm -rf /' }, "Field 'ip_address' must be an IPv4 or IPv6 address or a host name."],
          [{ ssh_port: 0 }, "Field 'ssh_port' must be an integer between 1 and 65535."],
          [{ ssh_port: 65536 }, "Field 'ssh_port' must be an integer between 1 and 65535."],
          [{ ssh_port: 22.5 }, "Field 'ssh_port' must be an integer between 1 and 65535."],
          [{ ssh_port: '22' }, "Field 'ssh_port' must be a number, not a string."],
          [{ ssh_username: 'Root' }, "Field 'ssh_username' must be a valid user name (lowercase letters, digits, '_' or '-', starting with a letter or '_', at most 32 characters)."],
          [{ ssh_username: 'a$(id)' }, "Field 'ssh_username' must be a valid user name (lowercase letters, digits, '_' or '-', starting with a letter or '_', at most 32 characters)."],
          [{ openvpn_port: 70000 }, "Field 'openvpn_port' must be an integer between 1 and 65535."],
          [{ protocol: 'icmp' }, "Field 'protocol' must be one of: udp, tcp."],
          [{ sync_all_users: 'yes' }, "Field 'sync_all_users' must be a boolean, not a string."],
          [{ communication_method: 'x'.repeat(33) }, "Field 'communication_method' must be at most 32 characters."],
          [{ name: 'n'.repeat(129) }, "Field 'name' must be at most 128 characters."],
          [{ ssh_password: 42 }, "Field 'ssh_password' must be a string, not a number."],
        ];
        for (const [extra, message] of cases) {
          const res = await asMain(h.http.post('/api/v1/nodes')).send({ ...base, ...extra });
          expect(res.status, JSON.stringify(extra)).to.equal(400);
          expect(res.body, JSON.stringify(extra)).to.deep.equal({ success: false, message });
        }
        expect(await nodeCount()).to.equal(0);
      });

      it('SSH preflight to a closed port → 400 "connection refused" with the address, and no node, port claim or job', async () => {
        const closed = await freePort();
        const res = await asMain(h.http.post('/api/v1/nodes')).send({ name: 'Node C', ip_address: '127.0.0.1', ssh_port: closed, ssh_password: 'pass' });
        expect(res.status).to.equal(400);
        expect(res.body).to.deep.equal({ success: false, message: `SSH preflight failed: connection refused (127.0.0.1:${closed})` });
        expect(await nodeCount()).to.equal(0);
        expect(await PortReservation.count({ where: { owner: 'openvpn', server_identifier: 'node_1' } })).to.equal(0);
        expect(await Job.count()).to.equal(0);
      });
    });

    describe('PUT and DELETE of unknown nodes', () => {
      it('PUT /nodes/999999 → 404 "Node not found"', async () => {
        const res = await asMain(h.http.put('/api/v1/nodes/999999')).send({ protocol: 'udp' });
        expect(res.status).to.equal(404);
        expect(res.body).to.deep.equal({ success: false, message: 'Node not found' });
      });

      it('DELETE /nodes/999999 → HTTP 404 with {"success": true, "message": "Node not found"} (idempotent delete)', async () => {
        const res = await asMain(h.http.delete('/api/v1/nodes/999999'));
        expect(res.status).to.equal(404);
        expect(res.body).to.deep.equal({ success: true, message: 'Node not found' });
      });
    });

    describe('with a real sshd as the node', function () {
      this.timeout(60_000);

      it('wrong SSH password → 400 "authentication failed" and no node stored', async function () {
        needSshd(this);
        const res = await asMain(h.http.post('/api/v1/nodes')).send({
          name: 'Node W',
          ip_address: sshd!.host,
          ssh_port: sshd!.port,
          ssh_username: SSHD_TEST_USER,
          ssh_password: 'definitely-wrong',
        });
        expect(res.status).to.equal(400);
        expect(res.body).to.deep.equal({ success: false, message: `SSH preflight failed: authentication failed for ${SSHD_TEST_USER}@127.0.0.1` });
        expect(await nodeCount()).to.equal(0);
        expect(await Job.count()).to.equal(0);
      });

      it("communication_method other than 'ssh' → 400 naming the only one implemented, before any SSH", async () => {
        for (const method of ['wireguard', 'http', 'SSH']) {
          const res = await asMain(h.http.post('/api/v1/nodes')).send({ name: 'Node M', ip_address: '127.0.0.1', ssh_port: 1, ssh_password: 'pass', communication_method: method });
          expect(res.status, method).to.equal(400);
          expect(res.body).to.deep.equal({ success: false, message: COMMUNICATION_METHOD_MESSAGE });
        }
        expect(await nodeCount()).to.equal(0);
      });

      it('POST after a passing preflight → 202, node stored with a sealed password and its OpenVPN port claimed; provisioning by a non-root login ends "error" with the reason and keeps the password', async function () {
        needSshd(this);
        const res = await asMain(h.http.post('/api/v1/nodes')).send({
          name: 'Node A',
          ip_address: sshd!.host,
          ssh_port: sshd!.port,
          ssh_username: sshd!.username,
          ssh_password: sshd!.password,
          openvpn_port: 1194,
          protocol: 'udp',
          sync_all_users: false,
          communication_method: 'ssh',
          is_tunnel: true,
        });
        expect(res.status).to.equal(202);
        expect(res.body).to.have.keys('success', 'message', 'node_id');
        expect(res.body.success).to.equal(true);
        expect(res.body.message).to.equal(CREATED);
        const id = res.body.node_id as number;
        expect(id).to.be.a('number');

        const row = (await NodeRecord.findByPk(id))!;
        expect(row.ssh_secret).to.be.a('string').and.not.include(sshd!.password);
        expect(h.core.ctx.secrets.open(row.ssh_secret!)).to.equal(sshd!.password);
        expect(row.communication_method).to.equal('ssh');
        expect(row.is_tunnel).to.equal(true);
        expect(await PortReservation.count({ where: { server_identifier: `node_${id}`, port: 1194, protocol: 'udp', owner: 'openvpn' } })).to.equal(1);

        await h.services.nodes.jobs.waitForIdle(20_000);
        const jobs = await jobsOf(id);
        const reason = `Provisioning failed: ${SSHD_TEST_USER} is not root and has no passwordless sudo; polygate needs root on the node`;
        expect(jobs.map((j) => [j.kind, j.status, j.message])).to.deep.equal([['node.provision', 'error', reason]]);
        expect(jobs[0]!.payload.hostKeySha256).to.match(/^SHA256:/);
        const after = (await NodeRecord.findByPk(id, { raw: true }))!;
        expect(after.status).to.equal('error');
        expect(after.status_message).to.equal(reason);
        // Pinned even though provisioning stopped; nothing was installed, so the password stays for a retry.
        expect(after.ssh_host_key).to.equal(jobs[0]!.payload.hostKeySha256);
        expect(after.ssh_private_key).to.equal(null);
        expect(after.ssh_secret).to.be.a('string');
      });

      it('GET /nodes: the main admin sees the full node without any password; a sub-admin sees only id, name and status', async function () {
        needSshd(this);
        const main = await asMain(h.http.get('/api/v1/nodes'));
        expect(main.status).to.equal(200);
        expect(main.body.success).to.equal(true);
        const node = main.body.nodes[0];
        expect(node).to.have.keys(
          'id', 'name', 'ip_address', 'ssh_port', 'ssh_username', 'openvpn_port', 'protocol', 'status',
          'status_message', 'total_traffic_bytes', 'sync_all_users', 'communication_method', 'is_tunnel', 'created_at',
        );
        expect(node).to.include({ name: 'Node A', ip_address: '127.0.0.1', ssh_port: sshd!.port, ssh_username: SSHD_TEST_USER, openvpn_port: 1194, protocol: 'udp', total_traffic_bytes: 0, sync_all_users: false, communication_method: 'ssh', is_tunnel: true });
        expect(node.created_at).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/);
        expect(JSON.stringify(main.body)).not.to.include(sshd!.password);

        const sub = await asSub(h.http.get('/api/v1/nodes'));
        expect(sub.status).to.equal(200);
        expect(sub.body).to.deep.equal({ success: true, nodes: [{ id: node.id, name: 'Node A', status: node.status }] });
      });

      it('sub-admin PUT and DELETE of an existing node are 403 and change nothing', async function () {
        needSshd(this);
        const id = (await NodeRecord.findOne({ raw: true }))!.id;
        let res = await asSub(h.http.put(`/api/v1/nodes/${id}`)).send({ name: 'Hijacked' });
        expect(res.status).to.equal(403);
        expect(res.body).to.deep.equal(STRICT_403);
        res = await asSub(h.http.delete(`/api/v1/nodes/${id}`));
        expect(res.status).to.equal(403);
        expect(res.body).to.deep.equal(STRICT_403);
        const row = (await NodeRecord.findByPk(id, { raw: true }))!;
        expect(row.name).to.equal('Node A');
        expect(row.status).to.not.equal('deleting');
      });

      it('PUT syncs only the changed services: the job payload lists exactly them; an edit that changes nothing queues no job', async function () {
        needSshd(this);
        const id = await createNode({ name: 'Node P', openvpn_port: 1195 });
        const before = (await jobsOf(id)).length;
        const latest = async () => {
          const jobs = await jobsOf(id);
          return { count: jobs.length - before, last: jobs[jobs.length - 1]! };
        };

        let res = await asMain(h.http.put(`/api/v1/nodes/${id}`)).send({ openvpn_port: 443, protocol: 'tcp' });
        expect(res.status).to.equal(200);
        expect(res.body).to.deep.equal({ success: true, message: UPDATED });
        let l = await latest();
        expect(l.count).to.equal(1);
        expect(l.last.kind).to.equal('node.sync');
        expect(l.last.payload).to.deep.equal({ services: ['openvpn'] });
        // The port registry moved with the listener.
        expect(await PortReservation.count({ where: { server_identifier: `node_${id}`, port: 1195, owner: 'openvpn' } })).to.equal(0);
        expect(await PortReservation.count({ where: { server_identifier: `node_${id}`, port: 443, protocol: 'tcp', owner: 'openvpn' } })).to.equal(1);

        res = await asMain(h.http.put(`/api/v1/nodes/${id}`)).send({ name: 'Node A (EU)', ip_address: 'localhost' });
        expect(res.body).to.deep.equal({ success: true, message: UPDATED });
        l = await latest();
        expect(l.count).to.equal(2);
        expect(l.last.payload).to.deep.equal({ services: ['meta', 'ssh'] });

        // Same values again, and an empty password ("keep it"): nothing changed, no job.
        res = await asMain(h.http.put(`/api/v1/nodes/${id}`)).send({ name: 'Node A (EU)', openvpn_port: 443, protocol: 'tcp', ssh_password: '' });
        expect(res.body).to.deep.equal({ success: true, message: UPDATED });
        expect((await latest()).count).to.equal(2);

        // The same password is no change; a new one is an ssh change.
        res = await asMain(h.http.put(`/api/v1/nodes/${id}`)).send({ ssh_password: sshd!.password });
        expect((await latest()).count).to.equal(2);
        res = await asMain(h.http.put(`/api/v1/nodes/${id}`)).send({ ssh_password: 'another-pass', sync_all_users: true });
        l = await latest();
        expect(l.count).to.equal(3);
        expect(l.last.payload).to.deep.equal({ services: ['ssh', 'users'] });
        const row = (await NodeRecord.findByPk(id))!;
        expect(h.core.ctx.secrets.open(row.ssh_secret!)).to.equal('another-pass');
        expect(row.sync_all_users).to.equal(true);

        res = await asMain(h.http.put(`/api/v1/nodes/${id}`)).send({ name: 'Only a rename' });
        l = await latest();
        expect(l.count).to.equal(4);
        expect(l.last.payload).to.deep.equal({ services: ['meta'] });

        await h.services.nodes.jobs.waitForIdle(20_000);
        const syncs = (await jobsOf(id)).filter((j) => j.kind === 'node.sync').map((j) => [j.status, j.message]);
        // Provisioning failed (the login is not root), so nothing runs there to sync; a rename needs nothing on the node.
        const notProvisioned = ['done', 'nothing to sync: the node is not provisioned (error)'];
        expect(syncs).to.deep.equal([notProvisioned, notProvisioned, notProvisioned, ['done', 'nothing to sync on the node']]);
      });

      it('PUT validates fields like create, and a taken OpenVPN port is a 409 naming its owner with nothing changed', async function () {
        needSshd(this);
        const id = await createNode({ name: 'Node V', openvpn_port: 1196 });
        const jobsBefore = (await jobsOf(id)).length;
        for (const [body, message] of [
          [{ ssh_port: 0 }, "Field 'ssh_port' must be an integer between 1 and 65535."],
          [{ protocol: 'icmp' }, "Field 'protocol' must be one of: udp, tcp."],
          [{ name: '' }, "Field 'name' cannot be empty."],
          [{ ip_address: 'not a host' }, "Field 'ip_address' must be an IPv4 or IPv6 address or a host name."],
          [{ openvpn_port: '443' }, "Field 'openvpn_port' must be a number, not a string."],
        ] as [Record<string, unknown>, string][]) {
          const res = await asMain(h.http.put(`/api/v1/nodes/${id}`)).send(body);
          expect(res.status, JSON.stringify(body)).to.equal(400);
          expect(res.body).to.deep.equal({ success: false, message });
        }
        await PortReservation.create({ server_identifier: `node_${id}`, port: 443, protocol: 'tcp', owner: 'ocserv' });
        const res = await asMain(h.http.put(`/api/v1/nodes/${id}`)).send({ openvpn_port: 443, protocol: 'tcp' });
        expect(res.status).to.equal(409);
        expect(res.body).to.deep.equal({ success: false, message: `Port 443/tcp on node_${id} is already used by Cisco AnyConnect (ocserv).` });
        const row = (await NodeRecord.findByPk(id, { raw: true }))!;
        expect([row.openvpn_port, row.protocol]).to.deep.equal([1196, 'udp']);
        expect(await PortReservation.count({ where: { server_identifier: `node_${id}`, port: 1196, protocol: 'udp', owner: 'openvpn' } })).to.equal(1);
        expect((await jobsOf(id)).length).to.equal(jobsBefore);
      });

      it('DELETE → 202 "Deletion started"; after the job the node, its port claims and assignments and its entries in users\' and resellers\' lists are gone', async function () {
        needSshd(this);
        const id = await createNode({ name: 'Node D', openvpn_port: 1197 });
        const server = `node_${id}`;
        const port = await Port.create({ public_port: 8443, protocol: 'tcp' });
        await PortAssignment.create({ port_id: port.id, server_identifier: server });
        await PortAssignment.create({ port_id: port.id, server_identifier: 'main' });
        await User.create({ username: 'alice', nodes: JSON.stringify(['main', server]) });
        await User.create({ username: 'bob', nodes: JSON.stringify([`${server}0`]) });
        await User.create({ username: 'carol', nodes: null });
        const reseller = await SubAdmin.create({ username: 'reseller-d', password_hash: hashPassword('x'), allowed_servers: JSON.stringify([server, 'main']) });
        const changed: string[][] = [];
        const off = h.core.ctx.events.on('users.changed', (e) => changed.push(e.usernames));

        const res = await asMain(h.http.delete(`/api/v1/nodes/${id}`));
        expect(res.status).to.equal(202);
        expect(res.body).to.deep.equal({ success: true, message: 'Deletion started' });
        await h.services.nodes.jobs.waitForIdle(20_000);
        off();

        const jobs = await jobsOf(id);
        const del = jobs.find((j) => j.kind === 'node.delete')!;
        expect([del.status, del.message, del.payload]).to.deep.equal(['done', 'Node deleted', { force: false }]);
        expect(await NodeRecord.findByPk(id)).to.equal(null);
        expect(await PortReservation.count({ where: { server_identifier: server } })).to.equal(0);
        expect((await PortAssignment.findAll({ raw: true })).map((a) => a.server_identifier)).to.deep.equal(['main']);
        const users = await User.findAll({ raw: true, order: [['username', 'ASC']] });
        expect(users.map((u) => [u.username, u.nodes])).to.deep.equal([
          ['alice', '["main"]'],
          ['bob', JSON.stringify([`${server}0`])],
          ['carol', null],
        ]);
        expect((await SubAdmin.findByPk(reseller.id, { raw: true }))!.allowed_servers).to.equal('["main"]');
        expect(changed).to.deep.equal([['alice']]);
        const list = await asMain(h.http.get('/api/v1/nodes'));
        expect(list.body.nodes.map((n: { id: number }) => n.id)).to.not.include(id);
      });

      it('a second DELETE while the first deletion is still queued → 423 "Deletion in progress..." (PUT too); the first still completes', async function () {
        needSshd(this);
        const id = await createNode({ name: 'Node Q', openvpn_port: 1198 });
        h.services.nodes.jobs.pause();
        try {
          let res = await asMain(h.http.delete(`/api/v1/nodes/${id}`));
          expect(res.status).to.equal(202);
          expect((await NodeRecord.findByPk(id, { raw: true }))!.status).to.equal('deleting');
          res = await asMain(h.http.delete(`/api/v1/nodes/${id}`));
          expect(res.status).to.equal(423);
          expect(res.body).to.deep.equal({ success: false, message: 'Deletion in progress...' });
          res = await asMain(h.http.put(`/api/v1/nodes/${id}`)).send({ name: 'Too late' });
          expect(res.status).to.equal(423);
          expect(res.body).to.deep.equal({ success: false, message: 'Deletion in progress...' });
        } finally {
          h.services.nodes.jobs.resume();
        }
        await h.services.nodes.jobs.waitForIdle(20_000);
        expect(await NodeRecord.findByPk(id)).to.equal(null);
        expect((await jobsOf(id)).filter((j) => j.kind === 'node.delete')).to.have.length(1);
      });

      it('DELETE while a deletion is running (node that never answers SSH) → 423; it then fails, sets deletion_failed, and the next DELETE forces removal', async function () {
        needSshd(this);
        const silent = await startSilentServer();
        try {
          const id = await createNode({ name: 'Node S', openvpn_port: 1199 });
          await asMain(h.http.put(`/api/v1/nodes/${id}`)).send({ ssh_port: silent.port });
          await h.services.nodes.jobs.waitForIdle(20_000);

          let res = await asMain(h.http.delete(`/api/v1/nodes/${id}`));
          expect(res.status).to.equal(202);
          await waitFor('the delete job to run', 5000, async () => (await jobsOf(id)).some((j) => j.kind === 'node.delete' && j.status === 'running'));
          res = await asMain(h.http.delete(`/api/v1/nodes/${id}`));
          expect(res.status).to.equal(423);
          expect(res.body).to.deep.equal({ success: false, message: 'Deletion in progress...' });

          await h.services.nodes.jobs.waitForIdle(20_000);
          const failed = (await jobsOf(id)).filter((j) => j.kind === 'node.delete');
          expect(failed).to.have.length(1);
          expect(failed[0]!.status).to.equal('error');
          expect(failed[0]!.message).to.match(/^Deletion failed: .*timed out/);
          let row = (await NodeRecord.findByPk(id, { raw: true }))!;
          expect(Boolean(row.deletion_failed)).to.equal(true);
          expect(row.status).to.equal('error');
          expect(row.status_message).to.equal(failed[0]!.message);

          res = await asMain(h.http.delete(`/api/v1/nodes/${id}`));
          expect(res.status).to.equal(202);
          expect(res.body).to.deep.equal({ success: true, message: 'Deletion started' });
          row = (await NodeRecord.findByPk(id, { raw: true }))!;
          expect(row.status).to.equal('deleting');
          await h.services.nodes.jobs.waitForIdle(20_000);
          const forced = (await jobsOf(id)).filter((j) => j.kind === 'node.delete')[1]!;
          expect(forced.payload).to.deep.equal({ force: true });
          expect(forced.status).to.equal('done');
          expect(forced.message).to.match(/^Node deleted \(force mode; not cleaned: .*timed out/);
          expect(await NodeRecord.findByPk(id)).to.equal(null);
          expect(await PortReservation.count({ where: { server_identifier: `node_${id}` } })).to.equal(0);
        } finally {
          await silent.close();
        }
      });

      it('a failed deletion (the node\'s sshd stopped) marks deletion_failed; DELETE again runs in force mode and removes the node', async function () {
        needSshd(this);
        const second = await startSshd();
        let id: number;
        try {
          id = await createNode({ name: 'Node F', openvpn_port: 1200 }, second);
        } finally {
          await second.stop();
        }
        let res = await asMain(h.http.delete(`/api/v1/nodes/${id}`));
        expect(res.status).to.equal(202);
        await h.services.nodes.jobs.waitForIdle(20_000);
        let row = (await NodeRecord.findByPk(id, { raw: true }))!;
        expect(row.status).to.equal('error');
        expect(Boolean(row.deletion_failed)).to.equal(true);
        const failed = (await jobsOf(id)).filter((j) => j.kind === 'node.delete')[0]!;
        expect(failed.status).to.equal('error');
        expect(failed.message).to.equal(`Deletion failed: SSH connection to node_${id} failed: connection refused (127.0.0.1:${second.port})`);

        res = await asMain(h.http.delete(`/api/v1/nodes/${id}`));
        expect(res.status).to.equal(202);
        expect(res.body).to.deep.equal({ success: true, message: 'Deletion started' });
        await h.services.nodes.jobs.waitForIdle(20_000);
        const forced = (await jobsOf(id)).filter((j) => j.kind === 'node.delete')[1]!;
        expect([forced.status, forced.payload]).to.deep.equal(['done', { force: true }]);
        expect(await NodeRecord.findByPk(id)).to.equal(null);
        expect(await PortReservation.count({ where: { server_identifier: `node_${id}` } })).to.equal(0);
      });

      it("a login with passwordless sudo: the panel's key is installed for root through sudo, the password is dropped, the node is driven as root; DELETE removes the key again", async function () {
        needSshd(this);
        requirePrerequisite(this, sudoMissing === null, sudoMissing ?? '');
        const node = await startSshd({ sudo: true });
        try {
          const id = await createNode({ name: 'Node S', openvpn_port: 1201 }, node);
          const row = (await NodeRecord.findByPk(id, { raw: true }))!;
          const jobs = await jobsOf(id);
          expect(jobs.map((j) => [j.kind, j.status])).to.deep.equal([['node.provision', 'done']]);
          expect(row.status, row.status_message ?? '').to.equal('active');
          expect(row.ssh_username).to.equal(SSHD_TEST_USER);
          expect(row.ssh_key_username).to.equal('root');
          expect(row.ssh_secret).to.equal(null);
          const rootKeys = await fs.readFile(node.rootAuthorizedKeysPath!, 'utf8');
          expect(rootKeys).to.include(publicKeyOf(h.core.ctx.secrets.open(row.ssh_private_key!)).split(' ').slice(0, 2).join(' '));
          // The panel's later connections (its runtime, deletion) log in as root with the key.
          const host = new SshHost(`node_${id}`, nodeSshOptions(h.core.ctx.secrets, row));
          try {
            expect((await host.run(['id', '-u'])).stdout.trim()).to.equal('0');
          } finally {
            await host.close();
          }
          const res = await asMain(h.http.delete(`/api/v1/nodes/${id}`));
          expect(res.status).to.equal(202);
          await h.services.nodes.jobs.waitForIdle(20_000);
          expect(await NodeRecord.findByPk(id)).to.equal(null);
          expect(await fs.readFile(node.rootAuthorizedKeysPath!, 'utf8')).to.not.include('polygate@');
        } finally {
          await node.stop();
        }
      });
    });
  });
});
