import { expect } from 'chai';
import { User } from '../../core/db';
import { MAIN_ADMIN } from '../../core/principal';
import { createHarness, forEachDatabase, type Harness } from '../helpers/harness';

/*
 * GET /users/{u} answers a key's repeated request from memory (api/user-detail-cache.ts). These
 * tests prove a kept answer is byte-for-byte what the full path answers, is never served after
 * anything it depends on changed (a write, live connections, the clock at expiry), and is
 * never served to another key.
 */
forEachDatabase((kind) => {
  describe(`GET /users/{u} answers kept between changes [${kind}]`, () => {
    let h: Harness;
    let keyA: string;
    let keyB: string;
    const get = (name: string, key: string, query = '') => h.http.get(`/api/v1/users/${name}${query}`).set('X-API-KEY', key);
    const sequelize = () => h.core.ctx.db.sequelize as unknown as { options: { logging: unknown } };
    const queriesDuring = async <T>(fn: () => Promise<T>): Promise<{ n: number; value: T }> => {
      let n = 0;
      const previous = sequelize().options.logging;
      sequelize().options.logging = () => void n++;
      try {
        return { value: await fn(), n };
      } finally {
        sequelize().options.logging = previous;
      }
    };

    before(async () => {
      h = await createHarness(kind);
      const a = await h.services.subAdmins.create(MAIN_ADMIN, { username: 'resA', password: 'reseller-password-a' });
      const b = await h.services.subAdmins.create(MAIN_ADMIN, { username: 'resB', password: 'reseller-password-b' });
      keyA = a.api_key;
      keyB = b.api_key;
      await h.services.users.create(MAIN_ADMIN, { username: 'kept_a', sub_admin_id: a.id, expiry_days: 1 });
      await h.services.users.create(MAIN_ADMIN, { username: 'kept_b', sub_admin_id: b.id });
    });
    after(() => h.close());

    it('a repeat is served from memory with the same status, headers and bytes as the full path', async () => {
      const first = await get('kept_a', keyA);
      const second = await get('kept_a', keyA); // the first read may write the subscription token
      expect(first.status).to.equal(200);
      const third = await queriesDuring(() => get('kept_a', keyA));
      expect(third.n, 'no query ran').to.equal(0);
      expect(third.value.status).to.equal(200);
      expect(third.value.text).to.equal(second.text);
      expect(third.value.text).to.equal(first.text);
      const headers = (h: Record<string, string>) => Object.fromEntries(Object.entries(h).filter(([k]) => k !== 'date'));
      expect(headers(third.value.headers)).to.deep.equal(headers(second.headers));
    });

    it('another key never gets a kept answer: a reseller sees 404 for a user kept for its owner, like an unknown name', async () => {
      await get('kept_a', keyA);
      await get('kept_a', keyA);
      const other = await get('kept_a', keyB);
      const unknown = await get('no_such_user', keyB);
      expect(other.status).to.equal(404);
      expect(other.body).to.deep.equal(unknown.body);
      // The main admin may see it: its own full-path answer, then its own kept one.
      expect((await get('kept_a', h.adminKey)).status).to.equal(200);
      expect((await get('kept_a', 'INVALID_KEY')).status).to.equal(401);
    });

    it('any database write shows on the very next GET', async () => {
      await get('kept_a', keyA);
      await User.update({ notes: 'changed by a model' }, { where: { username: 'kept_a' } });
      expect((await get('kept_a', keyA)).body.notes).to.equal('changed by a model');
      await h.core.ctx.db.sequelize.query(`UPDATE users SET max_clients = 7 WHERE username = 'kept_a'`);
      expect((await get('kept_a', keyA)).body.max_clients).to.equal(7);
    });

    it('a live connection appearing (no database write) shows on the very next GET', async () => {
      await get('kept_a', keyA);
      expect((await get('kept_a', keyA)).body.active_connections).to.equal(0);
      const live = h.core.accounting.live;
      const conn = { username: 'kept_a', protocol: 'openvpn', serverId: 'main', pluginKey: 'k1', key: 'k1', rx: 0, tx: 0, firstSeenRound: 1, connectedAt: 0 };
      live.replaceSource('openvpn@main', new Map([['k1', conn as never]]));
      live.reindex();
      try {
        const res = await get('kept_a', keyA);
        expect(res.body.active_connections).to.equal(1);
        expect(res.body.is_online).to.equal(true);
      } finally {
        live.dropSource('openvpn@main');
      }
      expect((await get('kept_a', keyA)).body.is_online).to.equal(false);
    });

    it('the clock passing the expiry turns a kept answer expired with no write', async () => {
      await get('kept_a', keyA);
      expect((await get('kept_a', keyA)).body.status).to.equal('active');
      h.clock.advance(2 * 86_400_000);
      expect((await get('kept_a', keyA)).body.status).to.equal('expired');
    });

    it('a request with a query string always takes the full path', async () => {
      await get('kept_b', keyB);
      await get('kept_b', keyB);
      // The full path authenticates the key first thing; a kept answer does not.
      const auth = h.services.auth;
      const original = auth.authenticate;
      let calls = 0;
      auth.authenticate = (...args) => (calls++, original.apply(auth, args));
      try {
        await get('kept_b', keyB);
        expect(calls, 'a repeat without a query string is kept').to.equal(0);
        await get('kept_b', keyB, '?x=1');
        expect(calls, 'with one, the procedure runs').to.equal(1);
      } finally {
        auth.authenticate = original;
      }
    });
  });
});
