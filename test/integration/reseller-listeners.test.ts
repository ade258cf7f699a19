import { expect } from 'chai';
import { createServer, connect, type Server } from 'node:net';
import { ResellerListeners } from '../../api/listeners';
import { createHarness, type Harness } from '../helpers/harness';

/*
 * Real sockets on 127.0.0.1: proves the daemon serves each active reseller on its own panel
 * and subscription ports, with the right app behind each, follows reseller changes, and
 * survives a port it cannot bind.
 */

const HOST = '127.0.0.1';

/** A free TCP port ≥ 1024 (the kernel's pick, released before use). */
async function freePort(): Promise<number> {
  for (;;) {
    const server = createServer();
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, HOST, resolve));
    const port = (server.address() as { port: number }).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (port >= 1024) return port;
  }
}

async function get(port: number, path: string, apiKey?: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`http://${HOST}:${port}${path}`, { headers: apiKey ? { 'X-API-KEY': apiKey } : {} });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body };
}

/** Resolves to the connect error code, or 'connected'. */
function probe(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: HOST });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

async function waitFor(condition: () => boolean, ms = 3000): Promise<void> {
  const until = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('reseller listeners (real sockets)', () => {
  let h: Harness;
  let listeners: ResellerListeners;
  const blockers: Server[] = [];

  async function createReseller(username: string, ports: { panel_port?: number; subscription_port?: number }) {
    const res = await h.http.post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey).send({ username, password: 'pass', ...ports });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    return res.body.sub_admin as { id: number; api_key: string };
  }

  before(async () => {
    h = await createHarness('sqlite');
    listeners = new ResellerListeners(h.services, { host: HOST });
  });
  after(async () => {
    await listeners.close();
    for (const b of blockers) await new Promise((r) => b.close(r));
    await h.close();
  });

  it("serves the reseller's API on its panel port for its key only, and /sub + /download on its subscription port", async () => {
    const panel = await freePort();
    const subscription = await freePort();
    const reseller = await createReseller('sa_listen', { panel_port: panel, subscription_port: subscription });
    const other = await createReseller('sa_other', {});
    await listeners.sync();
    expect(listeners.listening()).to.deep.include.members([
      { subAdminId: reseller.id, kind: 'panel', port: panel },
      { subAdminId: reseller.id, kind: 'subscription', port: subscription },
    ]);

    expect(await get(panel, '/healthz')).to.deep.equal({ status: 200, body: { success: true } });
    const ok = await get(panel, '/api/v1/health', reseller.api_key);
    expect(ok.status).to.equal(200);
    expect((ok.body as { message: string }).message).to.equal('Panel is online');
    for (const key of [h.adminKey, other.api_key, 'INVALID_KEY']) {
      expect(await get(panel, '/api/v1/health', key)).to.deep.equal({ status: 401, body: { success: false, message: 'Invalid or inactive API key' } });
    }
    expect(await get(panel, '/api/v1/health')).to.deep.equal({ status: 401, body: { success: false, message: 'API key is missing' } });

    expect(await get(subscription, '/healthz')).to.deep.equal({ status: 200, body: { success: true } });
    expect((await get(subscription, '/api/v1/health', reseller.api_key)).status).to.equal(404);
    expect((await get(subscription, '/api/v1/sub_admins', h.adminKey)).status).to.equal(404);
    expect((await get(subscription, '/trpc/health.check', reseller.api_key)).status).to.equal(404);

    // /sub and /download are mounted on the subscription port only: the panel port answers them
    // with the app's generic fallback, the subscription port with the pages' own handler.
    const generic = { status: 404, body: { success: false, message: 'Not found: GET /sub/nobody' } };
    expect(await get(panel, '/sub/nobody?token=x')).to.deep.equal(generic);
    expect(await get(subscription, '/sub/nobody?token=x')).to.not.deep.equal(generic);
  });

  it('follows reseller changes on its own: a new reseller is served without an explicit sync', async () => {
    const panel = await freePort();
    const reseller = await createReseller('sa_auto', { panel_port: panel });
    await waitFor(() => listeners.listening().some((l) => l.subAdminId === reseller.id && l.port === panel));
    expect((await get(panel, '/api/v1/health', reseller.api_key)).status).to.equal(200);
  });

  it('a moved port closes the old listener and opens the new one', async () => {
    const [oldPort, newPort] = [await freePort(), await freePort()];
    const reseller = await createReseller('sa_move', { panel_port: oldPort });
    await listeners.sync();
    expect(await probe(oldPort)).to.equal('connected');
    const res = await h.http.put(`/api/v1/sub_admins/${reseller.id}`).set('X-API-KEY', h.adminKey).send({ panel_port: newPort });
    expect(res.status).to.equal(200);
    await listeners.sync();
    expect(await probe(oldPort)).to.equal('ECONNREFUSED');
    expect((await get(newPort, '/api/v1/health', reseller.api_key)).status).to.equal(200);
  });

  it('deactivation closes both ports and reactivation opens them again', async () => {
    const [panel, subscription] = [await freePort(), await freePort()];
    const reseller = await createReseller('sa_toggle', { panel_port: panel, subscription_port: subscription });
    await listeners.sync();
    await h.http.put(`/api/v1/sub_admins/${reseller.id}`).set('X-API-KEY', h.adminKey).send({ is_active: false });
    await listeners.sync();
    expect(await probe(panel)).to.equal('ECONNREFUSED');
    expect(await probe(subscription)).to.equal('ECONNREFUSED');
    await h.http.put(`/api/v1/sub_admins/${reseller.id}`).set('X-API-KEY', h.adminKey).send({ is_active: true });
    await listeners.sync();
    expect((await get(panel, '/api/v1/health', reseller.api_key)).status).to.equal(200);
    expect((await get(subscription, '/healthz')).status).to.equal(200);
  });

  it('after DELETE both ports refuse connections', async () => {
    const [panel, subscription] = [await freePort(), await freePort()];
    const reseller = await createReseller('sa_gone', { panel_port: panel, subscription_port: subscription });
    await listeners.sync();
    expect(await probe(panel)).to.equal('connected');
    const res = await h.http.delete(`/api/v1/sub_admins/${reseller.id}`).set('X-API-KEY', h.adminKey);
    expect(res.status).to.equal(200);
    await listeners.sync();
    expect(await probe(panel)).to.equal('ECONNREFUSED');
    expect(await probe(subscription)).to.equal('ECONNREFUSED');
    expect(listeners.listening().filter((l) => l.subAdminId === reseller.id)).to.deep.equal([]);
  });

  it('a port taken by another program is logged and reported (health: degraded), not fatal, and retried at the next sync', async () => {
    const [taken, subscription] = [await freePort(), await freePort()];
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(taken, HOST, resolve));
    blockers.push(blocker);
    const reseller = await createReseller('sa_blocked', { panel_port: taken, subscription_port: subscription });
    await listeners.sync();

    expect(listeners.failures()).to.deep.equal([{ subAdminId: reseller.id, kind: 'panel', port: taken, reason: 'EADDRINUSE' }]);
    expect((await get(subscription, '/healthz')).status).to.equal(200);
    const health = await h.http.get('/api/v1/health').set('X-API-KEY', h.adminKey);
    expect(health.body.components.reseller_listeners).to.deep.equal({
      state: 'degraded',
      reason: `sub-admin ${reseller.id} panel port ${taken}: EADDRINUSE`,
    });

    await new Promise((r) => blocker.close(r));
    blockers.pop();
    await listeners.sync();
    expect(listeners.failures()).to.deep.equal([]);
    expect((await get(taken, '/api/v1/health', reseller.api_key)).status).to.equal(200);
    const healthy = await h.http.get('/api/v1/health').set('X-API-KEY', h.adminKey);
    expect(healthy.body.components.reseller_listeners).to.deep.equal({ state: 'ok' });
  });

  it('close() stops every listener and ignores later changes', async () => {
    const panel = await freePort();
    const reseller = await createReseller('sa_close', { panel_port: panel });
    await listeners.sync();
    const separate = new ResellerListeners(h.services, { host: HOST });
    // Two listener sets on one port: the second cannot bind, which is reported, not thrown.
    await separate.sync();
    expect(separate.failures().some((f) => f.port === panel)).to.equal(true);
    await listeners.close();
    expect(listeners.listening()).to.deep.equal([]);
    expect(await probe(panel)).to.equal('ECONNREFUSED');
    await h.http.put(`/api/v1/sub_admins/${reseller.id}`).set('X-API-KEY', h.adminKey).send({ notes: 'after close' });
    await listeners.sync();
    expect(listeners.listening()).to.deep.equal([]);
    await separate.close();
  });
});
