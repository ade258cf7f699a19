import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseStatusText } from '../../core';
import { DomainError } from '../../core/errors';
import { parseSha512Crypt, sha512Crypt, sha512CryptMatches } from '../../plugins/ocserv/crypt';
import {
  certificatePin,
  ENDED_RECORD_RE,
  parseEndedRecord,
  parsePasswordFile,
  renderClientProfile,
  renderDisconnectScript,
  renderPasswordFile,
  renderPerUserConfig,
  renderRunWrapper,
  renderServerConfig,
  type OcservConfigInput,
} from '../../plugins/ocserv/render';

/*
 * The pure parts of the ocserv plugin, on captured real output (test/fixtures/ocserv/README.md).
 * Proves: SHA-512-crypt equals what `openssl passwd -6` (glibc crypt) makes, so ocserv's plain
 * auth accepts our hashes; the password file keeps unchanged hashes (idempotent apply) and
 * refuses what could break a line; the server config we ship; the native parser reads
 * ocserv's real JSON (ID, Username, RX/TX, Remote IP); disconnect records round-trip; the
 * certificate pin equals openssl's.
 */
const fixture = (name: string) => readFileSync(path.join(__dirname, '../fixtures/ocserv', name), 'utf8');

function expectInvalid(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(DomainError);
    expect((e as DomainError).kind).to.equal('invalid');
    expect((e as DomainError).message).to.match(pattern);
    return;
  }
  expect.fail(`expected an invalid DomainError matching ${pattern}`);
}

describe('ocserv: SHA-512-crypt', () => {
  it('matches `openssl passwd -6 -salt …` byte for byte (short, 64+ byte and 2-char-salt cases)', () => {
    expect(sha512Crypt('pw1', 'saltstring123456')).to.equal('$6$saltstring123456$G8Vm5SqgJ1gjIMBG4fd1zBgxErDoaFnZDr7exRQpPYxkiHJ310cQy5dUW/VtCsMx8KYA/r2oCkMN.a84vSQNv1');
    expect(sha512Crypt('Alice-pass1', 'saltstring123456')).to.equal('$6$saltstring123456$jiMgq.RigjOS3nLcfB0lPfCE9xTPRW4jY.Bze0v39ZZ4sVbtLi8SXqsjU1aU8sOxJ3/NQYvh9vZ9TT0jb8SoY0');
    expect(sha512Crypt('a-long-password-that-is-longer-than-sixty-four-bytes-to-check-the-loop-0123456789', 'saltstring123456')).to.equal(
      '$6$saltstring123456$yNwdVj6O5RkbB0lk4yGwq82Lmol1gQ9OZnhhsph5lFBFe1v9QUH.F7elBG9ztFljQZ8fbfInAkqKpopHDKMCx0',
    );
    expect(sha512Crypt('x', 'ab')).to.equal('$6$ab$jnZj29NS/hK2GaouP6AGMIBwD6owZFRejcn9QRdlwSjZaVr.fR9dH2TXrKL/PaacUXwtGfI.4O9zxvy2k6fbE1');
  });

  it('checks a password against a hash, and reads salt and rounds back', () => {
    const h = sha512Crypt('s3cret', 'abcdefgh', 6000);
    expect(h.startsWith('$6$rounds=6000$abcdefgh$')).to.equal(true);
    expect(parseSha512Crypt(h)).to.deep.equal({ salt: 'abcdefgh', rounds: 6000 });
    expect(sha512CryptMatches('s3cret', h)).to.equal(true);
    expect(sha512CryptMatches('s3cret!', h)).to.equal(false);
    expect(sha512CryptMatches('s3cret', '$5$abc$xyz')).to.equal(false);
  });
});

describe('ocserv: password file', () => {
  let n = 0;
  const salt = () => `salt${n++}`;

  it('lists exactly the users, sorted, as `user:*:$6$…`, each hash checking its password', () => {
    const text = renderPasswordFile([{ username: 'bob_2', password: 'pw-b' }, { username: 'alice', password: 'pw:a\nx' }], new Map(), salt);
    const lines = text.trimEnd().split('\n');
    expect(lines.map((l) => l.split(':').slice(0, 2).join(':'))).to.deep.equal(['alice:*', 'bob_2:*']);
    const hashes = parsePasswordFile(text);
    expect(sha512CryptMatches('pw:a\nx', hashes.get('alice')!)).to.equal(true);
    expect(sha512CryptMatches('pw-b', hashes.get('bob_2')!)).to.equal(true);
    expect(renderPasswordFile([], new Map(), salt)).to.equal('');
  });

  it('keeps the hash of an unchanged password (same bytes on a second apply) and rehashes a changed one', () => {
    const first = renderPasswordFile([{ username: 'alice', password: 'one' }, { username: 'bobby', password: 'two' }], new Map(), salt);
    const again = renderPasswordFile([{ username: 'alice', password: 'one' }, { username: 'bobby', password: 'two' }], parsePasswordFile(first), salt);
    expect(again).to.equal(first);
    const changed = parsePasswordFile(renderPasswordFile([{ username: 'alice', password: 'uno' }, { username: 'bobby', password: 'two' }], parsePasswordFile(first), salt));
    expect(changed.get('alice')).to.not.equal(parsePasswordFile(first).get('alice'));
    expect(sha512CryptMatches('uno', changed.get('alice')!)).to.equal(true);
    expect(changed.get('bobby')).to.equal(parsePasswordFile(first).get('bobby'));
  });

  it('refuses names that could break the file, empty passwords and duplicates', () => {
    expectInvalid(() => renderPasswordFile([{ username: 'eve:*:x', password: 'p' }], new Map(), salt), /username/);
    expectInvalid(() => renderPasswordFile([{ username: 'eve\nroot', password: 'p' }], new Map(), salt), /username/);
    expectInvalid(() => renderPasswordFile([{ username: 'alice', password: '' }], new Map(), salt), /password of alice/);
    expectInvalid(() => renderPasswordFile([{ username: 'alice', password: 'a' }, { username: 'alice', password: 'b' }], new Map(), salt), /twice/);
  });

  it('per-user file: max-same-clients only when given', () => {
    expect(renderPerUserConfig({})).to.equal('# Written by polygate.\n');
    expect(renderPerUserConfig({ maxSameClients: 2 })).to.equal('# Written by polygate.\nmax-same-clients = 2\n');
    expectInvalid(() => renderPerUserConfig({ maxSameClients: 0 }), /maxSameClients/);
  });
});

describe('ocserv: server config', () => {
  const base: OcservConfigInput = {
    tcpPort: 443,
    udpPort: 443,
    passwdPath: '/var/lib/pg/ocserv/ocpasswd',
    perUserDir: '/var/lib/pg/ocserv/per-user',
    disconnectScript: '/var/lib/pg/ocserv/disconnect.sh',
    socketPath: '/var/lib/pg/ocserv/run/ocserv.sock',
    occtlSocketPath: '/var/lib/pg/ocserv/run/occtl.sock',
    pidPath: '/var/lib/pg/ocserv/run/ocserv.pid',
    certPath: '/var/lib/pg/ocserv/pki/server.crt',
    keyPath: '/var/lib/pg/ocserv/pki/server.key',
    runAsUser: 'nobody',
    runAsGroup: 'nogroup',
    isolateWorkers: true,
    maxClients: 0,
    maxSameClients: 0,
    device: 'pgoc',
    network: '10.12.0.0',
    netmask: '255.255.0.0',
    dns: ['1.1.1.1'],
    routes: [],
    keepaliveSec: 300,
    dpdSec: 60,
    cookieTimeoutSec: 300,
    maxBanScore: 80,
    logLevel: 1,
  };

  it('is the config we ship', () => {
    expect(renderServerConfig(base)).to.equal(
      [
        '# Written by polygate; rewritten on every change.',
        'auth = "plain[passwd=/var/lib/pg/ocserv/ocpasswd]"',
        'tcp-port = 443',
        'udp-port = 443',
        'run-as-user = nobody',
        'run-as-group = nogroup',
        'socket-file = /var/lib/pg/ocserv/run/ocserv.sock',
        'occtl-socket-file = /var/lib/pg/ocserv/run/occtl.sock',
        'use-occtl = true',
        'pid-file = /var/lib/pg/ocserv/run/ocserv.pid',
        'server-cert = /var/lib/pg/ocserv/pki/server.crt',
        'server-key = /var/lib/pg/ocserv/pki/server.key',
        'isolate-workers = true',
        'max-clients = 0',
        'max-same-clients = 0',
        'config-per-user = /var/lib/pg/ocserv/per-user/',
        'disconnect-script = /var/lib/pg/ocserv/disconnect.sh',
        'keepalive = 300',
        'dpd = 60',
        'mobile-dpd = 60',
        'try-mtu-discovery = false',
        'auth-timeout = 240',
        'cookie-timeout = 300',
        'max-ban-score = 80',
        'device = pgoc',
        'predictable-ips = true',
        'ipv4-network = 10.12.0.0',
        'ipv4-netmask = 255.255.0.0',
        'ping-leases = false',
        'cisco-client-compat = true',
        'dtls-legacy = true',
        'log-level = 1',
        'dns = 1.1.1.1',
        '',
      ].join('\n'),
    );
  });

  it('no udp-port without a UDP listener; listen-host and routes when given', () => {
    const { udpPort: _u, ...tcpOnly } = base;
    const text = renderServerConfig({ ...tcpOnly, listenHost: '10.0.0.1', routes: ['10.12.0.0/16'] });
    expect(text).to.not.match(/udp-port/);
    expect(text).to.match(/^listen-host = 10\.0\.0\.1$/m).and.match(/^route = 10\.12\.0\.0\/16$/m);
  });

  it('refuses values that could add a line', () => {
    expectInvalid(() => renderServerConfig({ ...base, passwdPath: '/x]"\nauth = "pam' }), /passwdPath/);
    expectInvalid(() => renderServerConfig({ ...base, dns: ['1.1.1.1\nroute = default'] }), /dns/);
    expectInvalid(() => renderServerConfig({ ...base, routes: ['default'] }), /route/);
    expectInvalid(() => renderServerConfig({ ...base, device: 'a b' }), /device/);
    expectInvalid(() => renderServerConfig({ ...base, tcpPort: 0 }), /tcpPort/);
  });
});

describe('ocserv: status and records from real output', () => {
  const parse = (text: string) => parseStatusText({ format: 'ocserv-json', protocol: 'cisco', text });

  it('the native parser reads occtl --json show users: ID, Username, Remote IP, RX (upload) and TX (download)', () => {
    const one = parse(fixture('show-users-one.json'));
    expect(one.complete).to.equal(true);
    expect(one.sessions).to.deep.equal([{ id: '10407', username: 'alice', remoteAddress: '10.99.77.2', rxBytes: 468, txBytes: 772, connectedAt: 0 }]);
    const two = parse(fixture('show-users-two.json'));
    expect(two.complete).to.equal(true);
    expect(two.sessions.map((s) => [s.id, s.username, s.rxBytes, s.txBytes])).to.deep.equal([
      ['13125', 'bob', 48, 352],
      ['13113', 'alice', 1728, 2032],
    ]);
    const empty = parse(fixture('show-users-empty.json'));
    expect(empty).to.deep.equal({ sessions: [], complete: true });
  });

  it('a disconnect record made from ocserv\'s real script environment round-trips', () => {
    const env = Object.fromEntries(fixture('disconnect-env.txt').trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    // What the script's printf writes for that environment.
    const text = ['v1', 'abcd1234', env.ID, env.USERNAME, env.STATS_BYTES_IN, env.STATS_BYTES_OUT, env.STATS_DURATION, env.IP_REAL, env.REASON, ''].join('\n');
    expect(parseEndedRecord(text)).to.deep.equal({
      runId: 'abcd1234',
      id: '10407',
      username: 'alice',
      rxBytes: 206164,
      txBytes: 206468,
      durationSec: 19,
      remoteAddress: '10.99.77.2',
      reason: 'disconnect',
    });
    expect(ENDED_RECORD_RE.test('abcd1234-10407.rec')).to.equal(true);
    expect(ENDED_RECORD_RE.test('.tmp-abcd1234-10407')).to.equal(false);
    expect(parseEndedRecord(text.replace('206164', '20x'))).to.equal(null);
    expect(parseEndedRecord('v1\nabcd1234\n10407\n')).to.equal(null);
  });

  it('the disconnect script takes the run from ocserv\'s environment, checks ocserv\'s numbers and writes atomically', () => {
    const s = renderDisconnectScript({ endedDir: '/var/lib/pg/ocserv/ended' });
    expect(s).to.match(/^#!\/bin\/sh\n/).and.match(/^run=\$POLYGATE_OCSERV_RUN$/m).and.match(/mv -f "\$tmp" "\/var\/lib\/pg\/ocserv\/ended\/\$run-\$ID\.rec"/);
    expectInvalid(() => renderDisconnectScript({ endedDir: '/x;rm' }), /endedDir/);
  });

  it('records of a run are named with its epoch (<pid>.<start time>); those of older versions (random ids) still read', () => {
    expect(ENDED_RECORD_RE.test('4242.1771-10407.rec')).to.equal(true);
    expect(ENDED_RECORD_RE.test('abcd1234-10407.rec')).to.equal(true);
    expect(ENDED_RECORD_RE.test('4242.-10407.rec')).to.equal(false);
    expect(ENDED_RECORD_RE.test('.tmp-4242.1771-10407')).to.equal(false);
    expect(parseEndedRecord(['v1', '4242.1771', '7', 'alice', '1', '2', '3', '10.0.0.2', 'disconnect', ''].join('\n'))).to.include({ runId: '4242.1771', id: '7' });
    expect(parseEndedRecord(['v1', '4242.17.71', '7', 'alice', '1', '2', '3', '10.0.0.2', 'disconnect', ''].join('\n'))).to.equal(null);
  });

  it('the run wrapper keeps ocserv as its child and hands it the run\'s epoch', () => {
    const w = renderRunWrapper();
    expect(w).to.match(/^#!\/bin\/sh\n/).and.include('"$@" &').and.include('export POLYGATE_OCSERV_RUN').and.match(/trap .*kill -TERM "\$child".* TERM INT HUP/);
  });

  it('the certificate pin equals openssl\'s for the captured server certificate', () => {
    expect(certificatePin(fixture('server-cert.pem'))).to.equal('pin-sha256:6bNIo1OI+fXDrJfEFsoKLBfqyxn8DgeN2absluZR1KA=');
  });

  it('the client profile is an openconnect --config file with the pin, headed by the server in words', () => {
    const pin = 'pin-sha256:6bNIo1OI+fXDrJfEFsoKLBfqyxn8DgeN2absluZR1KA=';
    expect(renderClientProfile({ username: 'alice', servers: [{ host: 'vpn.example.com', port: 443 }], pin, title: 'alice @ main' })).to.equal(
      [
        '# Cisco AnyConnect: alice @ main',
        '# Server: https://vpn.example.com:443',
        '# Username: alice',
        `# Server certificate: ${pin}`,
        '# Apps: Cisco Secure Client (AnyConnect), OpenConnect GUI, or:',
        '#   openconnect --config <this file> <server>',
        'protocol=anyconnect',
        'user=alice',
        `servercert=${pin}`,
        '',
      ].join('\n'),
    );
    expectInvalid(() => renderClientProfile({ username: 'alice', servers: [{ host: 'a\nb', port: 443 }], pin, title: '' }), /server host/);
  });
});
