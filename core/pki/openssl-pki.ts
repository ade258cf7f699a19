import net from 'node:net';
import path from 'node:path';
import { DomainError, invalid, unavailable } from '../errors';
import { runChecked, type Host } from '../hosts/host';
import { SerialLock } from '../plugin/kit/serial-lock';
import { assertCommonName, assertIntRange, assertSafePath, assertUsername, HOSTNAME_PATTERN } from '../plugin/kit/validate';
import type { CertificateBundle, PluginClock } from '../plugin/types';
import type { PanelPki } from './index';

export interface OpensslPkiOptions {
  /** The host that keeps the CA: the main server (its data dir never leaves it). */
  host: Host;
  /** Absolute directory on the host, e.g. `<dataDir>/pki`; created 0700. */
  dir: string;
  caCommonName?: string;
  /** Validity of client and server certificates; default 3650 days. */
  certDays?: number;
  /** Validity of the CA; default 7300 days. */
  caDays?: number;
  /** A certificate expiring sooner than this is replaced when asked for; default 30 days. */
  renewBeforeDays?: number;
  /** `openssl` on the host; default from PATH. */
  opensslPath?: string;
  /** Decides "expiring soon"; default the system clock. */
  clock?: PluginClock;
}

/** What a certificate is for; kept in the subject (`OU`) so a user named like a server never touches its certificate. */
export type CertificateKind = 'client' | 'server';

/** One row of openssl's CA database (index.txt). */
export interface IndexEntry {
  status: 'V' | 'R' | 'E';
  expires: Date;
  serial: string;
  subject: string;
  commonName: string | undefined;
  /** From the subject's `OU`; entries without one are clients. */
  kind: CertificateKind;
}

/** A certificate as issued, with what the caller may want to log or test. */
export interface IssuedCertificate extends CertificateBundle {
  /** Upper-case hex, as in index.txt. */
  serial: string;
  notAfter: Date;
}

const DAY_MS = 86_400_000;
const SAN_MARKER = '# polygate-san: ';

/**
 * The panel's CA on one host (the main server), driven by `openssl` through argv (never a
 * shell), with openssl's own database (`openssl ca`, index.txt) so revocation and CRLs are
 * openssl's. EC prime256v1 keys.
 *
 * Crash safety: each key + certificate pair is written as one bundle file with
 * `writeFileAtomic` (0600), so a crash never leaves a key beside someone else's certificate;
 * a certificate issued but never bundled is revoked on the next issue of that name.
 * Every operation runs under one lock (one openssl database, one writer).
 *
 * @example
 * const pki = createPanelPki({ host: mainHost, dir: `${dataDir}/pki` });
 * await pki.init();
 * const { certificate, privateKey } = await pki.clientCertificate('alice');
 * await pki.revokeClient('alice');   // listed in crl(); the next clientCertificate is new
 */
export class OpensslPanelPki implements PanelPki {
  readonly dir: string;
  readonly caCommonName: string;
  private readonly host: Host;
  private readonly certDays: number;
  private readonly caDays: number;
  private readonly renewBeforeMs: number;
  private readonly openssl: string;
  private readonly clock: PluginClock;
  private readonly caCert: string;
  private readonly caKey: string;
  private readonly crlPath: string;
  private readonly dbDir: string;
  private readonly clientsDir: string;
  private readonly serversDir: string;
  private readonly tmpDir: string;
  private readonly cnf: string;
  private readonly index: string;
  private readonly lock = new SerialLock();
  private caReady = false;
  private tmpCounter = 0;

  constructor(options: OpensslPkiOptions) {
    this.host = options.host;
    this.dir = assertSafePath(options.dir, 'PKI directory');
    this.caCommonName = assertCommonName(options.caCommonName ?? 'polygate-ca', 'CA common name');
    this.certDays = assertIntRange(options.certDays ?? 3650, 1, 36500, 'certDays');
    this.caDays = assertIntRange(options.caDays ?? 7300, 1, 36500, 'caDays');
    this.renewBeforeMs = assertIntRange(options.renewBeforeDays ?? 30, 0, 3650, 'renewBeforeDays') * DAY_MS;
    this.openssl = options.opensslPath ?? 'openssl';
    this.clock = options.clock ?? { now: () => new Date() };
    const j = (...p: string[]) => path.posix.join(this.dir, ...p);
    this.caCert = j('ca.crt');
    this.caKey = j('ca.key');
    this.crlPath = j('crl.pem');
    this.dbDir = j('db');
    this.clientsDir = j('clients');
    this.serversDir = j('servers');
    this.tmpDir = j('tmp');
    this.cnf = j('db', 'openssl.cnf');
    this.index = j('db', 'index.txt');
  }

  /**
   * Creates the layout, openssl's database and config, the CA (when neither its key nor its
   * certificate exists) and a first CRL. Refuses to replace a CA of which one half is
   * missing: that would silently invalidate every profile issued so far.
   */
  init(): Promise<void> {
    return this.lock.run(() => this.ensureCaLocked());
  }

  caCertificate(): Promise<string> {
    return this.lock.run(async () => {
      await this.ensureCaLocked();
      return this.read(this.caCert);
    });
  }

  /**
   * A server certificate (EKU serverAuth) for `commonName` with the given SANs: the stored
   * one while it is valid, not expiring soon and has exactly these SANs; otherwise a new one
   * (the old one is revoked).
   */
  async serverCertificate(commonName: string, options: { dnsNames?: string[]; ipAddresses?: string[] } = {}): Promise<CertificateBundle> {
    assertCommonName(commonName, 'server common name');
    const san = sanList(options);
    return this.lock.run(async () => {
      await this.ensureCaLocked();
      const file = path.posix.join(this.serversDir, `${commonName}.pem`);
      const stored = await this.readBundle(file);
      if (stored && stored.san === san.join(',') && (await this.currentIfValid(stored.certificate, commonName, 'server'))) {
        return { certificate: stored.certificate, privateKey: stored.privateKey };
      }
      await this.revokeAllLocked(commonName, 'server');
      const issued = await this.issueLocked(commonName, 'server', san);
      await this.writeCrlLocked();
      await this.host.writeFileAtomic(file, `${SAN_MARKER}${san.join(',')}\n${issued.privateKey}${issued.certificate}`, 0o600);
      return { certificate: issued.certificate, privateKey: issued.privateKey };
    });
  }

  /** The user's certificate (CN = username, EKU clientAuth): the same one until it is revoked or nears expiry. */
  async clientCertificate(username: string): Promise<CertificateBundle> {
    assertUsername(username);
    return this.lock.run(async () => {
      const issued = await this.clientLocked(username);
      return { certificate: issued.certificate, privateKey: issued.privateKey };
    });
  }

  /** Same as {@link clientCertificate}, with serial and expiry (for logs and tests). */
  async clientCertificateInfo(username: string): Promise<IssuedCertificate> {
    assertUsername(username);
    return this.lock.run(() => this.clientLocked(username));
  }

  /**
   * Revokes every valid certificate of the user, publishes the CRL and removes the user's
   * key and certificate, so the next `clientCertificate` issues a new key and serial: a user
   * created later under the same name never receives the deleted user's profile.
   */
  async revokeClient(username: string): Promise<void> {
    assertUsername(username);
    return this.lock.run(async () => {
      await this.ensureCaLocked();
      await this.revokeAllLocked(username, 'client');
      // Always re-published: a crash after a revoke but before the CRL write is healed here.
      await this.writeCrlLocked();
      await this.host.remove(this.clientBundlePath(username));
    });
  }

  crl(): Promise<string> {
    return this.lock.run(async () => {
      await this.ensureCaLocked();
      return this.read(this.crlPath);
    });
  }

  /** The CA database, parsed. */
  listIndex(): Promise<IndexEntry[]> {
    return this.lock.run(async () => {
      await this.ensureCaLocked();
      return this.readIndex();
    });
  }

  // ---- internals (call only with the lock held) ----

  private clientBundlePath(username: string): string {
    return path.posix.join(this.clientsDir, `${username}.pem`);
  }

  private async clientLocked(username: string): Promise<IssuedCertificate> {
    await this.ensureCaLocked();
    const file = this.clientBundlePath(username);
    const stored = await this.readBundle(file);
    const info = stored ? await this.currentIfValid(stored.certificate, username, 'client') : null;
    if (stored && info) return { certificate: stored.certificate, privateKey: stored.privateKey, ...info };
    // Whatever else is valid under this name (an older certificate, one issued but never
    // bundled before a crash) is revoked, so a user holds exactly one valid certificate.
    const revoked = await this.revokeAllLocked(username, 'client');
    if (revoked > 0) await this.writeCrlLocked();
    const issued = await this.issueLocked(username, 'client', []);
    await this.host.writeFileAtomic(file, issued.privateKey + issued.certificate, 0o600);
    return issued;
  }

  private async ensureCaLocked(): Promise<void> {
    if (this.caReady && (await this.host.exists(this.caCert)) && (await this.host.exists(this.crlPath))) return;
    const { host } = this;
    await host.mkdirp(this.dir, 0o700);
    for (const d of [this.dbDir, path.posix.join(this.dbDir, 'certs'), this.clientsDir, this.serversDir, this.tmpDir]) await host.mkdirp(d, 0o700);
    await this.writeIfChanged(this.cnf, this.opensslConfig(), 0o600);
    await this.writeIfChanged(`${this.index}.attr`, 'unique_subject = no\n', 0o600);
    const hasKey = await host.exists(this.caKey);
    const hasCert = await host.exists(this.caCert);
    if (hasKey !== hasCert) {
      throw unavailable(
        `the panel CA in ${this.dir} on ${host.id} is incomplete (${hasKey ? 'ca.crt' : 'ca.key'} is missing); restore it or remove both files to start a new CA`,
      );
    }
    if (!hasKey) {
      // A new CA: certificates in an old database or old bundles belong to another CA.
      await host.writeFileAtomic(this.index, '', 0o600);
      for (const d of [this.clientsDir, this.serversDir]) {
        await host.remove(d);
        await host.mkdirp(d, 0o700);
      }
      await host.remove(this.crlPath);
      const keyPem = await this.generateKey();
      await host.writeFileAtomic(this.caKey, keyPem, 0o600);
      const { stdout } = await this.run([
        'req', '-config', this.cnf, '-x509', '-new', '-key', this.caKey, '-subj', `/CN=${this.caCommonName}`,
        '-days', String(this.caDays), '-sha256', '-extensions', 'v3_ca',
      ]);
      await host.writeFileAtomic(this.caCert, pemBlocks(stdout, 'CERTIFICATE', 'openssl req -x509'), 0o644);
    }
    if (!(await host.exists(this.index))) await host.writeFileAtomic(this.index, '', 0o600);
    const crlnumber = path.posix.join(this.dbDir, 'crlnumber');
    if (!(await host.exists(crlnumber))) await host.writeFileAtomic(crlnumber, '1000\n', 0o600);
    if (!(await host.exists(this.crlPath))) await this.writeCrlLocked();
    this.caReady = true;
  }

  /** New key + CSR + `openssl ca` signature; the caller stores the result. */
  private async issueLocked(commonName: string, kind: CertificateKind, san: readonly string[]): Promise<IssuedCertificate> {
    const id = `${kind}.${commonName}.${process.pid}.${++this.tmpCounter}`;
    const keyFile = path.posix.join(this.tmpDir, `${id}.key`);
    const csrFile = path.posix.join(this.tmpDir, `${id}.csr`);
    const extFile = path.posix.join(this.tmpDir, `${id}.ext`);
    try {
      const privateKey = await this.generateKey();
      await this.host.writeFileAtomic(keyFile, privateKey, 0o600);
      const csr = await this.run(['req', '-config', this.cnf, '-new', '-key', keyFile, '-subj', `/OU=${kind}/CN=${commonName}`]);
      await this.host.writeFileAtomic(csrFile, pemBlocks(csr.stdout, 'CERTIFICATE REQUEST', 'openssl req -new'), 0o600);
      // SANs differ per certificate, so the extensions come from a file written for this one.
      await this.host.writeFileAtomic(extFile, extensionsFor(kind, san), 0o600);
      const signed = await this.run([
        'ca', '-batch', '-config', this.cnf, '-in', csrFile, '-notext', '-extfile', extFile, '-extensions', 'ext', '-days', String(this.certDays),
      ]);
      const certificate = pemBlocks(signed.stdout, 'CERTIFICATE', 'openssl ca');
      const info = await this.certInfo(certificate);
      return { certificate, privateKey, serial: info.serial, notAfter: info.notAfter };
    } finally {
      for (const f of [keyFile, csrFile, extFile]) await this.host.remove(f).catch(() => undefined);
    }
  }

  /** Revokes every valid entry of this name and kind; returns how many. */
  private async revokeAllLocked(commonName: string, kind: CertificateKind): Promise<number> {
    const entries = (await this.readIndex()).filter((e) => e.status === 'V' && e.commonName === commonName && e.kind === kind);
    for (const e of entries) {
      const certFile = path.posix.join(this.dbDir, 'certs', `${e.serial}.pem`);
      await this.run(['ca', '-config', this.cnf, '-revoke', certFile, '-crl_reason', 'superseded']);
    }
    return entries.length;
  }

  private async writeCrlLocked(): Promise<void> {
    const { stdout } = await this.run(['ca', '-config', this.cnf, '-gencrl', '-crlexts', 'crl_ext']);
    await this.host.writeFileAtomic(this.crlPath, pemBlocks(stdout, 'X509 CRL', 'openssl ca -gencrl'), 0o644);
  }

  /** Serial and expiry when the certificate is listed valid, has this name and kind, and is not expiring soon. */
  private async currentIfValid(certPem: string, commonName: string, kind: CertificateKind): Promise<{ serial: string; notAfter: Date } | null> {
    let info: Awaited<ReturnType<OpensslPanelPki['certInfo']>>;
    try {
      info = await this.certInfo(certPem);
    } catch {
      return null;
    }
    if (info.commonName !== commonName) return null;
    if (info.notAfter.getTime() - this.clock.now().getTime() < this.renewBeforeMs) return null;
    const entry = (await this.readIndex()).find((e) => e.serial === info.serial);
    if (!entry || entry.status !== 'V' || entry.kind !== kind) return null;
    return { serial: info.serial, notAfter: info.notAfter };
  }

  private async certInfo(certPem: string): Promise<{ serial: string; notAfter: Date; commonName: string | undefined }> {
    const { stdout } = await this.run(['x509', '-noout', '-serial', '-enddate', '-subject', '-nameopt', 'RFC2253'], certPem);
    const serial = /^serial=([0-9A-Fa-f]+)$/m.exec(stdout)?.[1]?.toUpperCase();
    const end = /^notAfter=(.+)$/m.exec(stdout)?.[1];
    const subject = /^subject=(.*)$/m.exec(stdout)?.[1] ?? '';
    const notAfter = end ? new Date(end) : new Date(NaN);
    if (!serial || Number.isNaN(notAfter.getTime())) throw unavailable(`openssl x509 printed no serial/expiry: ${stdout.slice(0, 200)}`);
    const commonName = /(?:^|,)CN=([^,]+)/.exec(subject)?.[1];
    return { serial, notAfter, commonName };
  }

  private async readIndex(): Promise<IndexEntry[]> {
    let text: string;
    try {
      text = await this.read(this.index);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    return parseIndex(text);
  }

  private async readBundle(file: string): Promise<{ privateKey: string; certificate: string; san: string } | null> {
    let text: string;
    try {
      text = await this.read(file);
    } catch {
      return null;
    }
    const privateKey = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n?/.exec(text)?.[0];
    const certificate = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/.exec(text)?.[0];
    if (!privateKey || !certificate) return null;
    const san = text.startsWith(SAN_MARKER) ? text.slice(SAN_MARKER.length, text.indexOf('\n')) : '';
    return { privateKey: ensureNewline(privateKey), certificate: ensureNewline(certificate), san };
  }

  private async read(file: string): Promise<string> {
    return (await this.host.readFile(file)).toString('utf8');
  }

  private async writeIfChanged(file: string, content: string, mode: number): Promise<void> {
    try {
      if ((await this.read(file)) === content) return;
    } catch {
      /* missing: write it */
    }
    await this.host.writeFileAtomic(file, content, mode);
  }

  private async generateKey(): Promise<string> {
    const { stdout } = await this.run(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1']);
    return pemBlocks(stdout, 'PRIVATE KEY', 'openssl genpkey');
  }

  private async run(args: string[], stdin?: string) {
    try {
      return await runChecked(this.host, [this.openssl, ...args], { timeoutMs: 30_000, stdin });
    } catch (e) {
      if (e instanceof DomainError) throw e;
      throw unavailable(`openssl ${args[0]} failed on ${this.host.id}: ${(e as Error).message}`);
    }
  }

  /** Our own openssl config: nothing depends on the distribution's openssl.cnf. */
  private opensslConfig(): string {
    return [
      '# Managed by polygate: rewritten on start. Edits here are lost.',
      '[ ca ]',
      'default_ca = polygate_ca',
      '',
      '[ polygate_ca ]',
      `dir = ${this.dbDir}`,
      'database = $dir/index.txt',
      'new_certs_dir = $dir/certs',
      `certificate = ${this.caCert}`,
      `private_key = ${this.caKey}`,
      'crlnumber = $dir/crlnumber',
      'rand_serial = yes',
      'default_md = sha256',
      `default_days = ${this.certDays}`,
      'default_crl_days = 3650',
      'policy = policy_kind_cn',
      'unique_subject = no',
      'copy_extensions = none',
      'email_in_dn = no',
      '',
      '[ policy_kind_cn ]',
      'organizationalUnitName = supplied',
      'commonName = supplied',
      '',
      '[ req ]',
      'distinguished_name = req_dn',
      'prompt = no',
      '',
      '[ req_dn ]',
      'CN = polygate',
      '',
      '[ v3_ca ]',
      'basicConstraints = critical, CA:TRUE',
      'keyUsage = critical, keyCertSign, cRLSign',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid:always',
      '',
      '[ crl_ext ]',
      'authorityKeyIdentifier = keyid:always',
      '',
    ].join('\n');
  }
}

/** `DNS:…`/`IP:…` entries, checked (they go into an openssl config file) and sorted so the same set compares equal. */
function sanList(options: { dnsNames?: string[]; ipAddresses?: string[] }): string[] {
  const out: string[] = [];
  for (const d of options.dnsNames ?? []) {
    if (typeof d !== 'string' || !HOSTNAME_PATTERN.test(d) || d.startsWith('-') || d.startsWith('.') || d.includes('..')) {
      throw invalid(`server certificate DNS name must match ${HOSTNAME_PATTERN.source} (got ${JSON.stringify(d)})`);
    }
    out.push(`DNS:${d}`);
  }
  for (const ip of options.ipAddresses ?? []) {
    if (typeof ip !== 'string' || net.isIP(ip) === 0) throw invalid(`server certificate IP address is not an IP (got ${JSON.stringify(ip)})`);
    out.push(`IP:${ip}`);
  }
  return [...new Set(out)].sort();
}

function extensionsFor(kind: CertificateKind, san: readonly string[]): string {
  const lines = ['[ ext ]', 'basicConstraints = CA:FALSE', 'subjectKeyIdentifier = hash', 'authorityKeyIdentifier = keyid, issuer'];
  if (kind === 'server') {
    lines.push('keyUsage = critical, digitalSignature, keyAgreement', 'extendedKeyUsage = serverAuth');
  } else {
    lines.push('keyUsage = critical, digitalSignature', 'extendedKeyUsage = clientAuth');
  }
  if (san.length) lines.push(`subjectAltName = ${san.join(', ')}`);
  return lines.join('\n') + '\n';
}

/**
 * Parses openssl's index.txt: `status \t expiry \t revocation \t serial \t file \t subject`.
 * Expiry is UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ).
 */
export function parseIndex(text: string): IndexEntry[] {
  const out: IndexEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const f = line.split('\t');
    if (f.length < 6) continue;
    const status = f[0] as IndexEntry['status'];
    if (status !== 'V' && status !== 'R' && status !== 'E') continue;
    const subject = f.slice(5).join('\t');
    out.push({
      status,
      expires: parseAsn1Time(f[1]!),
      serial: f[3]!.toUpperCase(),
      subject,
      commonName: /(?:^|\/)CN=([^/]+)/.exec(subject)?.[1],
      kind: /(?:^|\/)OU=server(?:\/|$)/.test(subject) ? 'server' : 'client',
    });
  }
  return out;
}

function parseAsn1Time(t: string): Date {
  const m = /^(\d{2}|\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(t);
  if (!m) return new Date(NaN);
  let year = Number(m[1]);
  if (m[1]!.length === 2) year += year < 50 ? 2000 : 1900;
  return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
}

/** The PEM blocks of one type from a program's output (refuses output without one). */
function pemBlocks(text: string, type: string, what: string): string {
  const re = new RegExp(`-----BEGIN ${type}-----\\n[A-Za-z0-9+/=\\n]+-----END ${type}-----`, 'g');
  const blocks = text.replace(/\r\n/g, '\n').match(re);
  if (!blocks) throw unavailable(`${what} printed no ${type}`);
  return blocks.join('\n') + '\n';
}

const ensureNewline = (s: string) => (s.endsWith('\n') ? s : `${s}\n`);
