import { execFileSync } from 'node:child_process';
import { expect } from 'chai';
import { LocalHost } from '../../core/hosts/local-host';
import { startProtocols, type RunningProtocols } from '../../core/protocols/start';
import { addScriptedPlugin, type ScriptedPlugin } from '../fakes/scripted-plugin';
import { createHarness, forEachDatabase, type Harness } from '../helpers/harness';
import { requirePrerequisite } from '../helpers/prereq';
import { until } from '../helpers/vpn-lab';

/**
 * A user's credentials die with it (issue 8, finding 2): deleting a user revokes its client
 * certificate in the panel's one CA (real openssl), every plugin that verifies certificates
 * gets the new revocation list, and a new user of the same name gets a fresh key and serial.
 * The plugin is a scripted TEST DOUBLE declaring the `pki_crl` setting, as OpenVPN's does; a
 * real OpenVPN server refusing the old profile is proven in the OpenVPN plugin's tests.
 */
const serialOf = (pem: string) => execFileSync('openssl', ['x509', '-noout', '-serial'], { input: pem, encoding: 'utf8' }).trim();
const revokedIn = (crl: string) => execFileSync('openssl', ['crl', '-noout', '-text'], { input: crl, encoding: 'utf8' });

forEachDatabase((kind) => {
  describe(`credentials die with their user [${kind}]`, function () {
    this.timeout(60_000);
    let h: Harness;
    let protocols: RunningProtocols;
    let verifier: ScriptedPlugin;

    before(async function () {
      let hasOpenssl = true;
      try {
        execFileSync('openssl', ['version'], { stdio: 'ignore' });
      } catch {
        hasOpenssl = false;
      }
      requirePrerequisite(this, hasOpenssl, 'openssl is not installed');
      h = await createHarness(kind, {}, { protocols: 'none' });
      verifier = await addScriptedPlugin(h.core.plugins, 'openvpn', 'main');
      protocols = await startProtocols(h.core, { host: new LocalHost(), plugins: [], reconciler: { debounceMs: 5 } });
    });
    after(async () => {
      await protocols?.stop();
      await h?.close();
    });

    it('delete revokes the certificate everywhere; the next user of that name gets a new key and serial', async () => {
      const admin = (method: 'post' | 'delete', path: string, body: object = {}) => h.http[method](`/api/v1${path}`).set('X-API-KEY', h.adminKey).send(body);
      expect((await admin('post', '/users', { username: 'reused' })).status).to.equal(200);
      const first = await h.core.pki.clientCertificate('reused');
      const firstSerial = serialOf(first.certificate);

      expect((await admin('delete', '/users/reused')).status).to.equal(200);
      await until(async () => revokedIn(await h.core.pki.crl()).includes(firstSerial.replace('serial=', '')), 'the old serial in the CRL', 20_000);
      await protocols.reconciler.idle();
      await until(() => (verifier.applied.at(-1)?.settings.pki_crl ?? '').length > 0, 'a CRL applied to the plugin', 10_000);
      expect(revokedIn(verifier.applied.at(-1)!.settings.pki_crl!)).to.include(firstSerial.replace('serial=', ''));

      expect((await admin('post', '/users', { username: 'reused' })).status).to.equal(200);
      const second = await h.core.pki.clientCertificate('reused');
      expect(serialOf(second.certificate)).to.not.equal(firstSerial);
      expect(second.privateKey).to.not.equal(first.privateKey);
    });
  });
});
