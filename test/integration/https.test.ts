import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { expect } from 'chai';
import { ConfigError, loadConfig } from '../../core/config';
import { StartupError, type DaemonHandle } from '../../core/daemon';
import { newPanel, startPanel } from './backup-helpers';

/** A test CA and two server certificates for 127.0.0.1 it signed (made with openssl, argv only). */
function makeCertificates(dir: string): { ca: string; pairs: { cert: string; key: string; serial: string }[] } {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' }).toString();
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=polygate test CA');
  const pairs = [1, 2].map((n) => {
    openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `s${n}.key`, '-out', `s${n}.csr`, '-subj', '/CN=127.0.0.1');
    const serial = `0${n}a1b2c3d4e5f6`;
    writeFileSync(path.join(dir, `s${n}.ext`), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    openssl('x509', '-req', '-in', `s${n}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', `0x${serial}`, '-out', `s${n}.crt`, '-days', '2', '-extfile', `s${n}.ext`);
    return { cert: path.join(dir, `s${n}.crt`), key: path.join(dir, `s${n}.key`), serial: serial.toUpperCase().replace(/^0+/, '') };
  });
  return { ca: path.join(dir, 'ca.crt'), pairs };
}

/** GET over TLS trusting only the test CA (hostname checked); answers the status and the served certificate's serial. */
function get(url: string, ca: Buffer): Promise<{ status: number; serial: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, agent: false }, (res) => {
      let body = '';
      const serial = (res.socket as TLSSocket).getPeerCertificate().serialNumber.replace(/^0+/, '');
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, serial, body }));
    });
    req.on('error', reject);
  });
}

/** Replaces a file the way certbot and `install` do: write beside it, rename over it. */
function replace(from: string, to: string): void {
  copyFileSync(from, `${to}.new`);
  renameSync(`${to}.new`, to);
}

describe('HTTPS (POLYGATE_TLS_CERT / POLYGATE_TLS_KEY)', function () {
  this.timeout(60_000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pg-https-'));
  const certs = makeCertificates(dir);
  const ca = readFileSync(certs.ca);
  const certFile = path.join(dir, 'panel.crt');
  const keyFile = path.join(dir, 'panel.key');
  let daemon: DaemonHandle | null = null;
  afterEach(async () => {
    await daemon?.stop();
    daemon = null;
  });

  it('serves the API over TLS, links on https, and a replaced certificate is served without a restart', async () => {
    copyFileSync(certs.pairs[0]!.cert, certFile);
    copyFileSync(certs.pairs[0]!.key, keyFile);
    const panel = await newPanel('sqlite', { tlsCert: certFile, tlsKey: keyFile });
    daemon = await startPanel(panel);
    expect(daemon.url).to.match(/^https:\/\/127\.0\.0\.1:\d+$/);
    const first = await get(`${daemon.url}/healthz`, ca);
    expect(first.status).to.equal(200);
    expect(first.serial).to.equal(certs.pairs[0]!.serial);

    const key = daemon.core.generatedAdminKey!;
    const created = await new Promise<string>((resolve, reject) => {
      const req = https.request(`${daemon!.url}/api/v1/users`, { method: 'POST', ca, agent: false, headers: { 'X-API-KEY': key, 'content-type': 'application/json' } }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      req.end(JSON.stringify({ username: 'tls-user' }));
    });
    expect(created).to.match(/created/);
    const sub = await new Promise<{ sub_url: string }>((resolve, reject) =>
      https.get(`${daemon!.url}/api/v1/users/tls-user/sub`, { ca, agent: false, headers: { 'X-API-KEY': key } }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(JSON.parse(body)));
      }).on('error', reject),
    );
    expect(sub.sub_url, 'subscription links carry tokens: https when TLS is on').to.match(/^https:\/\//);

    replace(certs.pairs[1]!.cert, certFile);
    replace(certs.pairs[1]!.key, keyFile);
    const deadline = Date.now() + 8000;
    let served = first.serial;
    while (served !== certs.pairs[1]!.serial && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      served = (await get(`${daemon.url}/healthz`, ca)).serial;
    }
    expect(served, 'the new certificate is served by the same process').to.equal(certs.pairs[1]!.serial);

    // A half-done renewal (new certificate, old key) keeps the last good pair in service.
    replace(certs.pairs[0]!.cert, certFile);
    await new Promise((r) => setTimeout(r, 2600));
    const during = await get(`${daemon.url}/healthz`, ca);
    expect(during.status).to.equal(200);
    expect(during.serial).to.equal(certs.pairs[1]!.serial);
    replace(certs.pairs[0]!.key, keyFile);
    const until = Date.now() + 8000;
    served = during.serial;
    while (served !== certs.pairs[0]!.serial && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 250));
      served = (await get(`${daemon.url}/healthz`, ca)).serial;
    }
    expect(served, 'once the key matches, the pair is taken').to.equal(certs.pairs[0]!.serial);
  });

  it('a reseller\'s own subscription port is HTTPS with the panel\'s certificate too (its links say https), and follows a replaced one', async () => {
    copyFileSync(certs.pairs[0]!.cert, certFile);
    copyFileSync(certs.pairs[0]!.key, keyFile);
    daemon = await startPanel(await newPanel('sqlite', { tlsCert: certFile, tlsKey: keyFile, resellerListeners: 'on' }));
    const port = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (probe.address() as net.AddressInfo).port;
        probe.close(() => resolve(p));
      });
    });
    const made = await new Promise<number>((resolve, reject) => {
      const req = https.request(`${daemon!.url}/api/v1/sub_admins`, { method: 'POST', ca, agent: false, headers: { 'X-API-KEY': daemon!.core.generatedAdminKey!, 'content-type': 'application/json' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      });
      req.on('error', reject);
      req.end(JSON.stringify({ username: 'tls_reseller', password: 'tls-reseller-pass', subscription_port: port }));
    });
    expect(made).to.equal(200);
    const url = `https://127.0.0.1:${port}/sub/nobody?token=x`;
    let first: { status: number; serial: string } | undefined;
    for (let i = 0; i < 40 && !first; i++) {
      first = await get(url, ca).catch(() => undefined);
      if (!first) await new Promise((r) => setTimeout(r, 100));
    }
    expect(first?.serial, 'the reseller port answers TLS with the panel certificate').to.equal(certs.pairs[0]!.serial);
    replace(certs.pairs[1]!.cert, certFile);
    replace(certs.pairs[1]!.key, keyFile);
    const deadline = Date.now() + 8000;
    let served = first!.serial;
    while (served !== certs.pairs[1]!.serial && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      served = (await get(url, ca)).serial;
    }
    expect(served).to.equal(certs.pairs[1]!.serial);
  });

  it('a certificate without its key is a configuration error naming the missing setting; an unreadable one stops the start naming the setting', async () => {
    expect(() => loadConfig({ POLYGATE_TLS_CERT: certFile })).to.throw(ConfigError, /POLYGATE_TLS_KEY/);
    const panel = await newPanel('sqlite', { tlsCert: path.join(dir, 'missing.crt'), tlsKey: keyFile });
    const err = await startPanel(panel).then(() => null, (e: unknown) => e);
    expect(err).to.be.instanceOf(StartupError);
    expect((err as Error).message).to.match(/POLYGATE_TLS_CERT: cannot read .*missing\.crt/);
    // The failed start released everything: the same data dir starts (without TLS) at once.
    daemon = await startPanel(await newPanel('sqlite', { dataDir: panel.dataDir }));
    expect(daemon.url).to.match(/^http:/);
  });
});
