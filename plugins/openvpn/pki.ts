import path from 'node:path';
import { DomainError, unavailable } from '../../core';
import { runChecked, type Host } from '../../core';
import { assertCommonName, assertIntRange, assertSafePath, assertUsername } from './validate';

/** Paths of the files OpenVPN's server config points at. */
export interface PkiPaths {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  crl: string;
  tlsCrypt: string;
}

/** Everything a client profile embeds for one user. */
export interface ClientMaterial {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** The certificate a user holds now. */
export interface IssuedCert {
  username: string;
  /** Upper-case hex, as in openssl's index.txt. */
  serial: string;
  notAfter: Date;
  /** True when an existing valid certificate was returned instead of a new one. */
  reused: boolean;
}

export interface PkiOptions {
  host: Host;
  /** Absolute directory on the host, e.g. `<stateDir>/pki`; created 0700. */
  dir: string;
  caCommonName?: string;
  serverCommonName?: string;
  /** Validity of client and server certificates; default 3650 days. */
  certDays?: number;
  /** Validity of the CA; default 7300 days. */
  caDays?: number;
  /** A certificate expiring sooner than this is replaced by issueClient/ensureServerCert; default 30. */
  renewBeforeDays?: number;
  /** Binaries on the host; default `openssl` and `openvpn` from PATH. */
  opensslPath?: string;
  openvpnPath?: string;
}

/** One row of openssl's CA database (index.txt). */
export interface IndexEntry {
  status: 'V' | 'R' | 'E';
  expires: Date;
  serial: string;
  subject: string;
  commonName: string | undefined;
}

const CA_DEFAULT_CN = 'polygate-ca';
const SERVER_DEFAULT_CN = 'polygate-server';
const DAY_MS = 86_400_000;

/**
 * A small certificate authority for one OpenVPN server, kept in a directory on the host
 * and driven by `openssl` through argv (never a shell). EC prime256v1 keys. The CA database
 * is openssl's own (`openssl ca` with index.txt), so revocation and CRLs are openssl's.
 *
 * Crash safety: every key + certificate pair a caller uses is written as one bundle file
 * with `writeFileAtomic` (key files 0600), so a crash never leaves a key beside someone
 * else's certificate; a certificate issued but never bundled is revoked on the next issue.
 *
 * Operations are serialized in-process (one openssl database, one writer).
 *
 * @example
 * const pki = new Pki({ host, dir: `${ctx.stateDir}/pki` });
 * await pki.ensureServer();               // CA, server cert, CRL, tls-crypt key
 * const { caPem, certPem, keyPem } = await pki.clientMaterial('alice');
 * await pki.reissueClient('alice');       // old cert revoked, listed in crl.pem
 */
export class Pki {
  readonly paths: PkiPaths;
  readonly caCommonName: string;
  readonly serverCommonName: string;
  private readonly host: Host;
  private readonly certDays: number;
  private readonly caDays: number;
  private readonly renewBeforeMs: number;
  private readonly openssl: string;
  private readonly openvpn: string;
  private readonly dbDir: string;
  private readonly clientsDir: string;
  private readonly tmpDir: string;
  private readonly cnf: string;
  private readonly index: string;
  private lock: Promise<unknown> = Promise.resolve();
  private caReady = false;

  constructor(options: PkiOptions) {
    this.host = options.host;
    const dir = assertSafePath(options.dir, 'PKI directory');
    this.caCommonName = assertCommonName(options.caCommonName ?? CA_DEFAULT_CN, 'CA common name');
    this.serverCommonName = assertCommonName(options.serverCommonName ?? SERVER_DEFAULT_CN, 'server common name');
    this.certDays = assertIntRange(options.certDays ?? 3650, 1, 36500, 'certDays');
    this.caDays = assertIntRange(options.caDays ?? 7300, 1, 36500, 'caDays');
    this.renewBeforeMs = assertIntRange(options.renewBeforeDays ?? 30, 0, 3650, 'renewBeforeDays') * DAY_MS;
    this.openssl = options.opensslPath ?? 'openssl';
    this.openvpn = options.openvpnPath ?? 'openvpn';
    this.paths = {
      dir,
      caCert: path.posix.join(dir, 'ca.crt'),
      caKey: path.posix.join(dir, 'ca.key'),
      serverCert: path.posix.join(dir, 'server.crt'),
      serverKey: path.posix.join(dir, 'server.key'),
      crl: path.posix.join(dir, 'crl.pem'),
      tlsCrypt: path.posix.join(dir, 'tls-crypt.key'),
    };
    this.dbDir = path.posix.join(dir, 'db');
    this.clientsDir = path.posix.join(dir, 'clients');
    this.tmpDir = path.posix.join(dir, 'tmp');
    this.cnf = path.posix.join(this.dbDir, 'openssl.cnf');
    this.index = path.posix.join(this.dbDir, 'index.txt');
  }

  /**
   * Creates the directory layout, openssl's database and config, the CA (if neither its key
   * nor its certificate exists) and an initial CRL. Refuses to replace a CA of which only
   * one half is missing: that would silently invalidate every issued profile.
   */
  ensureCa(): Promise<void> {
    return this.serialized(() => this.ensureCaLocked());
  }

  /** The server's certificate (CN = serverCommonName, EKU serverAuth); reissued when invalid or expiring. */
  ensureServerCert(): Promise<IssuedCert> {
    return this.serialized(async () => {
      await this.ensureCaLocked();
      const bundlePath = path.posix.join(this.dbDir, 'server.pem');
      let bundle = await this.readBundle(bundlePath);
      let info = bundle ? await this.currentIfValid(bundle.certPem, this.serverCommonName) : null;
      let reused = true;
      if (!info) {
        await this.revokeAllLocked(this.serverCommonName);
        await this.writeCrlLocked();
        const issued = await this.issueLocked(this.serverCommonName, 'server_ext');
        await this.host.writeFileAtomic(bundlePath, issued.keyPem + issued.certPem, 0o600);
        bundle = { keyPem: issued.keyPem, certPem: issued.certPem };
        info = { serial: issued.serial, notAfter: issued.notAfter };
        reused = false;
      }
      // The bundle is the truth; the two files OpenVPN reads are derived from it.
      await this.writeIfChanged(this.paths.serverKey, bundle!.keyPem, 0o600);
      await this.writeIfChanged(this.paths.serverCert, bundle!.certPem, 0o644);
      return { username: this.serverCommonName, serial: info.serial, notAfter: info.notAfter, reused };
    });
  }

  /** The tls-crypt static key (`openvpn --genkey secret`), created once, mode 0600. */
  ensureTlsCryptKey(): Promise<void> {
    return this.serialized(async () => {
      await this.ensureCaLocked();
      if (await this.host.exists(this.paths.tlsCrypt)) return;
      const { stdout } = await runChecked(this.host, [this.openvpn, '--genkey', 'secret'], { timeoutMs: 30_000 });
      if (!/-----BEGIN OpenVPN Static key V1-----[\s\S]+-----END OpenVPN Static key V1-----/.test(stdout)) {
        throw unavailable(`openvpn --genkey on ${this.host.id} did not print a static key`);
      }
      await this.host.writeFileAtomic(this.paths.tlsCrypt, stdout, 0o600);
    });
  }

  /** CA, server certificate, CRL and tls-crypt key: everything a server config points at. */
  async ensureServer(): Promise<PkiPaths> {
    await this.ensureCa();
    await this.ensureServerCert();
    await this.ensureTlsCryptKey();
    return this.paths;
  }

  /**
   * The user's certificate (CN = username): the existing one when it is still valid (listed
   * `V` in the database and not expiring within renewBeforeDays), otherwise a new one (any
   * older certificate of that name is revoked first). Idempotent.
   */
  issueClient(username: string): Promise<IssuedCert> {
    assertUsername(username);
    return this.serialized(() => this.issueClientLocked(username, false));
  }

  /** Revokes every certificate of the user, publishes the CRL, and issues a new one. */
  reissueClient(username: string): Promise<IssuedCert> {
    assertUsername(username);
    return this.serialized(() => this.issueClientLocked(username, true));
  }

  /**
   * Revokes every valid certificate of the user, publishes the CRL and forgets the user's
   * key. Returns how many certificates were revoked (0 when the user had none).
   */
  revokeClient(username: string): Promise<number> {
    assertUsername(username);
    return this.serialized(async () => {
      await this.ensureCaLocked();
      const revoked = await this.revokeAllLocked(username);
      await this.writeCrlLocked();
      await this.host.remove(this.bundlePath(username));
      return revoked;
    });
  }

  /** The current CRL (PEM), generated if missing. */
  crlPem(): Promise<string> {
    return this.serialized(async () => {
      await this.ensureCaLocked();
      return (await this.host.readFile(this.paths.crl)).toString('utf8');
    });
  }

  /** Publishes a fresh CRL (e.g. to push its next-update date forward). */
  refreshCrl(): Promise<void> {
    return this.serialized(async () => {
      await this.ensureCaLocked();
      await this.writeCrlLocked();
    });
  }

  caPem(): Promise<string> {
    return this.serialized(async () => {
      await this.ensureCaLocked();
      return (await this.host.readFile(this.paths.caCert)).toString('utf8');
    });
  }

  tlsCryptKey(): Promise<string> {
    return this.ensureTlsCryptKey().then(async () => (await this.host.readFile(this.paths.tlsCrypt)).toString('utf8'));
  }

  /** CA, certificate and key for the user's profile; issues the certificate when needed. */
  clientMaterial(username: string): Promise<ClientMaterial> {
    assertUsername(username);
    return this.serialized(async () => {
      await this.issueClientLocked(username, false);
      const bundle = await this.readBundle(this.bundlePath(username));
      if (!bundle) throw unavailable(`certificate bundle of ${username} vanished on ${this.host.id}`);
      const caPem = (await this.host.readFile(this.paths.caCert)).toString('utf8');
      return { caPem, certPem: bundle.certPem, keyPem: bundle.keyPem };
    });
  }

  /** The CA database, parsed (for checks and tests). */
  listIndex(): Promise<IndexEntry[]> {
    return this.serialized(async () => {
      await this.ensureCaLocked();
      return this.readIndex();
    });
  }

  // ---- internals (call only with the lock held) ----

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  private bundlePath(username: string): string {
    return path.posix.join(this.clientsDir, `${username}.pem`);
  }

  private async ensureCaLocked(): Promise<void> {
    if (this.caReady && (await this.host.exists(this.paths.caCert)) && (await this.host.exists(this.paths.crl))) return;
    const { host, paths } = this;
    await host.mkdirp(paths.dir, 0o700);
    for (const d of [this.dbDir, path.posix.join(this.dbDir, 'certs'), this.clientsDir, this.tmpDir]) await host.mkdirp(d, 0o700);
    await this.writeIfChanged(this.cnf, this.opensslConfig(), 0o600);
    await this.writeIfChanged(`${this.index}.attr`, 'unique_subject = no\n', 0o600);
    const hasKey = await host.exists(paths.caKey);
    const hasCert = await host.exists(paths.caCert);
    if (hasKey !== hasCert) {
      throw unavailable(
        `the OpenVPN CA in ${paths.dir} on ${host.id} is incomplete (${hasKey ? 'ca.crt' : 'ca.key'} is missing); restore it or remove both files to start a new CA`,
      );
    }
    if (!hasKey) {
      // A new CA: certificates in an old database or old bundles belong to another CA.
      await host.writeFileAtomic(this.index, '', 0o600);
      await host.remove(this.clientsDir);
      await host.mkdirp(this.clientsDir, 0o700);
      await host.remove(path.posix.join(this.dbDir, 'server.pem'));
      await host.remove(paths.crl);
      const keyPem = await this.generateKey();
      await host.writeFileAtomic(paths.caKey, keyPem, 0o600);
      const { stdout } = await this.openssl_([
        'req', '-config', this.cnf, '-x509', '-new', '-key', paths.caKey, '-subj', `/CN=${this.caCommonName}`,
        '-days', String(this.caDays), '-sha256', '-extensions', 'v3_ca',
      ]);
      await host.writeFileAtomic(paths.caCert, pemBlocks(stdout, 'CERTIFICATE', 'openssl req -x509'), 0o644);
    }
    if (!(await host.exists(this.index))) await host.writeFileAtomic(this.index, '', 0o600);
    if (!(await host.exists(path.posix.join(this.dbDir, 'crlnumber')))) await host.writeFileAtomic(path.posix.join(this.dbDir, 'crlnumber'), '1000\n', 0o600);
    if (!(await host.exists(paths.crl))) await this.writeCrlLocked();
    this.caReady = true;
  }

  private async issueClientLocked(username: string, forceNew: boolean): Promise<IssuedCert> {
    await this.ensureCaLocked();
    const bundlePath = this.bundlePath(username);
    if (!forceNew) {
      const bundle = await this.readBundle(bundlePath);
      const info = bundle ? await this.currentIfValid(bundle.certPem, username) : null;
      if (info) return { username, serial: info.serial, notAfter: info.notAfter, reused: true };
    }
    // Whatever else is valid under this name (an older cert, one issued but never bundled
    // before a crash) is revoked, so a user holds exactly one valid certificate.
    const revoked = await this.revokeAllLocked(username);
    if (revoked > 0 || forceNew) await this.writeCrlLocked();
    const issued = await this.issueLocked(username, 'client_ext');
    await this.host.writeFileAtomic(bundlePath, issued.keyPem + issued.certPem, 0o600);
    return { username, serial: issued.serial, notAfter: issued.notAfter, reused: false };
  }

  /** New key + CSR + `openssl ca` signature. Returns PEMs; the caller stores them. */
  private async issueLocked(commonName: string, extensions: 'client_ext' | 'server_ext') {
    const id = `${commonName}.${process.pid}.${Date.now()}`;
    const keyFile = path.posix.join(this.tmpDir, `${id}.key`);
    const csrFile = path.posix.join(this.tmpDir, `${id}.csr`);
    try {
      const keyPem = await this.generateKey();
      await this.host.writeFileAtomic(keyFile, keyPem, 0o600);
      const csr = await this.openssl_(['req', '-config', this.cnf, '-new', '-key', keyFile, '-subj', `/CN=${commonName}`]);
      await this.host.writeFileAtomic(csrFile, pemBlocks(csr.stdout, 'CERTIFICATE REQUEST', 'openssl req -new'), 0o600);
      const signed = await this.openssl_([
        'ca', '-batch', '-config', this.cnf, '-in', csrFile, '-notext', '-extensions', extensions, '-days', String(this.certDays),
      ]);
      const certPem = pemBlocks(signed.stdout, 'CERTIFICATE', 'openssl ca');
      const info = await this.certInfo(certPem);
      return { keyPem, certPem, serial: info.serial, notAfter: info.notAfter };
    } finally {
      await this.host.remove(keyFile).catch(() => undefined);
      await this.host.remove(csrFile).catch(() => undefined);
    }
  }

  /** Revokes every `V` entry whose CN is `commonName`; returns the count. */
  private async revokeAllLocked(commonName: string): Promise<number> {
    const entries = (await this.readIndex()).filter((e) => e.status === 'V' && e.commonName === commonName);
    for (const e of entries) {
      const certFile = path.posix.join(this.dbDir, 'certs', `${e.serial}.pem`);
      await this.openssl_(['ca', '-config', this.cnf, '-revoke', certFile, '-crl_reason', 'superseded']);
    }
    return entries.length;
  }

  private async writeCrlLocked(): Promise<void> {
    const { stdout } = await this.openssl_(['ca', '-config', this.cnf, '-gencrl', '-crlexts', 'crl_ext']);
    await this.host.writeFileAtomic(this.paths.crl, pemBlocks(stdout, 'X509 CRL', 'openssl ca -gencrl'), 0o644);
  }

  /** Serial and expiry when the certificate is listed valid, has this CN and is not expiring soon. */
  private async currentIfValid(certPem: string, commonName: string): Promise<{ serial: string; notAfter: Date } | null> {
    let info: { serial: string; notAfter: Date; commonName: string | undefined };
    try {
      info = await this.certInfo(certPem);
    } catch {
      return null;
    }
    if (info.commonName !== commonName) return null;
    if (info.notAfter.getTime() - Date.now() < this.renewBeforeMs) return null;
    const entry = (await this.readIndex()).find((e) => e.serial === info.serial);
    if (!entry || entry.status !== 'V') return null;
    return { serial: info.serial, notAfter: info.notAfter };
  }

  private async certInfo(certPem: string): Promise<{ serial: string; notAfter: Date; commonName: string | undefined }> {
    const { stdout } = await this.openssl_(['x509', '-noout', '-serial', '-enddate', '-subject', '-nameopt', 'RFC2253'], certPem);
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
      text = (await this.host.readFile(this.index)).toString('utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    return parseIndex(text);
  }

  private async readBundle(file: string): Promise<{ keyPem: string; certPem: string } | null> {
    let text: string;
    try {
      text = (await this.host.readFile(file)).toString('utf8');
    } catch {
      return null;
    }
    const keyPem = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n?/.exec(text)?.[0];
    const certPem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/.exec(text)?.[0];
    if (!keyPem || !certPem) return null;
    return { keyPem: ensureNewline(keyPem), certPem: ensureNewline(certPem) };
  }

  private async writeIfChanged(file: string, content: string, mode: number): Promise<void> {
    try {
      if ((await this.host.readFile(file)).toString('utf8') === content) return;
    } catch {
      /* missing: write it */
    }
    await this.host.writeFileAtomic(file, content, mode);
  }

  private async generateKey(): Promise<string> {
    const { stdout } = await this.openssl_(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1']);
    return pemBlocks(stdout, 'PRIVATE KEY', 'openssl genpkey');
  }

  private async openssl_(args: string[], stdin?: string) {
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
      `certificate = ${this.paths.caCert}`,
      `private_key = ${this.paths.caKey}`,
      'crlnumber = $dir/crlnumber',
      'rand_serial = yes',
      'default_md = sha256',
      `default_days = ${this.certDays}`,
      'default_crl_days = 3650',
      'policy = policy_cn_only',
      'unique_subject = no',
      'copy_extensions = none',
      'email_in_dn = no',
      '',
      '[ policy_cn_only ]',
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
      '[ server_ext ]',
      'basicConstraints = CA:FALSE',
      'keyUsage = critical, digitalSignature, keyAgreement',
      'extendedKeyUsage = serverAuth',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid, issuer',
      '',
      '[ client_ext ]',
      'basicConstraints = CA:FALSE',
      'keyUsage = critical, digitalSignature',
      'extendedKeyUsage = clientAuth',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid, issuer',
      '',
      '[ crl_ext ]',
      'authorityKeyIdentifier = keyid:always',
      '',
    ].join('\n');
  }
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
