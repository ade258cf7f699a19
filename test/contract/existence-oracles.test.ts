import { expect } from 'chai';
import { createHarness, type Harness } from '../helpers/harness';

/*
 * What one reseller can learn about another's users (issue 8, finding 8; see
 * docs/threat-model.md). Inherent: usernames are global VPN login names, so creating a taken
 * name is a 409 — but it says nothing about who owns it. Removed: a GET of another reseller's
 * user did more work than a GET of an unknown name (a row read, parsed and cached); now the
 * lookup is scoped in SQL and both cost the same statements with no row.
 */
describe('existence oracles across resellers', () => {
  let h: Harness;
  let keyA: string;
  let keyB: string;
  before(async () => {
    h = await createHarness('sqlite');
    const reseller = async (username: string) =>
      ((await h.http.post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey).send({ username, password: 'pass-123' })).body.sub_admin as { api_key: string }).api_key;
    keyA = await reseller('oracle_a');
    keyB = await reseller('oracle_b');
    await h.http.post('/api/v1/users').set('X-API-KEY', keyA).send({ username: 'owned_by_a' }).expect(200);
    await h.http.post('/api/v1/users').set('X-API-KEY', keyB).send({ username: 'owned_by_b' }).expect(200);
    await h.http.post('/api/v1/users').set('X-API-KEY', h.adminKey).send({ username: 'owned_by_main' }).expect(200);
  });
  after(() => h.close());

  it("creating a name another owner holds is the same 409 as one's own, naming no owner", async () => {
    const answers = await Promise.all(
      ['owned_by_a', 'owned_by_b', 'owned_by_main'].map((username) => h.http.post('/api/v1/users').set('X-API-KEY', keyB).send({ username })),
    );
    for (const res of answers) {
      expect(res.status).to.equal(409);
      expect(res.body).to.deep.equal({ success: false, message: 'User already exists.' });
    }
  });

  it("GET of another reseller's user and of an unknown name: same 404, same statements, no row read", async () => {
    const sequelize = h.services.ctx.db.sequelize as unknown as { query: (...args: unknown[]) => Promise<unknown> };
    const original = sequelize.query;
    const trace = async (path: string) => {
      const seen: Array<{ sql: string; rows: number }> = [];
      sequelize.query = async function (this: unknown, ...args: unknown[]) {
        const result = await original.apply(this, args);
        seen.push({ sql: String(args[0]).replace(/\s+/g, ' ').slice(0, 80), rows: Array.isArray(result) ? result.length : -1 });
        return result;
      };
      try {
        const res = await h.http.get(path).set('X-API-KEY', keyB);
        return { status: res.status, body: res.body as unknown, seen };
      } finally {
        sequelize.query = original;
      }
    };
    // Warm the cache with A's user as A and as the main admin: B must still not be served from it.
    await h.http.get('/api/v1/users/owned_by_a').set('X-API-KEY', keyA).expect(200);
    await h.http.get('/api/v1/users/owned_by_a').set('X-API-KEY', h.adminKey).expect(200);
    const other = await trace('/api/v1/users/owned_by_a');
    const unknown = await trace('/api/v1/users/nobody_by_this');
    expect(other.status).to.equal(404);
    expect(other.body).to.deep.equal(unknown.body);
    expect(other.seen).to.deep.equal(unknown.seen);
    expect(other.seen.length).to.be.greaterThan(0);
    expect(other.seen.every((q) => q.rows <= 0)).to.equal(true);
  });
});
