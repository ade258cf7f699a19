import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { ManualClock } from '../../core/clock';
import { LocalHost } from '../../core/hosts/local-host';
import { createPanelPki, OpensslPanelPki, parseIndex } from '../../core/pki';
import { requirePrerequisite } from '../helpers/prereq';

/*
 * The panel's one PKI with the real openssl. Proves: the CA is created once and kept (a second
 * PKI object on the same directory sees the same CA); server certificates (serverAuth, with
 * the SANs asked for) and client certificates (clientAuth, CN = username) verify against the
 * CA with `openssl verify`; the same certificate comes back until it is revoked, while other
 * SANs give a new server certificate; revokeClient lists the serial in the CRL (openssl
 * verify -crl_check refuses it) and the next certificate of that name has a new serial and a
 * new key (a user re-created under a deleted user's name never gets the old profile); a user
 * named like a server never touches the server's certificate; two parallel requests for one
 * user give one certificate; key files are 0600; an incomplete CA is refused; expiring
 * certificates are renewed on the PKI's clock.
 */

const DIR = `/tmp/pg-pki-${randomBytes(3).toString('hex')}`;

function opensslMissing(): string | null {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return null;
  } catch {
    return 'openssl is not installed';
  }
}

const host = new LocalHost();

async function verify(caPem: string, certPem: string, crlPem?: string): Promise<{ ok: boolean; out: string }> {
  const name = randomBytes(4).toString('hex');
  const ca = `${DIR}/v-${name}-ca.pem`;
  const cert = `${DIR}/v-${name}.pem`;
  await host.writeFileAtomic(ca, caPem + (crlPem ?? ''));
  await host.writeFileAtomic(cert, certPem);
  const argv = ['openssl', 'verify', ...(crlPem ? ['-crl_check'] : []), '-CAfile', ca, cert];
  const r = await host.run(argv);
  return { ok: r.code === 0, out: r.stdout + r.stderr };
}

const text = (pem: string, ...args: string[]) => execFileSync('openssl', ['x509', '-noout', ...args], { input: pem }).toString();
const publicKeyOf = (keyPem: string) => execFileSync('openssl', ['pkey', '-pubout'], { input: keyPem }).toString();
const serialOf = (pem: string) => /serial=([0-9A-F]+)/i.exec(text(pem, '-serial'))![1]!.toUpperCase();

describe('panel PKI (integration, real openssl)', function () {
  this.timeout(60_000);
  let pki: OpensslPanelPki;

  before(async function () {
    const missing = opensslMissing();
    requirePrerequisite(this, missing === null, missing ?? '');
    await fs.mkdir(DIR, { recursive: true });
    pki = createPanelPki({ host, dir: `${DIR}/pki` }) as OpensslPanelPki;
    await pki.init();
  });

  after(async () => {
    await fs.rm(DIR, { recursive: true, force: true });
  });

  it('creates the CA once; another PKI object on the same directory uses the same CA', async () => {
    const ca = await pki.caCertificate();
    expect(text(ca, '-subject', '-nameopt', 'RFC2253')).to.match(/subject=CN=polygate-ca/);
    expect(text(ca, '-ext', 'basicConstraints')).to.match(/CA:TRUE/);
    const again = createPanelPki({ host, dir: `${DIR}/pki` });
    await again.init();
    expect(await again.caCertificate()).to.equal(ca);
    expect((await fs.stat(`${DIR}/pki/ca.key`)).mode & 0o777).to.equal(0o600);
  });

  it('server certificates chain to the CA, carry serverAuth and the SANs, and are reused until the SANs change', async () => {
    const ca = await pki.caCertificate();
    const a = await pki.serverCertificate('main', { dnsNames: ['vpn.example.com'], ipAddresses: ['192.0.2.10'] });
    expect((await verify(ca, a.certificate)).ok).to.equal(true);
    expect(text(a.certificate, '-ext', 'extendedKeyUsage')).to.match(/TLS Web Server Authentication/);
    const san = text(a.certificate, '-ext', 'subjectAltName');
    expect(san).to.include('DNS:vpn.example.com').and.include('IP Address:192.0.2.10');
    expect(await pki.serverCertificate('main', { ipAddresses: ['192.0.2.10'], dnsNames: ['vpn.example.com'] })).to.deep.equal(a);
    const b = await pki.serverCertificate('main', { dnsNames: ['vpn2.example.com'] });
    expect(serialOf(b.certificate)).to.not.equal(serialOf(a.certificate));
    expect(text(b.certificate, '-ext', 'subjectAltName')).to.include('DNS:vpn2.example.com').and.not.include('vpn.example.com');
    // The superseded one is revoked: exactly one valid server certificate per name.
    const valid = (await pki.listIndex()).filter((e) => e.kind === 'server' && e.commonName === 'main' && e.status === 'V');
    expect(valid.map((e) => e.serial)).to.deep.equal([serialOf(b.certificate)]);
    for (const bad of ['a b', 'x;y', '-rf']) {
      const err = await pki.serverCertificate('main', { dnsNames: [bad] }).then(() => null, (e: Error) => e);
      expect(err?.message, bad).to.match(/DNS name must match/);
    }
  });

  it('client certificates chain to the CA with clientAuth and CN = username; the same one is returned; keys are 0600', async () => {
    const ca = await pki.caCertificate();
    const alice = await pki.clientCertificate('alice');
    expect((await verify(ca, alice.certificate)).ok).to.equal(true);
    expect(text(alice.certificate, '-subject', '-nameopt', 'RFC2253')).to.match(/CN=alice/);
    expect(text(alice.certificate, '-ext', 'extendedKeyUsage')).to.match(/TLS Web Client Authentication/);
    expect(text(alice.certificate, '-pubkey')).to.include(publicKeyOf(alice.privateKey).trim().split('\n')[1]!);
    expect(await pki.clientCertificate('alice')).to.deep.equal(alice);
    expect((await fs.stat(`${DIR}/pki/clients/alice.pem`)).mode & 0o777).to.equal(0o600);
    const err = await pki.clientCertificate('../etc').then(() => null, (e: Error) => e);
    expect(err?.message).to.match(/username must match/);
  });

  it('revokeClient: the serial is in the CRL, verify -crl_check refuses it, and the next certificate has a new serial and a new key', async () => {
    const ca = await pki.caCertificate();
    const old = await pki.clientCertificate('bob');
    const oldSerial = serialOf(old.certificate);
    await pki.revokeClient('bob');
    const crl = await pki.crl();
    const crlText = execFileSync('openssl', ['crl', '-noout', '-text'], { input: crl }).toString();
    expect(crlText.replace(/:/g, '').toUpperCase()).to.include(oldSerial);
    const refused = await verify(ca, old.certificate, crl);
    expect(refused.ok).to.equal(false);
    expect(refused.out).to.match(/certificate revoked/);
    expect(await fs.stat(`${DIR}/pki/clients/bob.pem`).then(() => true, () => false), 'the old bundle is gone').to.equal(false);

    const fresh = await pki.clientCertificate('bob');
    expect(serialOf(fresh.certificate)).to.not.equal(oldSerial);
    expect(publicKeyOf(fresh.privateKey)).to.not.equal(publicKeyOf(old.privateKey));
    expect((await verify(ca, fresh.certificate, await pki.crl())).ok).to.equal(true);
    // Revoking someone without a certificate is harmless.
    await pki.revokeClient('nobody');
  });

  it('a user named like a server certificate never revokes or receives it', async () => {
    const server = await pki.serverCertificate('node_7');
    const user = await pki.clientCertificate('node_7');
    expect(serialOf(user.certificate)).to.not.equal(serialOf(server.certificate));
    await pki.revokeClient('node_7');
    expect(await pki.serverCertificate('node_7')).to.deep.equal(server);
    const crl = execFileSync('openssl', ['crl', '-noout', '-text'], { input: await pki.crl() }).toString().replace(/:/g, '').toUpperCase();
    expect(crl).to.include(serialOf(user.certificate)).and.not.include(serialOf(server.certificate));
  });

  it('two parallel requests for one user give one certificate', async () => {
    const [a, b] = await Promise.all([pki.clientCertificate('carol'), pki.clientCertificate('carol')]);
    expect(a).to.deep.equal(b);
    const carol = (await pki.listIndex()).filter((e) => e.commonName === 'carol' && e.kind === 'client');
    expect(carol).to.have.length(1);
    expect(carol[0]!.status).to.equal('V');
  });

  it('renews a certificate that nears expiry on the PKI clock, revoking the old one', async () => {
    const clock = new ManualClock(new Date());
    const timed = createPanelPki({ host, dir: `${DIR}/pki`, clock, certDays: 40, renewBeforeDays: 30 }) as OpensslPanelPki;
    const first = await timed.clientCertificateInfo('dave');
    expect((await timed.clientCertificateInfo('dave')).serial).to.equal(first.serial);
    clock.set(new Date(Date.now() + 15 * 86_400_000));
    const renewed = await timed.clientCertificateInfo('dave');
    expect(renewed.serial).to.not.equal(first.serial);
    const entries = (await timed.listIndex()).filter((e) => e.commonName === 'dave');
    expect(entries.map((e) => [e.serial, e.status])).to.deep.include.members([
      [first.serial, 'R'],
      [renewed.serial, 'V'],
    ]);
  });

  it('refuses a CA with one half missing instead of silently starting a new one', async () => {
    const dir = `${DIR}/broken`;
    const a = createPanelPki({ host, dir });
    await a.init();
    await fs.rm(`${dir}/ca.key`);
    const err = await createPanelPki({ host, dir }).init().then(() => null, (e: Error) => e);
    expect(err?.message).to.match(/incomplete \(ca\.key is missing\)/);
  });

  it('parseIndex reads statuses, serials, names and kinds', () => {
    const rows = parseIndex(
      ['V\t360101000000Z\t\t0A1B\tunknown\t/OU=client/CN=alice', 'R\t20360101000000Z\t260101000000Z,superseded\t0c2d\tunknown\t/OU=server/CN=main', 'garbage'].join('\n'),
    );
    expect(rows.map((r) => [r.status, r.serial, r.commonName, r.kind, r.expires.toISOString()])).to.deep.equal([
      ['V', '0A1B', 'alice', 'client', '2036-01-01T00:00:00.000Z'],
      ['R', '0C2D', 'main', 'server', '2036-01-01T00:00:00.000Z'],
    ]);
  });
});
