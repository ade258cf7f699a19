import { expect } from 'chai';
import { User, UserUsage } from '../../core/db';
import { MAIN_ADMIN } from '../../core/principal';
import { createHarness, forEachDatabase, type Harness } from '../helpers/harness';

type Item = { username: string; status: string; total_traffic_bytes: number; is_online: boolean; sub_admin_id: number | null };

/*
 * GET /users/list_all keeps its rows between writes. These tests prove a kept list never
 * shows stale rows after a write, never serves one reseller's rows to another (or the full
 * list to a reseller), and still computes what depends on the clock and on live sessions.
 */
forEachDatabase((kind) => {
  describe(`list_all rows kept between writes [${kind}]`, () => {
    let h: Harness;
    let keyA: string;
    let keyB: string;
    let idA: number;
    const list = async (key: string) => {
      const res = await h.http.get('/api/v1/users/list_all').set('X-API-KEY', key);
      expect(res.status).to.equal(200);
      return res.body;
    };
    const mainItems = (body: { main_admin: { users: Item[] }; sub_admins: { users: Item[] }[] }): Item[] => [
      ...body.main_admin.users,
      ...body.sub_admins.flatMap((s) => s.users),
    ];
    const sequelize = () => h.core.ctx.db.sequelize as unknown as { options: { logging: unknown } };
    const queriesDuring = async (fn: () => Promise<unknown>) => {
      let n = 0;
      const previous = sequelize().options.logging;
      sequelize().options.logging = () => void n++;
      try {
        await fn();
      } finally {
        sequelize().options.logging = previous;
      }
      return n;
    };

    before(async () => {
      h = await createHarness(kind);
      const a = await h.services.subAdmins.create(MAIN_ADMIN, { username: 'resA', password: 'reseller-password-a' });
      const b = await h.services.subAdmins.create(MAIN_ADMIN, { username: 'resB', password: 'reseller-password-b' });
      keyA = a.api_key;
      keyB = b.api_key;
      idA = a.id;
      await h.services.users.create(MAIN_ADMIN, { username: 'own_1' });
      await h.services.users.create(MAIN_ADMIN, { username: 'a_1', sub_admin_id: a.id });
      await h.services.users.create(MAIN_ADMIN, { username: 'a_2', sub_admin_id: a.id, expiry_days: 1 });
      await h.services.users.create(MAIN_ADMIN, { username: 'b_1', sub_admin_id: b.id });
    });
    after(() => h.close());

    it('a repeated list between writes is answered without reading the users again', async () => {
      await list(h.adminKey);
      await list(keyA);
      // Only the API key lookup may query (it has its own cache); no list query runs.
      const n = await queriesDuring(async () => {
        await list(h.adminKey);
        await list(keyA);
      });
      expect(n).to.equal(0);
    });

    it('each reseller gets only its own users, whichever list was kept first', async () => {
      await list(h.adminKey); // the full list is kept
      const a = await list(keyA);
      const b = await list(keyB);
      expect(a.users.map((u: Item) => u.username)).to.deep.equal(['a_1', 'a_2']);
      expect(b.users.map((u: Item) => u.username)).to.deep.equal(['b_1']);
      expect(a).not.to.have.property('main_admin');
      expect(mainItems(await list(h.adminKey)).map((u) => u.username).sort()).to.deep.equal(['a_1', 'a_2', 'b_1', 'own_1']);
    });

    it('a write through a service, a model or raw SQL shows on the very next list', async () => {
      await list(keyA);
      await h.services.users.create(MAIN_ADMIN, { username: 'a_3', sub_admin_id: idA });
      expect((await list(keyA)).users.map((u: Item) => u.username)).to.include('a_3');
      const user = (await User.findOne({ where: { username: 'a_1' } }))!;
      await UserUsage.upsert({ user_id: user.id, upload_bytes: 10, download_bytes: 5 });
      expect((await list(keyA)).users.find((u: Item) => u.username === 'a_1').total_traffic_bytes).to.equal(15);
      await h.core.ctx.db.sequelize.query(`UPDATE user_usage SET download_bytes = 95 WHERE user_id = ${user.id}`);
      const all = mainItems(await list(h.adminKey));
      expect(all.find((u) => u.username === 'a_1')!.total_traffic_bytes).to.equal(105);
      await h.services.users.delete(MAIN_ADMIN, 'a_3');
      expect((await list(keyA)).users.map((u: Item) => u.username)).not.to.include('a_3');
    });

    it('status follows the clock on a kept list (an expiry passes with no write)', async () => {
      const before = (await list(keyA)).users.find((u: Item) => u.username === 'a_2');
      expect(before.status).to.equal('active');
      h.clock.advance(2 * 86_400_000);
      const n = await queriesDuring(async () => {
        const after = (await list(keyA)).users.find((u: Item) => u.username === 'a_2');
        expect(after.status).to.equal('expired');
      });
      expect(n, 'served from the kept rows').to.equal(0);
    });
  });
});
