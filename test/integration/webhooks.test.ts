import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { bootstrapCore, type Core } from '../../core/bootstrap';
import { loadConfig } from '../../core/config';
import { NodeRecord, User } from '../../core/db';
import { captureLogs } from '../../core/logger';
import { MAIN_ADMIN } from '../../core/principal';
import { verifySignature, type WebhookOptions } from '../../core/webhooks';
import { WebhookDelivery } from '../../core/webhooks/models';
import { publicOnlyLookup } from '../../core/webhooks/targets';
import { createHarness, forEachDatabase, type DatabaseKind, type Harness } from '../helpers/harness';
import { until } from '../helpers/vpn-lab';

/**
 * Webhooks end to end: real state changes (users created over the API, traffic counted by the
 * accounting engine from a scripted daemon, the clock moved past expiry, deletes) reach a
 * receiver on loopback as signed JSON, with retries after errors, in order per user, once per
 * occurrence, and across a restart of the core.
 */

/** Milliseconds instead of seconds, so retries run within the test. */
const FAST: Partial<WebhookOptions> = { retryBaseMs: 5, retryMaxMs: 40, maxAttempts: 6, timeoutMs: 2000 };
const DAY = 86_400_000;

interface Received {
  headers: IncomingHttpHeaders;
  raw: string;
  body: { id: string; type: string; occurred_at: string; data: Record<string, any> }; // eslint-disable-line @typescript-eslint/no-explicit-any
  /** What the receiver answered. */
  answered: number;
}

/** A loopback HTTP receiver; `answer` decides the status of each request (default 200). */
class Receiver {
  readonly requests: Received[] = [];
  answer: (body: Received['body']) => number | { status: number; location: string } = () => 200;
  private server!: Server;
  url!: string;

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const body = JSON.parse(raw);
        const a = this.answer(body);
        const status = typeof a === 'number' ? a : a.status;
        this.requests.push({ headers: req.headers, raw, body, answered: status });
        res.writeHead(status, typeof a === 'number' ? {} : { location: a.location });
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook?token=bot-token-in-query`;
    return this;
  }
  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
  /** Requests that were answered 2xx, in arrival order. */
  delivered(): Received[] {
    return this.requests.filter((r) => r.answered >= 200 && r.answered < 300);
  }
  types(username?: string): string[] {
    return this.delivered()
      .filter((r) => username === undefined || r.body.data.username === username)
      .map((r) => r.body.type);
  }
}

const waitUntil = (what: string, check: () => boolean | Promise<boolean>) => until(check, what, 10_000, 10);

function suite(kind: DatabaseKind) {
  describe(`webhooks [${kind}]`, function () {
    this.timeout(30_000);
    let h: Harness;
    let rx: Receiver;
    const secret = 'test-secret-0123456789abcdef';
    const api = (method: 'get' | 'post' | 'put' | 'delete', url: string, key = h.adminKey) => h.http[method](`/api/v1${url}`).set('X-API-KEY', key);
    const settle = () => h.core.webhooks.settle();
    const tick = async () => {
      await h.core.accounting.tick();
      await settle();
    };
    const addWebhook = async (body: Record<string, unknown>, key = h.adminKey) => {
      const res = await api('post', '/webhooks', key).send(body);
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      return res.body as { webhook: { id: number }; secret: string };
    };
    const mkUser = async (username: string, extra: Record<string, unknown> = {}, key = h.adminKey) => {
      const res = await api('post', '/users', key).send({ username, ...extra });
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
    };
    // BIGINT comes back as a string from PostgreSQL in raw rows.
    const limitOf = async (username: string) => Number((await User.findOne({ where: { username }, raw: true }))!.data_limit_bytes);
    /** The scripted OpenVPN daemon reports this many bytes for the user's one session. */
    const traffic = (username: string, bytes: number) => h.plugins.openvpn!.set({ key: `c-${username}`, username, rx: bytes, tx: 0 });

    beforeEach(async () => {
      h = await createHarness(kind);
      Object.assign(h.core.webhooks.options, FAST);
      rx = await new Receiver().start();
    });
    afterEach(async () => {
      await h.close();
      await rx.close();
    });

    it('signs every request: t=<unix>,v1=HMAC-SHA256(secret, "<t>.<body>"), with event and delivery headers', async () => {
      await addWebhook({ url: rx.url, secret });
      await mkUser('alice');
      await waitUntil('user.created', () => rx.delivered().length === 1);
      const r = rx.delivered()[0]!;
      expect(r.body.type).to.equal('user.created');
      expect(r.body.id).to.match(/^evt_[0-9a-f]{24}$/);
      expect(r.body.data).to.include({ username: 'alice', sub_admin_id: null, status: 'active' });
      expect(new Date(r.body.occurred_at).toISOString()).to.equal(h.clock.now().toISOString());
      expect(r.headers['x-polygate-event']).to.equal('user.created');
      const [delivery] = await WebhookDelivery.findAll({ raw: true });
      expect(r.headers['x-polygate-delivery']).to.equal(String(delivery!.id));
      const now = Math.floor(Date.now() / 1000);
      expect(verifySignature(secret, r.raw, r.headers['x-polygate-signature'] as string, now), 'the signature verifies with the secret').to.equal(true);
      expect(verifySignature('another-secret-0123456789', r.raw, r.headers['x-polygate-signature'] as string, now), 'and not with another').to.equal(false);
      expect(verifySignature(secret, r.raw.replace('alice', 'alicf'), r.headers['x-polygate-signature'] as string, now), 'nor over a changed body').to.equal(false);
    });

    it('POST /webhooks/{id}/test sends a signed webhook.test at once, also while the webhook is disabled', async () => {
      const { webhook } = await addWebhook({ url: rx.url, secret, enabled: false });
      const res = await api('post', `/webhooks/${webhook.id}/test`);
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      expect(res.body).to.include({ success: true, message: 'Test event queued.' });
      await waitUntil('the test event', () => rx.delivered().length === 1);
      const r = rx.delivered()[0]!;
      expect(r.body).to.deep.include({ id: res.body.event_id, type: 'webhook.test', data: { webhook_id: webhook.id, sub_admin_id: null } });
      expect(r.headers['x-polygate-delivery']).to.equal(String(res.body.delivery_id));
      expect(verifySignature(secret, r.raw, r.headers['x-polygate-signature'] as string, Math.floor(Date.now() / 1000))).to.equal(true);
      await mkUser('alice');
      await h.core.webhooks.sweep();
      expect(rx.requests, 'a disabled webhook still gets no events').to.have.length(1);
    });

    it('retries after 500s with the same event id and body, then records it delivered', async () => {
      let failures = 3;
      rx.answer = () => (failures-- > 0 ? 500 : 200);
      const { webhook } = await addWebhook({ url: rx.url, secret });
      await mkUser('alice');
      await waitUntil('delivered after retries', () => rx.delivered().length === 1);
      expect(rx.requests.map((r) => r.answered)).to.deep.equal([500, 500, 500, 200]);
      expect(new Set(rx.requests.map((r) => r.raw)).size, 'every attempt sends the same body').to.equal(1);
      for (const r of rx.requests) expect(verifySignature(secret, r.raw, r.headers['x-polygate-signature'] as string, Math.floor(Date.now() / 1000))).to.equal(true);
      await waitUntil('recorded', async () => (await api('get', `/webhooks/${webhook.id}/deliveries`)).body.deliveries[0]?.status === 'delivered');
      const res = await api('get', `/webhooks/${webhook.id}/deliveries`);
      expect(res.body.deliveries[0]).to.include({ type: 'user.created', status: 'delivered', attempts: 4, last_status_code: 200, last_error: null });
      const list = await api('get', '/webhooks');
      expect(list.body.webhooks[0].deliveries).to.deep.equal({ pending: 0, delivered: 1, failed: 0 });
    });

    it('gives up after maxAttempts, shows it failed, and the next event of the same user goes out after it', async () => {
      rx.answer = (b) => (b.type === 'user.created' ? 500 : 200);
      const { webhook } = await addWebhook({ url: rx.url, secret });
      await mkUser('alice', { data_limit: 1, data_limit_unit: 'MB' });
      traffic('alice', await limitOf('alice'));
      await tick();
      await waitUntil('the limited event after the given-up one', () => rx.delivered().length > 0);
      expect(rx.requests.filter((r) => r.body.type === 'user.created')).to.have.length(FAST.maxAttempts!);
      const firstLater = rx.requests.findIndex((r) => r.body.type !== 'user.created');
      expect(firstLater, 'nothing later for alice was sent before user.created was given up').to.equal(FAST.maxAttempts);
      const res = await api('get', `/webhooks/${webhook.id}/deliveries?status=failed`);
      expect(res.body.deliveries).to.have.length(1);
      expect(res.body.deliveries[0]).to.include({ type: 'user.created', status: 'failed', attempts: FAST.maxAttempts, last_status_code: 500, last_error: 'HTTP 500', next_attempt_at: null });
    });

    it("keeps each user's events in order while that user's endpoint retries, without holding up other users", async () => {
      let holdAlice = true;
      rx.answer = (b) => (b.data.username === 'alice' && holdAlice ? 500 : 200);
      Object.assign(h.core.webhooks.options, { maxAttempts: 1000, retryMaxMs: 10 });
      await addWebhook({ url: rx.url, secret });
      await mkUser('alice', { data_limit: 1, data_limit_unit: 'MB' });
      await mkUser('bob', { data_limit: 1, data_limit_unit: 'MB' });
      const limit = await limitOf('alice');
      traffic('alice', Math.ceil(limit * 0.85));
      h.plugins.openvpn!.set({ key: 'c-alice', username: 'alice', rx: Math.ceil(limit * 0.85), tx: 0 }, { key: 'c-bob', username: 'bob', rx: Math.ceil(limit * 0.85), tx: 0 });
      await tick();
      h.plugins.openvpn!.set({ key: 'c-alice', username: 'alice', rx: limit, tx: 0 }, { key: 'c-bob', username: 'bob', rx: limit, tx: 0 });
      await tick();
      const sequence = ['user.created', 'user.usage_reached', 'user.usage_reached', 'user.limited'];
      await waitUntil("bob's events while alice's first is still retried", () => rx.types('bob').length === sequence.length);
      expect(rx.types('bob')).to.deep.equal(sequence);
      const aliceTried = new Set(rx.requests.filter((r) => r.body.data.username === 'alice').map((r) => r.body.type));
      expect([...aliceTried], "only alice's first event was tried so far").to.deep.equal(['user.created']);
      holdAlice = false;
      await waitUntil("alice's events", () => rx.types('alice').length === sequence.length);
      expect(rx.types('alice')).to.deep.equal(sequence);
    });

    it('usage thresholds and the limit fire once per period; a traffic reset lets them fire again', async () => {
      Object.assign(h.core.webhooks.options, { usagePercents: [80, 90] });
      await addWebhook({ url: rx.url, secret, events: ['user.usage_reached', 'user.limited'] });
      await mkUser('alice', { data_limit: 1, data_limit_unit: 'MB' });
      const limit = await limitOf('alice');
      traffic('alice', Math.ceil(limit * 0.5));
      await tick();
      traffic('alice', Math.ceil(limit * 0.82));
      await tick();
      traffic('alice', Math.ceil(limit * 0.95));
      await tick();
      traffic('alice', limit + 10);
      await tick();
      await tick();
      await h.core.webhooks.sweep();
      await waitUntil('three events', () => rx.delivered().length >= 3);
      expect(rx.delivered().map((r) => [r.body.type, r.body.data.percent ?? r.body.data.reason])).to.deep.equal([
        ['user.usage_reached', 80],
        ['user.usage_reached', 90],
        ['user.limited', 'data_limit'],
      ]);
      expect(rx.delivered()[2]!.body.data).to.include({ status: 'limited', used_bytes: limit + 10, data_limit_bytes: limit });
      const reset = await api('post', '/users/alice/reset_traffic');
      expect(reset.status, JSON.stringify(reset.body)).to.equal(200);
      h.plugins.openvpn!.drop('c-alice');
      await tick();
      h.plugins.openvpn!.set({ key: 'c-alice-2', username: 'alice', rx: limit, tx: 0, connectedAt: 1_700_000_900 });
      await tick();
      await waitUntil('the second period', () => rx.delivered().length === 5);
      expect(rx.types().slice(3)).to.deep.equal(['user.usage_reached', 'user.limited']);
      expect(rx.delivered()[3]!.body.data.percent, 'one event for the highest threshold crossed at once').to.equal(90);
      expect(new Set(rx.delivered().map((r) => r.body.id)).size, 'every occurrence has its own id').to.equal(5);
    });

    it('expiring at 3 and 1 days left, expired once, then deleted (the clock moves, a sweep looks)', async () => {
      Object.assign(h.core.webhooks.options, { expiringDays: [3, 1] });
      await addWebhook({ url: rx.url, secret });
      await mkUser('alice', { expiry_days: 5 });
      await h.core.webhooks.sweep();
      h.clock.advance(2.5 * DAY);
      await h.core.webhooks.sweep();
      await h.core.webhooks.sweep();
      h.clock.advance(2 * DAY);
      await h.core.webhooks.sweep();
      h.clock.advance(1 * DAY);
      await h.core.webhooks.sweep();
      await tick();
      await h.core.webhooks.sweep();
      const del = await api('delete', '/users/alice');
      expect(del.status, JSON.stringify(del.body)).to.equal(200);
      await settle();
      await waitUntil('five events', () => rx.delivered().length >= 5);
      await h.core.webhooks.sweep();
      expect(rx.delivered().map((r) => [r.body.type, r.body.data.days ?? null])).to.deep.equal([
        ['user.created', null],
        ['user.expiring', 3],
        ['user.expiring', 1],
        ['user.expired', null],
        ['user.deleted', null],
      ]);
      expect(rx.delivered()[3]!.body.data.status).to.equal('expired');
      expect(rx.delivered()[4]!.body.data).to.deep.equal({ username: 'alice', sub_admin_id: null });
    });

    it("a reseller's webhook gets only its own users' events and its quota event; the main admin's gets all", async () => {
      const created = await api('post', '/sub_admins').send({ username: 'shop', password: 'shop-password-1', total_usage_quota_gb: 1 });
      expect(created.status, JSON.stringify(created.body)).to.equal(200);
      const shop = created.body.sub_admin as { id: number; api_key: string };
      const other = (await api('post', '/sub_admins').send({ username: 'other', password: 'other-password-1' })).body.sub_admin as { id: number; api_key: string };
      const mine = await new Receiver().start();
      const theirs = await new Receiver().start();
      // The receivers are on loopback, where resellers' webhooks may not point by default.
      Object.assign(h.core.webhooks.options, { resellerPrivateTargets: true });
      try {
        const global = await addWebhook({ url: rx.url, secret });
        const own = await addWebhook({ url: mine.url }, shop.api_key);
        expect(own.secret, 'a generated secret is shown once').to.match(/^whsec_.{40,}$/);
        await addWebhook({ url: theirs.url, events: ['user.created'] }, other.api_key);

        const listed = await api('get', '/webhooks', shop.api_key);
        expect(listed.body.webhooks.map((w: { id: number }) => w.id)).to.deep.equal([own.webhook.id]);
        expect(JSON.stringify(listed.body), 'secrets are never listed').to.not.include(own.secret);
        expect((await api('get', '/webhooks')).body.webhooks).to.have.length(3);
        const foreign = await api('put', `/webhooks/${global.webhook.id}`, shop.api_key).send({ enabled: false });
        expect(foreign.status).to.equal(404);
        expect(foreign.body).to.deep.equal({ success: false, message: 'Webhook not found' });

        await mkUser('shop_user', {}, shop.api_key);
        await mkUser('admin_user');
        h.plugins.openvpn!.set({ key: 'c1', username: 'shop_user', rx: 1024 ** 3 + 1, tx: 0 });
        await tick();
        await h.core.webhooks.sweep();
        await waitUntil('the reseller receiver', () => mine.delivered().length === 3);
        await waitUntil('the global receiver', () => rx.delivered().length === 4);
        // Different subjects (the reseller, its user) are not ordered against each other.
        expect(mine.types().sort()).to.deep.equal(['reseller.quota_reached', 'user.created', 'user.limited']);
        const quota = mine.delivered().find((r) => r.body.type === 'reseller.quota_reached')!.body.data;
        expect(quota).to.deep.equal({ sub_admin_id: shop.id, username: 'shop', quota_bytes: 1024 ** 3, used_bytes: 1024 ** 3 + 1 });
        expect(mine.delivered().find((r) => r.body.type === 'user.limited')!.body.data).to.include({ username: 'shop_user', reason: 'reseller_quota', sub_admin_id: shop.id });
        expect(rx.types().sort()).to.deep.equal(['reseller.quota_reached', 'user.created', 'user.created', 'user.limited']);
        expect(theirs.requests, "another reseller's webhook gets nothing of shop's").to.have.length(0);
      } finally {
        await mine.close();
        await theirs.close();
      }
    });

    it('node.offline and node.online when a node row changes status (announced by nodes.changed)', async () => {
      // The row changes as the node health check changes it (no SSH node here), announced the
      // way the services announce it.
      const node = await NodeRecord.create({ name: 'Node A', ip_address: '192.0.2.30', status: 'active' });
      h.core.ctx.events.emit('nodes.changed', { nodeId: node.id });
      await addWebhook({ url: rx.url, secret, events: ['node.offline', 'node.online'] });
      await node.update({ status: 'offline', status_message: 'unreachable' });
      h.core.ctx.events.emit('nodes.changed', { nodeId: node.id });
      await settle();
      await h.core.webhooks.sweep();
      await node.update({ status: 'active', status_message: null });
      h.core.ctx.events.emit('nodes.changed', { nodeId: node.id });
      await settle();
      await waitUntil('both', () => rx.delivered().length === 2);
      expect(rx.delivered().map((r) => [r.body.type, r.body.data.node_id])).to.deep.equal([
        ['node.offline', node.id],
        ['node.online', node.id],
      ]);
    });

    it('does not follow a redirect (to another host or at all), and records why', async () => {
      const elsewhere = await new Receiver().start();
      try {
        rx.answer = () => ({ status: 302, location: elsewhere.url });
        Object.assign(h.core.webhooks.options, { maxAttempts: 2 });
        const { webhook } = await addWebhook({ url: rx.url, secret });
        await mkUser('alice');
        await waitUntil('given up', async () => (await api('get', `/webhooks/${webhook.id}/deliveries`)).body.deliveries[0]?.status === 'failed');
        expect(elsewhere.requests).to.have.length(0);
        const d = (await api('get', `/webhooks/${webhook.id}/deliveries`)).body.deliveries[0];
        expect(d).to.include({ attempts: 2, last_status_code: 302, last_error: 'redirect (302) not followed' });
      } finally {
        await elsewhere.close();
      }
    });

    it("a reseller's webhook may not point at this server or a private network (by name or address); the main admin's may", async () => {
      const shop = (await api('post', '/sub_admins').send({ username: 'shop', password: 'shop-password-1' })).body.sub_admin as { id: number; api_key: string };
      const refusal = "Field 'url' must point at a public address: a reseller's webhook may not reach this server or its private network.";
      for (const url of [rx.url, 'http://localhost:8080/api/v1/users', 'http://[::1]:8080/', 'http://10.0.0.5/', 'http://169.254.169.254/latest/meta-data', 'http://[::ffff:127.0.0.1]/']) {
        const res = await api('post', '/webhooks', shop.api_key).send({ url });
        expect(res.status, url).to.equal(400);
        expect(res.body).to.deep.equal({ success: false, message: refusal });
      }
      // Allowed when it was created; refused at delivery once the setting is off again.
      Object.assign(h.core.webhooks.options, { resellerPrivateTargets: true });
      const { webhook } = await addWebhook({ url: rx.url.replace('127.0.0.1', 'localhost') }, shop.api_key);
      Object.assign(h.core.webhooks.options, { resellerPrivateTargets: false, maxAttempts: 1 });
      await mkUser('shop_user', {}, shop.api_key);
      await waitUntil('given up', async () => (await api('get', `/webhooks/${webhook.id}/deliveries`)).body.deliveries[0]?.status === 'failed');
      const d = (await api('get', `/webhooks/${webhook.id}/deliveries`)).body.deliveries[0];
      expect(d.last_error).to.equal("refused: localhost is not a public address (a reseller's webhook may reach public addresses only)");
      expect(rx.requests, 'nothing reached the loopback receiver').to.have.length(0);
      // A name is checked on the addresses it resolves to (what the socket then connects to).
      const resolved = await new Promise<Error | null>((resolve) => publicOnlyLookup('localhost', {}, (err) => resolve(err)));
      expect(resolved?.message).to.match(/^localhost resolves to (127\.0\.0\.1|::1), not a public address$/);
      const main = await api('post', '/webhooks').send({ url: rx.url });
      expect(main.status, "the main admin's bot may run on this machine").to.equal(200);
    });

    it('logs deliveries without the secret or the URL path and query', async () => {
      const logs = captureLogs();
      try {
        let failures = 1;
        rx.answer = () => (failures-- > 0 ? 500 : 200);
        await addWebhook({ url: rx.url, secret });
        await mkUser('alice');
        await waitUntil('delivered', () => rx.delivered().length === 1);
        await settle();
      } finally {
        logs.stop();
      }
      expect(logs.text()).to.include('webhook delivered');
      expect(logs.text()).to.include('will retry');
      expect(logs.text()).to.not.include(secret);
      expect(logs.text()).to.not.include('bot-token-in-query');
    });

    it('an endpoint added later gets what happens after it, not the panel history; disabled ones get nothing', async () => {
      await mkUser('old_user', { data_limit: 1, data_limit_unit: 'MB' });
      traffic('old_user', (await limitOf('old_user')) + 1);
      await tick();
      const { webhook } = await addWebhook({ url: rx.url, secret });
      await h.core.webhooks.sweep();
      await mkUser('new_user');
      await waitUntil('new_user', () => rx.delivered().length === 1);
      await h.core.webhooks.sweep();
      expect(rx.types()).to.deep.equal(['user.created']);
      expect(rx.delivered()[0]!.body.data.username).to.equal('new_user');
      const off = await api('put', `/webhooks/${webhook.id}`).send({ enabled: false });
      expect(off.status, JSON.stringify(off.body)).to.equal(200);
      expect(off.body.webhook.enabled).to.equal(false);
      await mkUser('while_off');
      await h.core.webhooks.sweep();
      expect(rx.requests).to.have.length(1);
    });
  });
}

forEachDatabase(suite);

describe('webhooks across a restart of the core [sqlite file]', function () {
  this.timeout(30_000);
  let dir: string;
  let rx: Receiver;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'polygate-webhooks-'));
    rx = await new Receiver().start();
  });
  after(async () => {
    await rx.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const open = (): Promise<Core> =>
    bootstrapCore(
      loadConfig({ POLYGATE_DATA_DIR: dir, POLYGATE_ADMIN_API_KEY: 'restart-test-admin-key-0123456789', POLYGATE_FIREWALL: 'off', POLYGATE_RESELLER_LISTENERS: 'off', POLYGATE_PLUGINS: 'none' }),
      { pkiDir: path.join(dir, 'pki'), webhooks: FAST },
    );

  it('resends pending deliveries after a restart, and never a delivered one', async () => {
    const secret = 'restart-secret-0123456789abcdef';
    let core = await open();
    try {
      await core.services.webhooks.create(MAIN_ADMIN, { url: rx.url, secret });
      await core.services.users.create(MAIN_ADMIN, { username: 'first' } as never);
      await waitUntil('first delivered', () => rx.delivered().length === 1);
      await core.webhooks.settle();
      // The receiver is down (answers 503) while the second user's event is queued.
      rx.answer = () => 503;
      Object.assign(core.webhooks.options, { retryBaseMs: 60_000, retryMaxMs: 60_000 });
      await core.services.users.create(MAIN_ADMIN, { username: 'second' } as never);
      await waitUntil('second tried once', () => rx.requests.length === 2);
      await core.webhooks.settle();
    } finally {
      await core.close();
    }
    expect(await rx.delivered().map((r) => r.body.data.username)).to.deep.equal(['first']);

    rx.answer = () => 200;
    core = await open();
    try {
      // A restarted daemon starts from the stored schedule: move the retry due now, as time would.
      await WebhookDelivery.update({ next_attempt_at: new Date(0) }, { where: { status: 'pending' } });
      core.webhooks.deliverer.wake();
      await waitUntil('second delivered after the restart', () => rx.delivered().length === 2);
      await core.webhooks.sweep();
      await core.webhooks.settle();
      expect(rx.delivered().map((r) => r.body.data.username)).to.deep.equal(['first', 'second']);
      expect(rx.requests.filter((r) => r.body.data.username === 'first'), 'the delivered one is not sent again').to.have.length(1);
      const secondIds = new Set(rx.requests.filter((r) => r.body.data.username === 'second').map((r) => r.body.id));
      expect(secondIds.size, 'the resent event keeps its id').to.equal(1);
      expect(verifySignature(secret, rx.delivered()[1]!.raw, rx.delivered()[1]!.headers['x-polygate-signature'] as string, Math.floor(Date.now() / 1000)), 'the secret survives the restart (sealed with secret.key)').to.equal(true);
    } finally {
      await core.close();
    }
  });

  it('an occurrence committed while the daemon was down is found by the start-up pass, once', async () => {
    let core = await open();
    const before = rx.delivered().length;
    try {
      await core.webhooks.stop(); // as if the process died right after the user was committed
      await core.services.users.create(MAIN_ADMIN, { username: 'while_down' } as never);
    } finally {
      await core.close();
    }
    core = await open();
    try {
      await waitUntil('while_down announced', () => rx.delivered().length === before + 1);
      await core.webhooks.sweep();
      await core.webhooks.settle();
      expect(rx.delivered().slice(before).map((r) => [r.body.type, r.body.data.username])).to.deep.equal([['user.created', 'while_down']]);
    } finally {
      await core.close();
    }
  });
});
