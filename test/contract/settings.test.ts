import { expect } from 'chai';
import { NodeRecord, Setting } from '../../core/db';
import type { DomainEventMap } from '../../core/events';
import { LocalHost } from '../../core/hosts/local-host';
import { startProtocols } from '../../core/protocols/start';
import { addScriptedPlugin } from '../fakes/scripted-plugin';
import { createHarness, forEachDatabase, type Harness } from '../helpers/harness';

const INVALID_PSK = { success: false, message: 'Invalid PSK. Cannot be empty or contain double quotes.' };
const STRICT_DENIAL = { success: false, message: 'Permission denied: Main admin API key required.' };

function recordEvents(h: Harness, names: (keyof DomainEventMap)[]) {
  const seen: { name: string; payload: unknown }[] = [];
  const offs = names.map((name) => h.services.ctx.events.on(name, (payload) => seen.push({ name, payload })));
  return { seen, stop: () => offs.forEach((off) => off()) };
}

const addNode = (name: string, status: NodeRecord['status']) =>
  NodeRecord.create({ name, ip_address: '203.0.113.9', ssh_secret: null, communication_method: null, status_message: null, status });

forEachDatabase((kind) => {
  describe(`server settings API [${kind}]`, () => {
    let h: Harness;
    let resellerKey: string;
    const update = (body: unknown) => h.http.post('/api/v1/update_ipsec_psk').set('X-API-KEY', h.adminKey).send(body as object);
    const storedPsk = async () => (await Setting.findByPk('ipsec_psk', { raw: true }))?.value;

    before(async () => {
      h = await createHarness(kind);
      const res = await h.http.post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey).send({ username: 'sa_settings', password: 'pass' });
      resellerKey = res.body.sub_admin.api_key;
    });
    after(() => h.close());

    it('GET /server_settings answers the PSK created at first start', async () => {
      const res = await h.http.get('/api/v1/server_settings').set('X-API-KEY', h.adminKey);
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ success: true, settings: { ipsec_psk: await storedPsk() } });
      expect(res.body.settings.ipsec_psk).to.be.a('string').with.length.of.at.least(16);
    });

    it('both endpoints refuse a sub-admin with 403 "Permission denied: Main admin API key required." and an unknown key with 401', async () => {
      const before = await storedPsk();
      let res = await h.http.get('/api/v1/server_settings').set('X-API-KEY', resellerKey);
      expect(res.status).to.equal(403);
      expect(res.body).to.deep.equal(STRICT_DENIAL);
      res = await h.http.post('/api/v1/update_ipsec_psk').set('X-API-KEY', resellerKey).send({ new_psk: 'X' });
      expect(res.status).to.equal(403);
      expect(res.body).to.deep.equal(STRICT_DENIAL);
      expect(await storedPsk()).to.equal(before);
      res = await h.http.get('/api/v1/server_settings').set('X-API-KEY', 'INVALID_KEY');
      expect(res.status).to.equal(401);
      expect(res.body).to.deep.equal({ success: false, message: 'Invalid or inactive API key' });
    });

    it('POST /update_ipsec_psk stores the PSK, emits settings.changed and counts no nodes when there are none', async () => {
      const events = recordEvents(h, ['settings.changed']);
      const res = await update({ new_psk: 'MyNewSecurePSK_2026' });
      events.stop();
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ success: true, message: 'IPsec PSK updated locally and on 0 nodes.' });
      expect(events.seen).to.deep.equal([{ name: 'settings.changed', payload: { key: 'ipsec_psk' } }]);
      const get = await h.http.get('/api/v1/server_settings').set('X-API-KEY', h.adminKey);
      expect(get.body).to.deep.equal({ success: true, settings: { ipsec_psk: 'MyNewSecurePSK_2026' } });
    });

    it('the node count is the nodes whose plugins took the new PSK: none while no plugin runs on a node, never a failed one', async () => {
      const a = await addNode('A', 'active');
      const b = await addNode('B', 'active');
      await addNode('C', 'error');
      await addNode('D', 'installing');
      await addNode('E', 'offline');
      let res = await update({ new_psk: 'First one' });
      expect(res.body).to.deep.equal({ success: true, message: 'IPsec PSK updated locally and on 0 nodes.' });

      const running = await startProtocols(h.core, { host: new LocalHost(), plugins: [] });
      try {
        const onA = await addScriptedPlugin(h.core.plugins, 'l2tp', `node_${a.id}`);
        const onB = await addScriptedPlugin(h.core.plugins, 'l2tp', `node_${b.id}`);
        onB.applyFailure = new Error('node unreachable');
        res = await update({ new_psk: 'Another one with spaces & symbols!#$%' });
        expect(res.body).to.deep.equal({ success: true, message: 'IPsec PSK updated locally and on 1 nodes.' });
        expect(await storedPsk()).to.equal('Another one with spaces & symbols!#$%');
        expect(onA.applied.at(-1)!.settings).to.deep.equal({ ipsec_psk: 'Another one with spaces & symbols!#$%', pki_crl: onA.applied.at(-1)!.settings.pki_crl });
        // The main server's plugins took it too (they do not count as nodes).
        expect(h.plugins.l2tp!.applied.at(-1)!.settings.ipsec_psk).to.equal('Another one with spaces & symbols!#$%');
      } finally {
        await running.stop();
        h.core.plugins.remove('l2tp', `node_${a.id}`);
        h.core.plugins.remove('l2tp', `node_${b.id}`);
      }
    });

    it('an empty, absent or null PSK, or one with a double quote, is 400 "Invalid PSK. Cannot be empty or contain double quotes."', async () => {
      const before = await storedPsk();
      for (const body of [{ new_psk: '' }, {}, { new_psk: null }, { new_psk: 'abc"def' }, { new_psk: '"' }]) {
        const res = await update(body);
        expect(res.status, JSON.stringify(body)).to.equal(400);
        expect(res.body).to.deep.equal(INVALID_PSK);
      }
      expect(await storedPsk()).to.equal(before);
    });

    it('control characters, newlines and anything outside printable ASCII are refused with the same message', async () => {
      const before = await storedPsk();
      for (const psk of ['line1\nline2', 'cr\r', 'tab\there', 'nul\u0000', 'del\u007f', 'caf\u00e9', 'emoji\u{1F600}', 'rtl\u202e', 'esc\u001b[0m']) {
        const res = await update({ new_psk: psk });
        expect(res.status, JSON.stringify(psk)).to.equal(400);
        expect(res.body).to.deep.equal(INVALID_PSK);
      }
      expect(await storedPsk()).to.equal(before);
    });

    it('accepts up to 128 characters and refuses longer PSKs with a 400', async () => {
      let res = await update({ new_psk: 'k'.repeat(128) });
      expect(res.status).to.equal(200);
      res = await update({ new_psk: 'k'.repeat(129) });
      expect(res.status).to.equal(400);
      expect(res.body).to.deep.equal({ success: false, message: 'Invalid PSK. It must be at most 128 characters.' });
      expect(await storedPsk()).to.equal('k'.repeat(128));
    });

    it('a PSK of the wrong type is a 400 naming the field', async () => {
      const res = await update({ new_psk: 12345 });
      expect(res.status).to.equal(400);
      expect(res.body).to.deep.equal({ success: false, message: "Field 'new_psk' must be a string, not a number." });
    });

    it('tRPC clients get the same answers', async () => {
      const caller = h.caller(h.adminKey);
      expect(await caller.settings.updateIpsecPsk({ new_psk: 'viaTrpc' })).to.deep.equal({ success: true, message: 'IPsec PSK updated locally and on 0 nodes.' });
      expect(await caller.settings.get()).to.deep.equal({ success: true, settings: { ipsec_psk: 'viaTrpc' } });
      let error: unknown;
      await caller.settings.updateIpsecPsk({ new_psk: 'a"b' }).catch((e: unknown) => (error = e));
      expect((error as { code?: string }).code).to.equal('BAD_REQUEST');
      expect((error as Error).message).to.equal(INVALID_PSK.message);
    });
  });
});
