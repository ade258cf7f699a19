import { expect } from 'chai';
import { addScriptedPlugin, type ScriptedPlugin } from '../fakes/scripted-plugin';
import { createHarness, forEachDatabase, type Harness } from '../helpers/harness';
import { decodeQrSvg } from '../helpers/qr-decode';

/**
 * Client configs from the plugin that runs a protocol, offered on the subscription page only
 * where the protocol runs, with a QR code for formats client apps scan. The plugin is a
 * scripted TEST DOUBLE (no daemon) that declares `.conf` configs with a QR code, as the
 * WireGuard plugin does.
 */
forEachDatabase((kind) => {
  describe(`client configs and QR codes [${kind}]`, () => {
    let h: Harness;
    let wg: ScriptedPlugin;
    before(async () => {
      h = await createHarness(kind, {}, { protocols: 'none' });
      wg = await addScriptedPlugin(h.core.plugins, 'wireguard', 'main', { loginless: true, clientConfig: { extension: 'conf', mediaType: 'text/plain', qr: true } });
      const res = await h.http.post('/api/v1/users').set('X-API-KEY', h.adminKey).send({ username: 'qr_user', enable_wg1: true, enable_openvpn: false });
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
    });
    after(() => h.close());

    const subOf = async () => {
      const url = new URL((await h.http.get('/api/v1/users/qr_user/sub').set('X-API-KEY', h.adminKey)).body.sub_url);
      return { path: url.pathname, token: url.searchParams.get('token')! };
    };

    it('the JSON page lists the config with its text; the download serves the same text, rendered with the private key', async () => {
      const { path, token } = await subOf();
      const json = (await h.http.get(path).query({ token }).set('Accept', 'application/json')).body;
      const [link] = json.protocols.wireguard.links;
      expect(link).to.include({ name: 'main_wireguard', file: 'main_wireguard.conf' });
      expect(link).to.not.have.property('qr_svg');
      const url = new URL(link.url);
      const download = await h.http.get(url.pathname).query(Object.fromEntries(url.searchParams)).buffer(true);
      expect(download.status).to.equal(200);
      expect(download.headers['content-type']).to.match(/^text\/plain/);
      expect(download.text).to.equal(link.config);
      const handed = wg.rendered.at(-1)!;
      expect(handed.user.material.privateKey).to.match(/^[A-Za-z0-9+/]{43}=$/);
      expect(handed.endpoints).to.deep.equal([{ host: 'panel.example.test', port: 51820, protocol: 'udp' }]);
    });

    it('the HTML page shows a QR code that decodes to exactly that config', async () => {
      const { path, token } = await subOf();
      const html = (await h.http.get(path).query({ token }).set('Accept', 'text/html')).text;
      const svg = /<svg[\s\S]*?<\/svg>/.exec(html)?.[0];
      expect(svg, 'an inline SVG QR code').to.be.a('string');
      const json = (await h.http.get(path).query({ token }).set('Accept', 'application/json')).body;
      expect(decodeQrSvg(svg!)).to.equal(json.protocols.wireguard.links[0].config);
    });

    it('where the protocol does not run, neither servers nor configs are shown, and the old link answers 503', async () => {
      const { path, token } = await subOf();
      const link = (await h.http.get(path).query({ token }).set('Accept', 'application/json')).body.protocols.wireguard.links[0];
      wg.available = { available: false, reason: 'wireguard-go is not installed' };
      await h.core.plugins.refreshAvailability();
      try {
        const card = (await h.http.get(path).query({ token }).set('Accept', 'application/json')).body.protocols.wireguard;
        expect(card).to.include({ enabled: true });
        expect(card.servers).to.deep.equal([]);
        expect(card.links).to.deep.equal([]);
        const detail = (await h.http.get('/api/v1/users/qr_user').set('X-API-KEY', h.adminKey)).body;
        expect(detail.wg_servers).to.deep.equal([]);
        const url = new URL(link.url);
        const res = await h.http.get(url.pathname).query(Object.fromEntries(url.searchParams));
        expect(res.status).to.equal(503);
        expect(res.body).to.deep.equal({ success: false, message: 'WireGuard profiles are not available: the WireGuard plugin is not running on this server.' });
      } finally {
        wg.available = { available: true };
        await h.core.plugins.refreshAvailability();
      }
    });

    it('revoke issues a new key pair: the next config carries the new private key', async () => {
      const before = (await h.http.get('/api/v1/users/qr_user').set('X-API-KEY', h.adminKey)).body.wg_public_key;
      expect((await h.http.post('/api/v1/users/qr_user/revoke').set('X-API-KEY', h.adminKey)).status).to.equal(200);
      const after = (await h.http.get('/api/v1/users/qr_user').set('X-API-KEY', h.adminKey)).body;
      expect(after.wg_public_key).to.match(/^[A-Za-z0-9+/]{43}=$/).and.not.equal(before);
      expect(after.wg_address, 'the address stays').to.match(/^10\.66\./);
    });
  });
});
