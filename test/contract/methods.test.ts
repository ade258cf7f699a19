import { expect } from 'chai';
import { openApiDocument } from '../../api/openapi';
import { createHarness, type Harness } from '../helpers/harness';

/*
 * Issue 12, finding 2: `PATCH /api/v1/users/alice` answered 404 "Unknown endpoint". A path the
 * API serves, asked with a method it does not serve, is a 405 in the envelope with an `Allow`
 * header listing what is served there; a path nothing serves stays a 404. The expectations
 * come from the OpenAPI document, not from the adapter's own route table.
 */

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

describe('a wrong method on a known path: 405 with Allow', () => {
  let h: Harness;
  before(async () => {
    h = await createHarness('sqlite');
    await h.http.post('/api/v1/users').set('X-API-KEY', h.adminKey).send({ username: 'alice' }).expect(200);
  });
  after(() => h.close());

  it('PATCH /api/v1/users/alice → 405, Allow: GET, HEAD, PUT, DELETE, OPTIONS, envelope naming the method; the user is untouched', async () => {
    const res = await h.http.patch('/api/v1/users/alice').set('X-API-KEY', h.adminKey).send({ max_clients: 5 });
    expect(res.status).to.equal(405);
    expect(res.headers.allow).to.equal('GET, HEAD, PUT, DELETE, OPTIONS');
    expect(res.body).to.deep.equal({ success: false, message: 'Method PATCH is not allowed on /api/v1/users/alice; allowed: GET, HEAD, PUT, DELETE, OPTIONS.' });
    const got = await h.http.get('/api/v1/users/alice').set('X-API-KEY', h.adminKey);
    expect(got.body.max_clients).to.equal(1);
  });

  it('every documented path, with every method it is not documented for, is a 405 whose Allow lists exactly the documented methods', async () => {
    const doc = openApiDocument('http://panel.example.test:8080') as unknown as { paths: Record<string, Record<string, unknown>> };
    const templates = Object.entries(doc.paths).map(([path, item]) => ({ path, methods: Object.keys(item).map((m) => m.toUpperCase()) }));
    // A concrete path can match several templates (`/users/list_all` and `/users/{username}`).
    const matches = (template: string, concrete: string) => {
      const a = template.split('/');
      const b = concrete.split('/');
      return a.length === b.length && a.every((seg, i) => /^\{\w+\}$/.test(seg) || seg === b[i]);
    };
    const problems: string[] = [];
    let checked = 0;
    for (const { path } of templates) {
      const concrete = path.replace(/\{username\}/g, 'alice').replace(/\{\w+\}/g, '7');
      const served = new Set(templates.filter((t) => matches(t.path, concrete)).flatMap((t) => t.methods));
      const allow = [...served];
      if (served.has('GET')) allow.push('HEAD');
      allow.push('OPTIONS');
      for (const method of METHODS.filter((m) => !served.has(m))) {
        checked++;
        const res = await h.http[method.toLowerCase() as 'get'](`/api/v1${concrete}`);
        const got = (res.headers.allow ?? '').split(', ').sort();
        if (res.status !== 405 || JSON.stringify(got) !== JSON.stringify([...allow].sort()) || res.body.success !== false || !/^Method /.test(res.body.message ?? '')) {
          problems.push(`${method} ${concrete}: ${res.status} Allow=${res.headers.allow} ${JSON.stringify(res.body)} (expected 405, Allow ${allow.join(', ')})`);
        }
      }
    }
    expect(checked, 'method/path pairs tried').to.be.greaterThan(40);
    expect(problems, problems.join('\n')).to.deep.equal([]);
  });

  it('the document itself (GET only) and OPTIONS: 405 for POST, 204 with Allow for OPTIONS', async () => {
    const post = await h.http.post('/api/v1/openapi.json');
    expect(post.status).to.equal(405);
    expect(post.headers.allow).to.equal('GET, HEAD, OPTIONS');
    const options = await h.http.options('/api/v1/users');
    expect(options.status).to.equal(204);
    expect(options.headers.allow).to.equal('POST, OPTIONS');
  });

  it('a path nothing serves is still a 404 "Unknown endpoint", whatever the method', async () => {
    for (const method of ['get', 'patch', 'post'] as const) {
      const res = await h.http[method]('/api/v1/no_such_thing').set('X-API-KEY', h.adminKey);
      expect(res.status).to.equal(404);
      expect(res.headers.allow).to.equal(undefined);
      expect(res.body).to.deep.equal({ success: false, message: `Unknown endpoint: ${method.toUpperCase()} /api/v1/no_such_thing` });
    }
  });
});
