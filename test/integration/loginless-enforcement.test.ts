import { expect } from 'chai';
import { NodeRecord } from '../../core/db';
import { LocalHost } from '../../core/hosts/local-host';
import { startProtocols, type RunningProtocols } from '../../core/protocols/start';
import { addScriptedPlugin, type ScriptedPlugin } from '../fakes/scripted-plugin';
import { createHarness, forEachDatabase, type DatabaseKind, type Harness } from '../helpers/harness';

/**
 * Enforcement for daemons without a login hook (WireGuard peers, chap-secrets, password
 * files), proven with a scripted login-less plugin — a TEST DOUBLE standing in for such a
 * daemon: it lets in exactly the users of the last state core applied, and dropping a user
 * from that state ends the user's sessions. Beside it runs a scripted gating plugin (asks
 * core at every login, as OpenVPN does) so max_clients is counted across protocols. The rest
 * is real: the database, the REST API, the accounting tick, enforcement and the reconciler.
 */
function suite(kind: DatabaseKind) {
  describe(`enforcement without a login hook [${kind}]`, function () {
    this.timeout(30_000);
    let h: Harness;
    let peers: ScriptedPlugin;
    let gated: ScriptedPlugin;
    let protocols: RunningProtocols;
    let nextKey = 0;
    const admin = (method: 'post' | 'put' | 'delete', path: string, body?: object) => h.http[method](`/api/v1${path}`).set('X-API-KEY', h.adminKey).send(body ?? {});

    async function settle(): Promise<void> {
      await h.core.accounting.tick();
      await protocols.reconciler.idle();
    }
    async function createUser(username: string, fields: Record<string, unknown> = {}): Promise<void> {
      const res = await admin('post', '/users', { username, enable_wg1: true, enable_openvpn: true, max_clients: 1, ...fields });
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      await protocols.reconciler.idle();
    }
    /** A device of `username` connects through the login-less daemon; true when it got in. */
    async function connectPeer(username: string): Promise<boolean> {
      return (await peers.connect({ key: `peer-${++nextKey}`, username, rx: 0, tx: 0 })).allowed;
    }
    const peerSessions = (username: string) => [...peers.sessions.values()].filter((s) => s.username === username);

    beforeEach(async () => {
      h = await createHarness(kind, {}, { protocols: 'none' });
      peers = await addScriptedPlugin(h.core.plugins, 'wireguard', 'main', { loginless: true });
      gated = await addScriptedPlugin(h.core.plugins, 'openvpn', 'main');
      protocols = await startProtocols(h.core, { host: new LocalHost(), plugins: [], reconciler: { debounceMs: 5 } });
    });
    afterEach(async () => {
      await protocols.stop();
      await h.close();
    });

    it('the daemon is given each allowed user with its public material, never its private key', async () => {
      await createUser('alice');
      const state = peers.applied.at(-1)!;
      const alice = state.users.find((u) => u.username === 'alice')!;
      expect(alice.material.publicKey).to.match(/^[A-Za-z0-9+/]{43}=$/);
      expect(alice.material.address).to.match(/^10\.66\.\d+\.\d+\/32$/);
      expect(Object.keys(alice.material).sort()).to.deep.equal(['address', 'publicKey']);
      expect(state.listeners).to.deep.equal([{ port: 51820, protocol: 'udp' }]);
      expect(await connectPeer('alice')).to.equal(true);
    });

    it('an expiry passing while connected: cut within one tick and kept out, with no event but the clock', async () => {
      await createUser('alice', { expiry_date_str: '2026-06-01' }); // valid through 2026-06-01 (UTC); the clock says 12:00 that day
      expect(await connectPeer('alice')).to.equal(true);
      await settle();
      expect(peerSessions('alice')).to.have.length(1);
      expect(protocols.reconciler.nextTimeBasedChange()?.toISOString()).to.equal('2026-06-02T00:00:00.000Z');

      h.clock.set('2026-06-02T00:00:01Z');
      await settle();
      expect(peers.allowedUsers()).to.not.include('alice');
      expect(peerSessions('alice'), 'the peer was removed and its session ended').to.have.length(0);
      expect(await connectPeer('alice'), 'an expired user cannot come back').to.equal(false);
    });

    it('a data limit crossed: cut within one tick; a traffic reset lets the user back in', async () => {
      await createUser('bob', { data_limit: 1, data_limit_unit: 'MB' });
      expect(await connectPeer('bob')).to.equal(true);
      const [session] = peerSessions('bob');
      peers.set({ ...session!, rx: 600_000, tx: 600_000 });
      await settle();
      expect(peers.allowedUsers()).to.not.include('bob');
      expect(peerSessions('bob')).to.have.length(0);
      expect(await connectPeer('bob')).to.equal(false);

      expect((await admin('post', '/users/bob/reset_traffic')).status).to.equal(200);
      await protocols.reconciler.idle();
      expect(peers.allowedUsers()).to.include('bob');
      expect(await connectPeer('bob')).to.equal(true);
    });

    it('toggle off removes the user and cuts it; toggle on brings it back', async () => {
      await createUser('carol');
      expect(await connectPeer('carol')).to.equal(true);
      expect((await admin('post', '/users/carol/toggle')).body).to.include({ is_active: false });
      await protocols.reconciler.idle();
      expect(peerSessions('carol')).to.have.length(0);
      expect(await connectPeer('carol')).to.equal(false);
      expect((await admin('post', '/users/carol/toggle')).body).to.include({ is_active: true });
      await protocols.reconciler.idle();
      expect(await connectPeer('carol')).to.equal(true);
    });

    it('max_clients across protocols: a user connected elsewhere is left out until that session ends', async () => {
      await createUser('dave', { max_clients: 1 });
      expect((await gated.connect({ key: 'ovpn-1', username: 'dave', rx: 0, tx: 0 }, undefined)).allowed).to.equal(true);
      await settle();
      await settle(); // the gated session is settled after two polls
      expect(peers.allowedUsers(), 'its one slot is taken on the other protocol').to.not.include('dave');
      expect(await connectPeer('dave')).to.equal(false);

      gated.drop('ovpn-1');
      await settle();
      expect(peers.allowedUsers()).to.include('dave');
      expect(await connectPeer('dave')).to.equal(true);
      await settle();
      await settle();
      // Its own device keeps it in: the peer is not thrown out by its own session.
      expect(peers.allowedUsers()).to.include('dave');
      expect((await gated.connect({ key: 'ovpn-2', username: 'dave', rx: 0, tx: 0 })).allowed, 'and the gated daemon now refuses a second device').to.equal(false);
    });

    it('a reseller losing a server loses it everywhere: views, the desired state and live sessions', async () => {
      const made = await admin('post', '/sub_admins', { username: 'shop', password: 'shop-pass', allowed_servers: ['main'] });
      expect(made.status, JSON.stringify(made.body)).to.equal(200);
      const shop = made.body.sub_admin.id as number;
      await createUser('erin', { sub_admin_id: shop });
      expect(await connectPeer('erin')).to.equal(true);
      await settle();

      // The reseller's servers no longer include main (an allow-list of another server only;
      // the node is a row, no daemon is needed for the rule).
      const node = await NodeRecord.create({ name: 'Other', ip_address: '203.0.113.5', ssh_secret: null, communication_method: null, status_message: null, status: 'active' });
      expect((await admin('put', `/sub_admins/${shop}`, { allowed_servers: [`node_${node.id}`] })).status).to.equal(200);
      await protocols.reconciler.idle();
      await settle();
      const detail = (await h.http.get('/api/v1/users/erin').set('X-API-KEY', h.adminKey)).body;
      expect(detail.wg_servers.map((s: { name: string }) => s.name)).to.not.include('Main Server');
      expect(peers.allowedUsers()).to.not.include('erin');
      expect(peerSessions('erin'), 'its live session on main was cut').to.have.length(0);
      expect((await gated.authorize('erin')).allowed, 'and authorize refuses it on main').to.equal(false);
    });
  });
}

forEachDatabase(suite);
