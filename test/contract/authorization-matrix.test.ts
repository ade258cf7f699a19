import { expect } from 'chai';
import { listRestRoutes, type RestRoute } from '../../api/rest';
import type { Access } from '../../api/trpc';
import { NodeRecord, SubAdmin, SubscriptionToken, User } from '../../core/db';
import { createHarness, forEachDatabase, type DatabaseKind, type Harness } from '../helpers/harness';

/**
 * Who may call what, generated from the router's own list of REST procedures: every route is
 * tried with no key, a bad key, an inactive reseller's key, another reseller's key, the owning
 * reseller's key and the main admin key. A route added without a known `meta.access`, or
 * without an entry in REQUESTS below, fails here, so no endpoint ships uncovered.
 */

const KNOWN_ACCESS: readonly Access[] = ['public', 'any_key', 'main_admin', 'main_admin_strict'];

type Case = 'no key' | 'bad key' | 'inactive reseller' | 'other reseller' | 'own reseller' | 'main admin';
const CASES: readonly Case[] = ['no key', 'bad key', 'inactive reseller', 'other reseller', 'own reseller', 'main admin'];

interface Fixtures {
  /** A name no user or reseller has yet (for create bodies). */
  freshName(prefix: string): string;
  /** A custom port assigned to the main server. */
  portId: number;
}
type Body = Record<string, unknown> | ((f: Fixtures) => Record<string, unknown>);

/**
 * A sensible minimal valid request per route (`null`: no body). The owner and the main admin
 * must get past authorization: a 2xx, or a 400 where the body is refused on its merits.
 */
const REQUESTS: Record<string, { body: Body | null }> = {
  'GET /health': { body: null },

  'GET /users/list_all': { body: null },
  'POST /users': { body: (f) => ({ username: f.freshName('new') }) },
  'GET /users/{username}': { body: null },
  'PUT /users/{username}': { body: { notes: 'edited by the authorization matrix' } },
  'POST /users/{username}/toggle': { body: null },
  'POST /users/{username}/revoke': { body: null },
  'POST /users/{username}/reset_traffic': { body: null },
  'DELETE /users/{username}': { body: null },
  'GET /users/{username}/sub': { body: null },
  'GET /users/{username}/all_ovpn_links': { body: null },

  'GET /nodes': { body: null },
  // No SSH password: the create stops at validation (a 400), before any SSH connection.
  'POST /nodes': { body: { name: 'Matrix node', ip_address: '192.0.2.10' } },
  'PUT /nodes/{id}': { body: { name: 'Renamed node' } },
  'DELETE /nodes/{id}': { body: null },

  'GET /sub_admins': { body: null },
  'POST /sub_admins': { body: (f) => ({ username: f.freshName('reseller'), password: 'matrix-password-1' }) },
  'PUT /sub_admins/{id}': { body: { notes: 'edited by the authorization matrix' } },
  'POST /sub_admins/{id}/reset_usage': { body: null },
  'DELETE /sub_admins/{id}': { body: null },

  'GET /public/ports': { body: null },
  'GET /public/servers_for_ports': { body: null },
  'POST /public/ports': { body: { public_port: 8444, protocol: 'tcp', server_ids: ['main'] } },
  'DELETE /public/ports/assignment': { body: (f) => ({ port_id: f.portId, server_identifier: 'main' }) },
  'GET /public/all_selectable_servers': { body: null },

  'GET /stats/traffic': { body: null },
  'GET /stats/system': { body: null },

  'GET /server_settings': { body: null },
  'POST /update_ipsec_psk': { body: { new_psk: 'matrix-psk-0123456789' } },

  'GET /support_contact': { body: null },
  'PUT /support_contact': { body: { support_contact: '@matrix_support' } },

  // Loopback port 9 (discard): nothing is delivered while the matrix runs.
  'GET /webhooks': { body: null },
  'POST /webhooks': { body: { url: 'http://127.0.0.1:9/matrix-hook' } },
  'PUT /webhooks/{id}': { body: { description: 'edited by the authorization matrix' } },
  'GET /webhooks/{id}/deliveries': { body: null },
  'POST /webhooks/{id}/test': { body: null },
  'DELETE /webhooks/{id}': { body: null },
};

/** Past authorization: done, or refused on the body's merits. */
const allowed = (status: number) => (status >= 200 && status < 300) || status === 400;

const routeKey = (r: RestRoute) => `${r.method} ${r.path}`;
const pathParams = (r: RestRoute) => [...r.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);

/** The contract's "not yours" answer; revoke alone ends it with a period; a webhook is simply not found. */
const notYoursMessage = (r: RestRoute) =>
  r.path.startsWith('/webhooks/') ? 'Webhook not found' : r.path.endsWith('/revoke') ? 'User not found or permission denied.' : 'User not found or permission denied';

/** Routes whose `{id}` is a resource a reseller owns (another reseller must get 404, as for a user). */
const ownsWebhook = (r: RestRoute) => r.path.startsWith('/webhooks/{id}');

interface World {
  h: Harness;
  own: { id: number; key: string };
  other: { id: number; key: string };
  inactive: { id: number; key: string };
  /** A reseller that main-admin cases on `/sub_admins/{id}` may edit or delete. */
  targetSubAdminId: number;
  nodeId: number;
  portId: number;
  counter: number;
}

async function createReseller(h: Harness, username: string): Promise<{ id: number; key: string }> {
  const res = await h.http.post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey).send({ username, password: `${username}-password` });
  expect(res.status, `creating reseller ${username}: ${JSON.stringify(res.body)}`).to.equal(200);
  return { id: res.body.sub_admin.id, key: res.body.sub_admin.api_key };
}

async function buildWorld(kind: DatabaseKind): Promise<World> {
  const h = await createHarness(kind);
  // Resellers' webhooks below point at loopback port 9 (nothing listens), refused by default.
  Object.assign(h.core.webhooks.options, { resellerPrivateTargets: true });
  const own = await createReseller(h, 'reseller_own');
  const other = await createReseller(h, 'reseller_other');
  const inactive = await createReseller(h, 'reseller_inactive');
  await SubAdmin.update({ is_active: false }, { where: { id: inactive.id } });
  h.services.auth.invalidate();
  const target = await createReseller(h, 'reseller_target');
  // Nodes cannot be created without SSH; a row is all authorization needs.
  const node = await NodeRecord.create({ name: 'Matrix node A', ip_address: '192.0.2.20', status: 'active' });
  const port = await h.http.post('/api/v1/public/ports').set('X-API-KEY', h.adminKey).send({ public_port: 8443, protocol: 'tcp', server_ids: ['main'] });
  expect(port.status, `configuring a port: ${JSON.stringify(port.body)}`).to.equal(200);
  const ports = await h.http.get('/api/v1/public/ports').set('X-API-KEY', h.adminKey);
  const portId = (ports.body.custom_ports as Array<{ port_id: number; public_port: number }>).find((p) => p.public_port === 8443)!.port_id;
  return { h, own, other, inactive, targetSubAdminId: target.id, nodeId: node.id, portId, counter: 0 };
}

/** A new user of the owning reseller, so a mutating case never sees another case's leftovers. */
async function createOwnedUser(w: World): Promise<string> {
  const username = `owned_${++w.counter}`;
  const res = await w.h.http.post('/api/v1/users').set('X-API-KEY', w.own.key).send({ username });
  expect(res.status, `creating user ${username}: ${JSON.stringify(res.body)}`).to.equal(200);
  return username;
}

/** A new webhook of the owning reseller per case, as for users. */
async function createOwnedWebhook(w: World): Promise<number> {
  const res = await w.h.http.post('/api/v1/webhooks').set('X-API-KEY', w.own.key).send({ url: 'http://127.0.0.1:9/owned-hook' });
  expect(res.status, `creating a webhook: ${JSON.stringify(res.body)}`).to.equal(200);
  return res.body.webhook.id;
}

async function webhookSnapshot(w: World, id: number): Promise<unknown> {
  const res = await w.h.http.get('/api/v1/webhooks').set('X-API-KEY', w.h.adminKey);
  return (res.body.webhooks as Array<{ id: number }>).find((x) => x.id === id) ?? null;
}

async function userSnapshot(username: string): Promise<unknown> {
  const user = await User.findOne({ where: { username }, raw: true });
  if (!user) return null;
  const tokens = await SubscriptionToken.findAll({ where: { user_id: user.id }, raw: true, order: [['id', 'ASC']] });
  return { user, tokens };
}

function keyFor(w: World, c: Case): string | undefined {
  switch (c) {
    case 'no key':
      return undefined;
    case 'bad key':
      return 'INVALID_KEY_0123456789abcdef';
    case 'inactive reseller':
      return w.inactive.key;
    case 'other reseller':
      return w.other.key;
    case 'own reseller':
      return w.own.key;
    case 'main admin':
      return w.h.adminKey;
  }
}

async function call(w: World, route: RestRoute, c: Case, username: string | undefined, webhookId?: number) {
  const params: Record<string, string> = {};
  for (const name of pathParams(route)) {
    if (name === 'username') params[name] = username!;
    else if (name === 'id' && ownsWebhook(route)) params[name] = String(webhookId);
    else if (name === 'id' && route.path.startsWith('/sub_admins/')) params[name] = String(w.targetSubAdminId);
    else if (name === 'id' && route.path.startsWith('/nodes/')) params[name] = String(w.nodeId);
    else throw new Error(`No fixture for path parameter '${name}' of ${routeKey(route)}: add one in authorization-matrix.test.ts`);
  }
  const url = `/api/v1${route.path.replace(/\{(\w+)\}/g, (_, n: string) => encodeURIComponent(params[n]!))}`;
  const spec = REQUESTS[routeKey(route)]!;
  const fixtures: Fixtures = { freshName: (prefix) => `${prefix}_${++w.counter}`, portId: w.portId };
  let req = w.h.http[route.method.toLowerCase() as 'get' | 'post' | 'put' | 'patch' | 'delete'](url);
  const key = keyFor(w, c);
  if (key !== undefined) req = req.set('X-API-KEY', key);
  if (spec.body) req = req.send(typeof spec.body === 'function' ? spec.body(fixtures) : spec.body);
  return req;
}

const tally = { routes: 0, checks: 0, byAccess: {} as Record<string, number> };

forEachDatabase((kind) => {
  // Authorization is storage-independent (and PostgreSQL triples the run time): PostgreSQL runs
  // only with POLYGATE_MATRIX_ON_POSTGRES=1.
  if (kind === 'postgres' && !process.env.POLYGATE_MATRIX_ON_POSTGRES) return;

  describe(`authorization matrix [${kind}]`, () => {
    const routes = listRestRoutes();

    it('covers at least one route of every access level in use, and every route has a request entry', () => {
      const missing = routes.filter((r) => !REQUESTS[routeKey(r)]).map(routeKey);
      expect(missing, `routes without an entry in REQUESTS (add a minimal valid body): ${missing.join(', ')}`).to.deep.equal([]);
      const unknown = routes.filter((r) => !KNOWN_ACCESS.includes(r.meta.access as Access)).map((r) => `${routeKey(r)} (access: ${String(r.meta.access)})`);
      expect(unknown, `routes with a missing or unknown meta.access: ${unknown.join(', ')}`).to.deep.equal([]);
      const stale = Object.keys(REQUESTS).filter((k) => !routes.some((r) => routeKey(r) === k));
      expect(stale, `entries in REQUESTS for routes that no longer exist: ${stale.join(', ')}`).to.deep.equal([]);
    });

    for (const route of routes) {
      const access = route.meta.access as Access | undefined;
      describe(`${routeKey(route)} (${String(access)})`, () => {
        let w: World;
        before(async function () {
          if (!access || !KNOWN_ACCESS.includes(access) || !REQUESTS[routeKey(route)]) {
            // The coverage test above fails for such a route, so a passing run never gets here.
            console.log(`      skipped: ${routeKey(route)} has no known access or no request in REQUESTS (the coverage test fails for it)`);
            this.skip();
          }
          w = await buildWorld(kind);
          tally.routes++;
          tally.byAccess[access] = (tally.byAccess[access] ?? 0) + 1;
        });
        after(async () => {
          await w?.h.close();
        });

        const hasUsername = pathParams(route).includes('username');
        const hasOwned = hasUsername || ownsWebhook(route);

        for (const c of CASES) {
          it(`${c}: ${expectationOf(access, c, hasOwned)}`, async () => {
            tally.checks++;
            // Mutating cases get their own user; refused cases must leave theirs untouched.
            const username = hasUsername ? await createOwnedUser(w) : undefined;
            const before = username ? await userSnapshot(username) : undefined;
            const webhookId = ownsWebhook(route) ? await createOwnedWebhook(w) : undefined;
            const webhookBefore = webhookId !== undefined ? await webhookSnapshot(w, webhookId) : undefined;
            const res = await call(w, route, c, username, webhookId);
            const answer = `${res.status} ${JSON.stringify(res.body)}`;
            expect(res.status, `never a 5xx: ${answer}`).to.be.below(500);

            if (access === 'public') {
              expect(res.status, answer).to.not.be.oneOf([401, 403]);
              return;
            }
            if (c === 'no key') {
              expect(res.status, answer).to.equal(401);
              expect(res.body).to.deep.equal({ success: false, message: 'API key is missing' });
            } else if (c === 'bad key' || c === 'inactive reseller') {
              expect(res.status, answer).to.equal(401);
              expect(res.body).to.deep.equal({ success: false, message: 'Invalid or inactive API key' });
            } else if (c === 'main admin') {
              // Every path parameter and body id points at a fixture that exists, so no 404 either.
              expect(res.status, answer).to.satisfy(allowed);
            } else if (access === 'main_admin') {
              expect(res.status, answer).to.equal(403);
              expect(res.body).to.deep.equal({ success: false, message: 'Permission denied' });
            } else if (access === 'main_admin_strict') {
              expect(res.status, answer).to.equal(403);
              expect(res.body).to.deep.equal({ success: false, message: 'Permission denied: Main admin API key required.' });
            } else if (c === 'other reseller' && hasOwned) {
              expect(res.status, answer).to.equal(404);
              expect(res.body).to.deep.equal({ success: false, message: notYoursMessage(route) });
            } else {
              // A reseller on its own user, or on an any-key route without a user in the path.
              expect(res.status, answer).to.satisfy(allowed);
            }

            if (username && (c !== 'own reseller' && c !== 'main admin')) {
              expect(await userSnapshot(username), `a refused call must leave ${username} unchanged`).to.deep.equal(before);
            }
            if (webhookId !== undefined && (c !== 'own reseller' && c !== 'main admin')) {
              expect(await webhookSnapshot(w, webhookId), `a refused call must leave webhook ${webhookId} unchanged`).to.deep.equal(webhookBefore);
            }
          });
        }
      });
    }

    after(() => {
      const parts = Object.entries(tally.byAccess)
        .map(([a, n]) => `${a} ${n}`)
        .join(', ');
      console.log(`  (authorization matrix [${kind}]: ${tally.routes} routes × ${CASES.length} keys = ${tally.checks} checks; ${parts})`);
      tally.routes = 0;
      tally.checks = 0;
      tally.byAccess = {};
    });
  });
});

function expectationOf(access: Access | undefined, c: Case, hasOwned: boolean): string {
  if (access === 'public') return 'not refused';
  if (c === 'no key') return '401 API key is missing';
  if (c === 'bad key' || c === 'inactive reseller') return '401 Invalid or inactive API key';
  if (c === 'main admin') return 'allowed';
  if (access === 'main_admin') return '403 Permission denied';
  if (access === 'main_admin_strict') return '403 Permission denied: Main admin API key required.';
  if (c === 'other reseller' && hasOwned) return '404 not found or permission denied, target unchanged';
  return 'allowed';
}
