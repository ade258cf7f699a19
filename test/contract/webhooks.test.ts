import { expect } from 'chai';
import { TRPCError } from '@trpc/server';
import { createHarness, forEachDatabase, type Harness } from '../helpers/harness';

/**
 * The webhooks API as a client sees it: validation answers 400 in the envelope (never a 5xx) on
 * REST and the same sentence on tRPC, secrets are shown once, and each key sees only its own.
 */
forEachDatabase((kind) => {
  describe(`webhooks API [${kind}]`, () => {
    let h: Harness;
    let reseller: { id: number; api_key: string };
    const api = (method: 'get' | 'post' | 'put' | 'delete', url: string, key = h.adminKey) => h.http[method](`/api/v1${url}`).set('X-API-KEY', key);
    const url = 'http://127.0.0.1:9/hook';

    before(async () => {
      h = await createHarness(kind);
      // The resellers' webhooks below point at loopback (port 9, nothing listens), which is refused by default.
      Object.assign(h.core.webhooks.options, { resellerPrivateTargets: true });
      const res = await api('post', '/sub_admins').send({ username: 'shop', password: 'shop-password-1' });
      reseller = res.body.sub_admin;
    });
    after(() => h.close());

    const refusals: Array<[string, Record<string, unknown>, string]> = [
      ['no url', {}, "Field 'url' is required."],
      ['an ftp url', { url: 'ftp://bot.example.test/x' }, "Field 'url' must be an absolute http:// or https:// URL (at most 2048 characters)."],
      ['a relative url', { url: '/hook' }, "Field 'url' must be an absolute http:// or https:// URL (at most 2048 characters)."],
      ['a javascript: url', { url: 'javascript:alert(1)' }, "Field 'url' must be an absolute http:// or https:// URL (at most 2048 characters)."],
      ['an unknown event', { url, events: ['user.exploded'] }, "Unknown event 'user.exploded' in 'events'; known: user.created, user.deleted, user.limited, user.expired, user.usage_reached, user.expiring, reseller.quota_reached, node.offline, node.online."],
      ['a short secret', { url, secret: 'short' }, "Field 'secret' must be 16 to 200 characters without spaces (leave it out to have one generated)."],
    ];
    for (const [what, body, message] of refusals) {
      it(`refuses ${what} with 400 and says why`, async () => {
        const res = await api('post', '/webhooks').send(body);
        expect(res.status).to.equal(400);
        expect(res.body).to.deep.equal({ success: false, message });
      });
    }

    it('refuses an unknown field, naming the closest accepted one', async () => {
      const res = await api('post', '/webhooks').send({ url, event: ['user.created'] });
      expect(res.status).to.equal(400);
      expect(res.body.success).to.equal(false);
      expect(res.body.message).to.include("'event'").and.include("'events'");
    });

    it('refuses a wrong type with 400, not 500', async () => {
      for (const body of [{ url: 42 }, { url, events: 'user.created' }, { url, enabled: 'yes' }]) {
        const res = await api('post', '/webhooks').send(body);
        expect(res.status, JSON.stringify(res.body)).to.equal(400);
        expect(res.body.success).to.equal(false);
      }
      const res = await api('get', '/webhooks/not-a-number/deliveries');
      expect(res.status, JSON.stringify(res.body)).to.equal(400);
    });

    it('node events are for global webhooks only', async () => {
      const res = await api('post', '/webhooks', reseller.api_key).send({ url, events: ['node.offline'] });
      expect(res.status).to.equal(400);
      expect(res.body).to.deep.equal({ success: false, message: "Event 'node.offline' is sent to global webhooks only (the main admin's)." });
    });

    it('shows the secret once (create, rotate), never in lists; a given secret is kept', async () => {
      const created = await api('post', '/webhooks').send({ url, secret: 'given-secret-0123456789' });
      expect(created.status, JSON.stringify(created.body)).to.equal(200);
      expect(created.body).to.include({ success: true, message: 'Webhook created.', secret: 'given-secret-0123456789' });
      expect(created.body.webhook).to.include({ url, enabled: true, sub_admin_id: null });
      expect(created.body.webhook.events).to.deep.equal([]);
      const id = created.body.webhook.id;
      const listed = await api('get', '/webhooks');
      expect(JSON.stringify(listed.body)).to.not.include('given-secret');
      const edited = await api('put', `/webhooks/${id}`).send({ description: 'bot' });
      expect(edited.body.secret, 'an edit without a new secret shows none').to.equal(undefined);
      const rotated = await api('put', `/webhooks/${id}`).send({ rotate_secret: true });
      expect(rotated.status).to.equal(200);
      expect(rotated.body.secret).to.match(/^whsec_/);
      const gone = await api('delete', `/webhooks/${id}`);
      expect(gone.body).to.deep.equal({ success: true, message: 'Webhook deleted.' });
      const again = await api('delete', `/webhooks/${id}`);
      expect(again.status).to.equal(404);
      expect(again.body).to.deep.equal({ success: false, message: 'Webhook not found' });
    });

    it("the main admin sees and edits a reseller's webhook; the reseller sees only its own", async () => {
      const own = await api('post', '/webhooks', reseller.api_key).send({ url, events: ['user.limited', 'reseller.quota_reached'] });
      expect(own.status, JSON.stringify(own.body)).to.equal(200);
      expect(own.body.webhook.sub_admin_id).to.equal(reseller.id);
      const global = await api('post', '/webhooks').send({ url });
      const mine = await api('get', '/webhooks', reseller.api_key);
      expect(mine.body.webhooks.map((w: { id: number }) => w.id)).to.deep.equal([own.body.webhook.id]);
      const all = await api('get', '/webhooks');
      expect(all.body.webhooks.map((w: { id: number }) => w.id)).to.include.members([own.body.webhook.id, global.body.webhook.id]);
      const edit = await api('put', `/webhooks/${own.body.webhook.id}`).send({ enabled: false });
      expect(edit.status).to.equal(200);
      expect(edit.body.webhook.enabled).to.equal(false);
      const foreign = await api('get', `/webhooks/${global.body.webhook.id}/deliveries`, reseller.api_key);
      expect(foreign.status).to.equal(404);
      expect(foreign.body).to.deep.equal({ success: false, message: 'Webhook not found' });
    });

    it('a deleted reseller takes its webhooks with it', async () => {
      const other = (await api('post', '/sub_admins').send({ username: 'gone', password: 'gone-password-1' })).body.sub_admin;
      const hook = await api('post', '/webhooks', other.api_key).send({ url });
      expect(hook.status).to.equal(200);
      expect((await api('delete', `/sub_admins/${other.id}`)).status).to.equal(200);
      await h.core.webhooks.settle();
      const all = await api('get', '/webhooks');
      expect(all.body.webhooks.map((w: { id: number }) => w.id)).to.not.include(hook.body.webhook.id);
    });

    it('tRPC serves the same procedures with the same sentences', async () => {
      const caller = h.caller(h.adminKey);
      const created = await caller.webhooks.create({ url, events: ['user.created'] });
      expect(created.webhook.events).to.deep.equal(['user.created']);
      const err = await caller.webhooks.create({ url: 'gopher://x' }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(TRPCError);
      expect((err as TRPCError).code).to.equal('BAD_REQUEST');
      expect((err as TRPCError).message).to.equal("Field 'url' must be an absolute http:// or https:// URL (at most 2048 characters).");
      const list = await h.caller(reseller.api_key).webhooks.list();
      expect(list.webhooks.every((w) => w.sub_admin_id === reseller.id)).to.equal(true);
    });
  });
});
