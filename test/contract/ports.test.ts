import { expect } from 'chai';
import { NodeRecord, Port, PortAssignment, PortReservation, Setting } from '../../core/db';
import type { DomainEventMap } from '../../core/events';
import { createHarness, forEachDatabase, type Harness } from '../helpers/harness';

function recordEvents(h: Harness, names: (keyof DomainEventMap)[]) {
  const seen: { name: string; payload: unknown }[] = [];
  const offs = names.map((name) => h.services.ctx.events.on(name, (payload) => seen.push({ name, payload })));
  return { seen, stop: () => offs.forEach((off) => off()) };
}

const addNode = (name: string, fields: Partial<Parameters<typeof NodeRecord.create>[0]> = {}) =>
  NodeRecord.create({ name, ip_address: '198.51.100.20', ssh_secret: null, communication_method: null, status_message: null, status: 'active', ...fields });

forEachDatabase((kind) => {
  describe(`ports and bot integration API [${kind}]`, () => {
    let h: Harness;
    let resellerKey: string;
    let nodeA: NodeRecord;
    let nodeB: NodeRecord;

    const post = (body: Record<string, unknown>) => h.http.post('/api/v1/public/ports').set('X-API-KEY', h.adminKey).send(body);
    const del = (body: Record<string, unknown>) => h.http.delete('/api/v1/public/ports/assignment').set('X-API-KEY', h.adminKey).send(body);
    const claimOf = async (server: string, port: number, protocol: string) =>
      (await PortReservation.findOne({ where: { server_identifier: server, port, protocol }, raw: true }))?.owner ?? null;

    before(async () => {
      h = await createHarness(kind);
      nodeA = await addNode('Node A', { openvpn_port: 1194, protocol: 'udp' });
      nodeB = await addNode('Node B', { openvpn_port: 443, protocol: 'tcp', status: 'error' });
      const res = await h.http
        .post('/api/v1/sub_admins')
        .set('X-API-KEY', h.adminKey)
        .send({ username: 'sa_ports', password: 'pass', panel_port: 48888, subscription_port: 42096 });
      expect(res.status).to.equal(200);
      resellerKey = res.body.sub_admin.api_key;
    });
    after(() => h.close());

    describe('authorization', () => {
      it('listing endpoints refuse a sub-admin with 403 "Permission denied: Main admin API key required."', async () => {
        for (const path of ['/api/v1/public/ports', '/api/v1/public/servers_for_ports', '/api/v1/public/all_selectable_servers']) {
          const res = await h.http.get(path).set('X-API-KEY', resellerKey);
          expect(res.status, path).to.equal(403);
          expect(res.body).to.deep.equal({ success: false, message: 'Permission denied: Main admin API key required.' });
        }
      });

      it('create and assignment delete refuse a sub-admin with 403 "Permission denied" and change nothing', async () => {
        let res = await h.http.post('/api/v1/public/ports').set('X-API-KEY', resellerKey).send({ public_port: 443, protocol: 'tcp', server_ids: ['main'] });
        expect(res.status).to.equal(403);
        expect(res.body).to.deep.equal({ success: false, message: 'Permission denied' });
        res = await h.http.delete('/api/v1/public/ports/assignment').set('X-API-KEY', resellerKey).send({ port_id: 2, server_identifier: 'main' });
        expect(res.status).to.equal(403);
        expect(res.body).to.deep.equal({ success: false, message: 'Permission denied' });
        expect(await Port.count()).to.equal(0);
      });

      it('an unknown key is 401 "Invalid or inactive API key" and a missing one 401 "API key is missing"', async () => {
        for (const path of ['/api/v1/public/ports', '/api/v1/public/servers_for_ports', '/api/v1/public/all_selectable_servers']) {
          let res = await h.http.get(path).set('X-API-KEY', 'INVALID_KEY');
          expect(res.status).to.equal(401);
          expect(res.body).to.deep.equal({ success: false, message: 'Invalid or inactive API key' });
          res = await h.http.get(path);
          expect(res.body).to.deep.equal({ success: false, message: 'API key is missing' });
        }
      });
    });

    describe('server lists', () => {
      it('GET /public/servers_for_ports and /public/all_selectable_servers list main then every node as node_<id>', async () => {
        const expected = {
          success: true,
          servers: [
            { id: 'main', name: 'Main Server' },
            { id: `node_${nodeA.id}`, name: 'Node: Node A' },
            { id: `node_${nodeB.id}`, name: 'Node: Node B' },
          ],
        };
        for (const path of ['/api/v1/public/servers_for_ports', '/api/v1/public/all_selectable_servers']) {
          const res = await h.http.get(path).set('X-API-KEY', h.adminKey);
          expect(res.status).to.equal(200);
          expect(res.body).to.deep.equal(expected);
        }
      });
    });

    describe('POST /public/ports', () => {
      it('any missing field or empty server_ids is 400 "Missing info."', async () => {
        const bodies = [
          { protocol: 'tcp', server_ids: ['main'] },
          { public_port: 443, server_ids: ['main'] },
          { public_port: 443, protocol: 'tcp' },
          { public_port: 443, protocol: 'tcp', server_ids: [] },
          { public_port: 443, protocol: '', server_ids: ['main'] },
          { public_port: null, protocol: 'tcp', server_ids: ['main'] },
          {},
        ];
        for (const body of bodies) {
          const res = await post(body);
          expect(res.status, JSON.stringify(body)).to.equal(400);
          expect(res.body).to.deep.equal({ success: false, message: 'Missing info.' });
        }
        const res = await h.http.post('/api/v1/public/ports').set('X-API-KEY', h.adminKey);
        expect(res.body).to.deep.equal({ success: false, message: 'Missing info.' });
      });

      it('a bad port, protocol, type or server is a 400 naming the field, and nothing is stored', async () => {
        const cases: [Record<string, unknown>, string][] = [
          [{ public_port: 0, protocol: 'tcp', server_ids: ['main'] }, "Field 'public_port' must be an integer between 1 and 65535."],
          [{ public_port: 65536, protocol: 'tcp', server_ids: ['main'] }, "Field 'public_port' must be an integer between 1 and 65535."],
          [{ public_port: 44.5, protocol: 'tcp', server_ids: ['main'] }, "Field 'public_port' must be an integer between 1 and 65535."],
          [{ public_port: '443', protocol: 'tcp', server_ids: ['main'] }, "Field 'public_port' must be a number, not a string."],
          [{ public_port: 443, protocol: 'icmp', server_ids: ['main'] }, "Field 'protocol' must be one of: udp, tcp."],
          [{ public_port: 443, protocol: 'TCP', server_ids: ['main'] }, "Field 'protocol' must be one of: udp, tcp."],
          [{ public_port: 443, protocol: 'tcp', server_ids: 'main' }, "Field 'server_ids' must be an array, not a string."],
          [{ public_port: 443, protocol: 'tcp', server_ids: ['main', 'node_999'] }, "Field 'server_ids' names an unknown server: 'node_999'."],
        ];
        for (const [body, message] of cases) {
          const res = await post(body);
          expect(res.status, JSON.stringify(body)).to.equal(400);
          expect(res.body).to.deep.equal({ success: false, message });
        }
        expect(await Port.count()).to.equal(0);
        expect(await PortAssignment.count()).to.equal(0);
      });

      it('registers the port once, assigns it to each server, claims it for OpenVPN and emits ports.changed', async () => {
        const events = recordEvents(h, ['ports.changed']);
        const res = await post({ public_port: 443, protocol: 'udp', server_ids: ['main', `node_${nodeA.id}`] });
        events.stop();
        expect(res.status).to.equal(200);
        expect(res.body).to.deep.equal({ success: true, message: 'Port configured on selected servers.' });
        expect(events.seen).to.deep.equal([{ name: 'ports.changed', payload: {} }]);
        expect(await Port.count({ where: { public_port: 443, protocol: 'udp' } })).to.equal(1);
        expect(await claimOf('main', 443, 'udp')).to.equal('openvpn');
        expect(await claimOf(`node_${nodeA.id}`, 443, 'udp')).to.equal('openvpn');
      });

      it('an existing port/protocol only gains assignments; repeating a request changes nothing', async () => {
        let res = await post({ public_port: 443, protocol: 'udp', server_ids: [`node_${nodeA.id}`, `node_${nodeB.id}`, `node_${nodeB.id}`] });
        expect(res.status).to.equal(200);
        res = await post({ public_port: 443, protocol: 'udp', server_ids: ['main'] });
        expect(res.status).to.equal(200);
        const port = await Port.findOne({ where: { public_port: 443, protocol: 'udp' }, raw: true });
        expect(await Port.count({ where: { public_port: 443, protocol: 'udp' } })).to.equal(1);
        const servers = (await PortAssignment.findAll({ where: { port_id: port!.id }, raw: true })).map((a) => a.server_identifier).sort();
        expect(servers).to.deep.equal(['main', `node_${nodeA.id}`, `node_${nodeB.id}`].sort());
      });

      it("a port held on a server by the panel, a reseller or a server's default OpenVPN listener is a 409 naming it; the whole request is undone", async () => {
        const panelPort = h.services.ctx.config.port;
        const cases: [Record<string, unknown>, string][] = [
          [{ public_port: panelPort, protocol: 'tcp', server_ids: [`node_${nodeA.id}`, 'main'] }, `Port ${panelPort}/tcp on main is already used by the panel.`],
          [{ public_port: 48888, protocol: 'tcp', server_ids: [`node_${nodeA.id}`, 'main'] }, "Port 48888/tcp on main is already used by sub-admin 'sa_ports' (panel port)."],
          [{ public_port: 42096, protocol: 'tcp', server_ids: ['main'] }, "Port 42096/tcp on main is already used by sub-admin 'sa_ports' (subscription port)."],
          [{ public_port: 1194, protocol: 'udp', server_ids: ['main'] }, "Port 1194/udp on main is already used by OpenVPN (the server's default port)."],
          [{ public_port: 443, protocol: 'tcp', server_ids: [`node_${nodeB.id}`] }, `Port 443/tcp on node_${nodeB.id} is already used by OpenVPN (the server's default port).`],
        ];
        for (const [body, message] of cases) {
          const res = await post(body);
          expect(res.status, JSON.stringify(body)).to.equal(409);
          expect(res.body).to.deep.equal({ success: false, message });
          expect(await Port.count({ where: { public_port: body.public_port as number, protocol: body.protocol as string } }), 'port row rolled back').to.equal(0);
        }
        // node A got nothing from the refused requests
        expect(await claimOf(`node_${nodeA.id}`, panelPort, 'tcp')).to.equal(null);
        expect(await claimOf(`node_${nodeA.id}`, 48888, 'tcp')).to.equal(null);
        // The same port over the other protocol is a different listener and is free.
        const res = await post({ public_port: 48888, protocol: 'udp', server_ids: ['main'] });
        expect(res.status).to.equal(200);
        expect(await claimOf('main', 48888, 'udp')).to.equal('openvpn');
      });

      it('a port held by another service in the registry is a 409 naming that service', async () => {
        await h.services.ctx.db.transaction((transaction) =>
          h.services.portRegistry.claim([{ server: `node_${nodeA.id}`, port: 4443, protocol: 'tcp', owner: 'ocserv' }], transaction),
        );
        const res = await post({ public_port: 4443, protocol: 'tcp', server_ids: [`node_${nodeA.id}`] });
        expect(res.status).to.equal(409);
        expect(res.body).to.deep.equal({ success: false, message: `Port 4443/tcp on node_${nodeA.id} is already used by Cisco AnyConnect (ocserv).` });
      });
    });

    describe('GET /public/ports', () => {
      it('lists default ports (main, then each node) and one custom row per assignment', async () => {
        const res = await h.http.get('/api/v1/public/ports').set('X-API-KEY', h.adminKey);
        expect(res.status).to.equal(200);
        expect(res.body.success).to.equal(true);
        expect(res.body.default_ports).to.deep.equal([
          { is_default: true, name: 'Main Server', public_port: 1194, protocol: 'udp' },
          { is_default: true, name: 'Node: Node A', public_port: 1194, protocol: 'udp' },
          { is_default: true, name: 'Node: Node B', public_port: 443, protocol: 'tcp' },
        ]);
        const p443 = await Port.findOne({ where: { public_port: 443, protocol: 'udp' }, raw: true });
        const p48888 = await Port.findOne({ where: { public_port: 48888, protocol: 'udp' }, raw: true });
        const rows = res.body.custom_ports as Record<string, unknown>[];
        const sortKey = (r: Record<string, unknown>) => `${r.port_id}:${r.server_identifier}`;
        expect([...rows].sort((a, b) => sortKey(a).localeCompare(sortKey(b)))).to.deep.equal(
          [
            { port_id: p443!.id, server_identifier: 'main', public_port: 443, protocol: 'udp', server_name: 'Main Server' },
            { port_id: p443!.id, server_identifier: `node_${nodeA.id}`, public_port: 443, protocol: 'udp', server_name: 'Node: Node A' },
            { port_id: p443!.id, server_identifier: `node_${nodeB.id}`, public_port: 443, protocol: 'udp', server_name: 'Node: Node B' },
            { port_id: p48888!.id, server_identifier: 'main', public_port: 48888, protocol: 'udp', server_name: 'Main Server' },
          ].sort((a, b) => sortKey(a).localeCompare(sortKey(b))),
        );
      });

      it("the main server's default port follows its setting", async () => {
        await Setting.update({ value: '1195' }, { where: { key: 'openvpn_default_port' } });
        const res = await h.http.get('/api/v1/public/ports').set('X-API-KEY', h.adminKey);
        expect(res.body.default_ports[0]).to.deep.equal({ is_default: true, name: 'Main Server', public_port: 1195, protocol: 'udp' });
        await Setting.update({ value: '1194' }, { where: { key: 'openvpn_default_port' } });
      });
    });

    describe('DELETE /public/ports/assignment', () => {
      it('a missing port_id or server_identifier is 400 "Missing info."', async () => {
        for (const body of [{ port_id: 2 }, { server_identifier: 'main' }, {}, { port_id: 2, server_identifier: '' }]) {
          const res = await del(body);
          expect(res.status, JSON.stringify(body)).to.equal(400);
          expect(res.body).to.deep.equal({ success: false, message: 'Missing info.' });
        }
      });

      it('an unknown assignment is 404 "Port assignment not found."', async () => {
        const p443 = await Port.findOne({ where: { public_port: 443, protocol: 'udp' }, raw: true });
        for (const body of [{ port_id: 999999, server_identifier: 'main' }, { port_id: p443!.id, server_identifier: 'node_999' }]) {
          const res = await del(body);
          expect(res.status).to.equal(404);
          expect(res.body).to.deep.equal({ success: false, message: 'Port assignment not found.' });
        }
      });

      it('removes one assignment and releases its claim; the port row stays while others use it', async () => {
        const p443 = await Port.findOne({ where: { public_port: 443, protocol: 'udp' }, raw: true });
        const events = recordEvents(h, ['ports.changed']);
        const res = await del({ port_id: p443!.id, server_identifier: `node_${nodeA.id}` });
        events.stop();
        expect(res.status).to.equal(200);
        expect(res.body).to.deep.equal({ success: true, message: 'Port assignment deleted.' });
        expect(events.seen).to.deep.equal([{ name: 'ports.changed', payload: {} }]);
        expect(await claimOf(`node_${nodeA.id}`, 443, 'udp')).to.equal(null);
        expect(await claimOf('main', 443, 'udp')).to.equal('openvpn');
        expect(await Port.count({ where: { id: p443!.id } })).to.equal(1);
        const again = await del({ port_id: p443!.id, server_identifier: `node_${nodeA.id}` });
        expect(again.status).to.equal(404);
      });

      it('deleting the last assignment deletes the port row, and the freed port can go to a reseller', async () => {
        const created = await post({ public_port: 45443, protocol: 'tcp', server_ids: ['main'] });
        expect(created.status).to.equal(200);
        let res = await h.http.post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey).send({ username: 'sa_late', password: 'p', panel_port: 45443 });
        expect(res.status).to.equal(409);
        expect(res.body).to.deep.equal({ success: false, message: 'Port 45443/tcp on main is already used by OpenVPN.' });

        const port = await Port.findOne({ where: { public_port: 45443, protocol: 'tcp' }, raw: true });
        // A query-string form works as well as the JSON body (the OpenAPI document lists query parameters).
        res = await h.http
          .delete(`/api/v1/public/ports/assignment?port_id=${port!.id}&server_identifier=main`)
          .set('X-API-KEY', h.adminKey);
        expect(res.status).to.equal(200);
        expect(res.body).to.deep.equal({ success: true, message: 'Port assignment deleted.' });
        expect(await Port.count({ where: { id: port!.id } })).to.equal(0);
        expect(await claimOf('main', 45443, 'tcp')).to.equal(null);

        res = await h.http.post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey).send({ username: 'sa_late', password: 'p', panel_port: 45443 });
        expect(res.status).to.equal(200);
      });

      it('a wrong type is a 400 naming the field', async () => {
        const res = await del({ port_id: 'abc', server_identifier: 'main' });
        expect(res.status).to.equal(400);
        expect(res.body).to.deep.equal({ success: false, message: "Field 'port_id' must be a number, not a non-numeric value." });
      });
    });
  });
});
