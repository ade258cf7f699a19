import { expect } from 'chai';
import { ApiKey, SubAdmin, User, UserUsage } from '../../core/db';
import { randomKey, sha256Hex, hashPassword } from '../../core/secrets';
import { createHarness, forEachDatabase, type Harness } from '../helpers/harness';

/*
 * GET /users/{u} answers repeated reads from memory between writes. These tests prove the
 * cache never shows stale data after any write by the daemon (models, raw SQL, transactions)
 * and never lets a reseller tell another reseller's user from a name that does not exist.
 */
forEachDatabase((kind) => {
  describe(`user read cache [${kind}]`, () => {
    let h: Harness;
    let keyA: string;
    let keyB: string;
    const get = (name: string, key: string) => h.http.get(`/api/v1/users/${name}`).set('X-API-KEY', key);

    before(async () => {
      h = await createHarness(kind);
      const [a, b] = await Promise.all(['resA', 'resB'].map((username) => SubAdmin.create({ username, password_hash: hashPassword('pw-123456') })));
      keyA = randomKey();
      keyB = randomKey();
      await ApiKey.create({ key_hash: sha256Hex(keyA), kind: 'sub_admin', sub_admin_id: a!.id });
      await ApiKey.create({ key_hash: sha256Hex(keyB), kind: 'sub_admin', sub_admin_id: b!.id });
      expect((await h.http.post('/api/v1/users').set('X-API-KEY', keyA).send({ username: 'cached_a' })).status).to.equal(200);
    });
    after(() => h.close());

    it('a write through a model, raw SQL or a transaction shows on the very next GET', async () => {
      expect((await get('cached_a', keyA)).body.upload_bytes).to.equal(0);
      const user = (await User.findOne({ where: { username: 'cached_a' } }))!;
      await UserUsage.create({ user_id: user.id, upload_bytes: 111 });
      expect((await get('cached_a', keyA)).body.upload_bytes).to.equal(111);
      await h.core.ctx.db.sequelize.query(`UPDATE user_usage SET download_bytes = 222 WHERE user_id = (SELECT id FROM users WHERE username = 'cached_a')`);
      expect((await get('cached_a', keyA)).body.download_bytes).to.equal(222);
      await h.core.ctx.db.transaction(async (transaction) => {
        await User.update({ notes: 'in a transaction' }, { where: { username: 'cached_a' }, transaction });
      });
      expect((await get('cached_a', h.adminKey)).body.notes).to.equal('in a transaction');
    });

    it('another reseller gets the same 404, at the cost of the same query, for a cached user as for an unknown one', async () => {
      const sequelize = h.core.ctx.db.sequelize as unknown as { options: { logging: unknown } };
      const queriesOf = async (name: string, key: string) => {
        let n = 0;
        const previous = sequelize.options.logging;
        sequelize.options.logging = () => void n++;
        try {
          const res = await get(name, key);
          return { n, status: res.status, body: res.body };
        } finally {
          sequelize.options.logging = previous;
        }
      };
      await get('cached_a', keyA); // now cached
      await get('warm_up_auth', keyB); // both keys' principals are cached too
      const owner = await queriesOf('cached_a', keyA);
      const other = await queriesOf('cached_a', keyB);
      const unknown = await queriesOf('no_such_user', keyB);
      expect(owner.n, 'the owner is served from memory').to.equal(0);
      expect(other.status).to.equal(404);
      expect(other.body).to.deep.equal(unknown.body);
      expect(other.n, 'same database work as an unknown name').to.equal(unknown.n).and.to.be.greaterThan(0);
    });
  });
});
