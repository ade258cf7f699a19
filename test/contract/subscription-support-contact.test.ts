import { expect } from 'chai';
import { SubAdmin, Setting } from '../../core/db';
import { createHarness, forEachDatabase, type Harness } from '../helpers/harness';

/**
 * The support contact customers see on their subscription page: a global one (main admin)
 * and one per reseller, which the reseller edits itself through its own key and the main
 * admin through PUT /sub_admins/{id}. Bad input is a 400 that changes nothing.
 */
forEachDatabase((kind) => {
  describe(`support contact setting [${kind}]`, () => {
    let h: Harness;
    let shop: { id: number; key: string };
    let other: { id: number; key: string };
    const call = (method: 'get' | 'put', path: string, key: string, body?: object) => {
      const req = h.http[method](`/api/v1${path}`).set('X-API-KEY', key);
      return body === undefined ? req : req.send(body);
    };
    const reseller = async (username: string) => {
      const created = await h.http.post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey).send({ username, password: 'reseller-password' });
      expect(created.status, JSON.stringify(created.body)).to.equal(200);
      return { id: created.body.sub_admin.id as number, key: created.body.sub_admin.api_key as string };
    };

    before(async () => {
      h = await createHarness(kind);
      shop = await reseller('shop_support');
      other = await reseller('other_support');
    });
    after(() => h.close());

    it('main admin sets the global contact; GET /support_contact shows it', async () => {
      expect((await call('get', '/support_contact', h.adminKey)).body).to.deep.equal({ success: true, support_contact: null, effective_support_contact: null });
      const res = await call('put', '/support_contact', h.adminKey, { support_contact: '  @operator_help  ' });
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      expect(res.body).to.deep.equal({ success: true, message: 'Support contact updated.', support_contact: '@operator_help', effective_support_contact: '@operator_help' });
      expect((await call('get', '/support_contact', h.adminKey)).body.support_contact).to.equal('@operator_help');
    });

    it('a reseller sets only its own contact; without one it falls back to the global one', async () => {
      expect((await call('get', '/support_contact', shop.key)).body).to.deep.equal({ success: true, support_contact: null, effective_support_contact: '@operator_help' });
      const res = await call('put', '/support_contact', shop.key, { support_contact: 'https://t.me/shop_support_bot' });
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      expect(res.body.support_contact).to.equal('https://t.me/shop_support_bot');
      expect((await call('get', '/support_contact', h.adminKey)).body.support_contact, 'global unchanged').to.equal('@operator_help');
      expect((await call('get', '/support_contact', other.key)).body.support_contact, "the other reseller's unchanged").to.equal(null);
      const list = (await call('get', '/sub_admins', h.adminKey)).body.sub_admins as Array<{ id: number; support_contact: string | null }>;
      expect(list.find((r) => r.id === shop.id)?.support_contact).to.equal('https://t.me/shop_support_bot');
      expect(list.find((r) => r.id === other.id)?.support_contact).to.equal(null);
      // A reseller cannot reach another's through sub_admins either.
      expect((await call('put', `/sub_admins/${other.id}`, shop.key, { support_contact: 'hijack' })).status).to.equal(403);
      expect((await SubAdmin.findByPk(other.id, { raw: true }))?.support_contact).to.equal(null);
    });

    it("main admin edits any reseller's contact through PUT /sub_admins/{id}; null clears it", async () => {
      let res = await call('put', `/sub_admins/${other.id}`, h.adminKey, { support_contact: '+98 912 000 0000' });
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      expect((await call('get', '/support_contact', other.key)).body.support_contact).to.equal('+98 912 000 0000');
      res = await call('put', `/sub_admins/${other.id}`, h.adminKey, { support_contact: null });
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      expect((await call('get', '/support_contact', other.key)).body).to.deep.include({ support_contact: null, effective_support_contact: '@operator_help' });
      const created = await h.http.post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey).send({ username: 'born_with_contact', password: 'pw-123456', support_contact: 'پشتیبانی: @born' });
      expect(created.status, JSON.stringify(created.body)).to.equal(200);
      expect((await call('get', '/support_contact', created.body.sub_admin.api_key)).body.support_contact).to.equal('پشتیبانی: @born');
    });

    it('bad input is a 400 {success:false,message} naming the field, and nothing changes', async () => {
      const before = { global: (await Setting.findByPk('support_contact', { raw: true }))?.value, shop: (await SubAdmin.findByPk(shop.id, { raw: true }))?.support_contact };
      const bad: Array<[string, unknown]> = [
        ['too long', 'x'.repeat(201)],
        ['newline', 'line one\nline two'],
        ['NUL', 'a\u0000b'],
        ['bidi override', 'abc\u202edcba'],
        ['line separator', 'a\u2028b'],
        ['number', 42],
        ['object', { a: 1 }],
      ];
      for (const [label, value] of bad) {
        for (const key of [h.adminKey, shop.key]) {
          const res = await call('put', '/support_contact', key, { support_contact: value });
          expect(res.status, `${label}: ${JSON.stringify(res.body)}`).to.equal(400);
          expect(res.body.success, label).to.equal(false);
          expect(res.body.message, label).to.be.a('string').and.match(/support_contact/);
          expect(Object.keys(res.body).sort(), label).to.deep.equal(['message', 'success']);
        }
        const viaSubAdmins = await call('put', `/sub_admins/${shop.id}`, h.adminKey, { support_contact: value });
        expect(viaSubAdmins.status, `${label} via sub_admins`).to.equal(400);
      }
      const missing = await call('put', '/support_contact', h.adminKey, {});
      expect(missing.status).to.equal(400);
      expect(missing.body.message).to.match(/support_contact/);
      const after = { global: (await Setting.findByPk('support_contact', { raw: true }))?.value, shop: (await SubAdmin.findByPk(shop.id, { raw: true }))?.support_contact };
      expect(after).to.deep.equal(before);
      // 200 characters is the limit, not over it.
      expect((await call('put', '/support_contact', shop.key, { support_contact: 'y'.repeat(200) })).status).to.equal(200);
      expect((await call('put', '/support_contact', shop.key, { support_contact: '' })).body.support_contact, 'empty clears').to.equal(null);
    });

    it('no key, or an unknown key: 401', async () => {
      expect((await h.http.get('/api/v1/support_contact')).status).to.equal(401);
      expect((await h.http.put('/api/v1/support_contact').set('X-API-KEY', 'nope').send({ support_contact: 'x' })).status).to.equal(401);
    });
  });
});
