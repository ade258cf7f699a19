import { expect } from 'chai';
import { PortReservation } from '../../core/db';
import { LocalHost } from '../../core/hosts/local-host';
import { startProtocols, type RunningProtocols } from '../../core/protocols/start';
import { addScriptedPlugin, type ScriptedPlugin } from '../fakes/scripted-plugin';
import { createHarness, type Harness } from '../helpers/harness';

/**
 * The reconciler on a real database with scripted plugins (TEST DOUBLES, no daemon): one
 * apply per change and none without one, listeners claimed in the port registry before a
 * daemon binds them, failures shown in /health and retried.
 */
describe('reconciler', function () {
  this.timeout(30_000);
  let h: Harness;
  let protocols: RunningProtocols;
  let wg: ScriptedPlugin;
  let ovpn: ScriptedPlugin;

  beforeEach(async () => {
    h = await createHarness('sqlite', {}, { protocols: 'none' });
    wg = await addScriptedPlugin(h.core.plugins, 'wireguard', 'main', { loginless: true });
    ovpn = await addScriptedPlugin(h.core.plugins, 'openvpn', 'main');
    protocols = await startProtocols(h.core, { host: new LocalHost(), plugins: [], reconciler: { debounceMs: 5, initialBackoffMs: 20 } });
  });
  afterEach(async () => {
    await protocols.stop();
    await h.close();
  });

  it('applies only what changed: the same state is not applied twice, a change is applied once', async () => {
    const before = wg.applied.length;
    await protocols.reconciler.syncNow();
    await h.core.accounting.tick();
    await protocols.reconciler.idle();
    expect(wg.applied.length, 'nothing changed').to.equal(before);
    await h.http.post('/api/v1/users').set('X-API-KEY', h.adminKey).send({ username: 'one', enable_wg1: true });
    await protocols.reconciler.idle();
    expect(wg.applied.length).to.equal(before + 1);
    expect(wg.allowedUsers()).to.deep.equal(['one']);
    expect(ovpn.applied.at(-1)!.users.map((u) => u.username), 'enable_openvpn is the default').to.deep.equal(['one']);
  });

  it('claims each plugin’s listeners in the port registry, owned by its protocol', async () => {
    const claims = await PortReservation.findAll({ where: { server_identifier: 'main' }, raw: true });
    const owned = claims.filter((c) => c.owner === 'wireguard').map((c) => `${c.port}/${c.protocol}`);
    expect(owned).to.deep.equal(['51820/udp']);
    expect(claims.filter((c) => c.owner === 'openvpn').map((c) => `${c.port}/${c.protocol}`)).to.deep.equal(['1194/udp']);
  });

  it('a failed apply shows the plugin degraded in /health with the reason, and is retried until it takes', async () => {
    wg.applyFailure = new Error('wireguard-go exited');
    await h.http.post('/api/v1/users').set('X-API-KEY', h.adminKey).send({ username: 'two', enable_wg1: true });
    await protocols.reconciler.idle();
    const health = (await h.http.get('/api/v1/health').set('X-API-KEY', h.adminKey)).body;
    expect(JSON.stringify(health)).to.contain('wireguard@main: wireguard-go exited');
    wg.applyFailure = undefined;
    const end = Date.now() + 10_000;
    while (!wg.allowedUsers().includes('two') && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    expect(wg.allowedUsers()).to.include('two');
  });
});
