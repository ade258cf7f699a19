import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { openApiDocument } from '../../api/openapi';
import { listRestRoutes } from '../../api/rest';
import { createHarness, type Harness } from '../helpers/harness';

const SNAPSHOT = path.join(__dirname, '..', 'fixtures', 'openapi.snapshot.json');
/** The harness's POLYGATE_PUBLIC_URL; the snapshot is generated for it. */
const BASE_URL = 'http://panel.example.test:8080';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** JSON pointers where two documents differ, so a mismatch names the changed operations. */
function diffPaths(a: unknown, b: unknown, at = ''): string[] {
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
  if (!isObj(a) || !isObj(b) || Array.isArray(a) !== Array.isArray(b)) return [`${at || '/'}: ${JSON.stringify(a)?.slice(0, 80)} → ${JSON.stringify(b)?.slice(0, 80)}`];
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
  return keys.flatMap((k) => diffPaths(a[k], b[k], `${at}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`));
}

/** The document as clients receive it (undefined keys dropped). */
const generated = (): Json => JSON.parse(JSON.stringify(openApiDocument(BASE_URL)));

describe('OpenAPI document', () => {
  let h: Harness;
  before(async () => {
    h = await createHarness('sqlite');
  });
  after(() => h.close());

  it('is OpenAPI 3.1 and served at /api/v1/openapi.json without a key', async () => {
    const res = await h.http.get('/api/v1/openapi.json');
    expect(res.status).to.equal(200);
    expect(res.body.openapi).to.match(/^3\.1\./);
    expect(res.body).to.deep.equal(generated());
  });

  it('declares the X-API-KEY header as an apiKey security scheme', () => {
    const doc = generated();
    const schemes = doc.components?.securitySchemes ?? {};
    const apiKey = Object.values<Json>(schemes).find((s) => s.type === 'apiKey');
    expect(apiKey, 'an apiKey security scheme').to.deep.include({ type: 'apiKey', in: 'header', name: 'X-API-KEY' });
  });

  it('has a path + method entry with request and response schemas for every REST route, and nothing else', () => {
    const doc = generated();
    const routes = listRestRoutes();
    expect(routes.length, 'REST routes').to.be.greaterThan(0);
    const problems: string[] = [];
    const documented = new Set<string>();
    for (const [p, item] of Object.entries<Json>(doc.paths ?? {})) {
      for (const method of Object.keys(item)) if (['get', 'post', 'put', 'patch', 'delete'].includes(method)) documented.add(`${method.toUpperCase()} ${p}`);
    }
    for (const route of routes) {
      const key = `${route.method} ${route.path}`;
      const op: Json | undefined = doc.paths?.[route.path]?.[route.method.toLowerCase()];
      if (!op) {
        problems.push(`${key}: no operation in the document`);
        continue;
      }
      documented.delete(key);
      const success = Object.entries<Json>(op.responses ?? {}).find(([status]) => /^2\d\d$/.test(status));
      if (!success?.[1].content?.['application/json']?.schema) problems.push(`${key}: no JSON response schema for a 2xx answer`);
      const params: Json[] = op.parameters ?? [];
      for (const [, name] of route.path.matchAll(/\{(\w+)\}/g)) {
        if (!params.some((p) => p.in === 'path' && p.name === name && p.schema)) problems.push(`${key}: path parameter '${name}' is not documented`);
      }
      if (route.takesInput) {
        const body = op.requestBody?.content?.['application/json']?.schema;
        if (!body && !params.some((p) => p.schema)) problems.push(`${key}: takes input but documents no request schema (body or parameters)`);
      }
      if (route.meta.access !== 'public' && !(op.security ?? doc.security ?? []).some((s: Json) => Object.keys(s).length > 0)) {
        problems.push(`${key}: needs a key (${route.meta.access}) but declares no security requirement`);
      }
    }
    for (const extra of documented) problems.push(`${extra}: documented but not served`);
    expect(problems, problems.join('\n')).to.deep.equal([]);
  });

  it('serves only polygate\'s docs page: the assets it loads answer, the stock Swagger UI and the package files do not', async () => {
    const page = await h.http.get('/docs/');
    expect(page.status).to.equal(200);
    const assets = [...page.text.matchAll(/(?:src|href)="(\/docs\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    expect(assets.length, 'assets the page loads').to.be.greaterThan(1);
    for (const asset of assets) expect((await h.http.get(asset)).status, asset).to.equal(200);
    for (const hidden of ['index.html', 'package.json', 'swagger-initializer.js', 'swagger-ui-bundle.js.map', 'README.md', 'oauth2-redirect.html', '']) {
      const res = await h.http.get(`/docs/assets/${hidden}`);
      expect(res.status, `/docs/assets/${hidden}`).to.equal(404);
      expect(res.text, `/docs/assets/${hidden}`).to.not.match(/petstore|SwaggerUIBundle|"license"/);
    }
    expect(page.text, 'no validator badge calling out').to.match(/validatorUrl: null/);
  });

  it('equals the committed snapshot test/fixtures/openapi.snapshot.json (contract changes show up in review)', () => {
    const doc = generated();
    const text = `${JSON.stringify(doc, null, 2)}\n`;
    if (process.env.POLYGATE_UPDATE_SNAPSHOT === '1') {
      writeFileSync(SNAPSHOT, text);
      console.log(`  (wrote ${path.relative(process.cwd(), SNAPSHOT)})`);
      return;
    }
    const hint =
      'The generated OpenAPI document differs from test/fixtures/openapi.snapshot.json. If the API change is intended, ' +
      'regenerate the snapshot with `POLYGATE_UPDATE_SNAPSHOT=1 POLYGATE_TEST_SPEC=test/contract/openapi.test.ts npx mocha` and commit it.';
    expect(existsSync(SNAPSHOT), `${hint} (The snapshot file is missing.)`).to.equal(true);
    const snapshot = JSON.parse(readFileSync(SNAPSHOT, 'utf8'));
    const differences = diffPaths(snapshot, doc);
    expect(differences, `${hint}\nFirst differences (snapshot → generated):\n  ${differences.slice(0, 20).join('\n  ')}`).to.deep.equal([]);
  });
});
