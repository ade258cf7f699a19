import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { DomainError } from '../../core/errors';
import { HostError } from '../../core/hosts/host';
import { LocalHost } from '../../core/hosts/local-host';
import { generateSshKeyPair, installAuthorizedKey, SshHost, sshPreflight, type SshConnectionOptions } from '../../core/hosts/ssh-host';
import { requirePrerequisite } from '../helpers/prereq';
import { freePort, sshdUnavailableReason, startSilentServer, startSshd, type SshdFixture } from '../helpers/sshd';

/*
 * A real OpenSSH server on 127.0.0.1 (test/helpers/sshd.ts: own config, own host key, free
 * high port, password auth for a throwaway user). Proves preflight error wording, argv
 * quoting for the remote shell, sftp atomic writes, forwarded streams, spawn, reconnect,
 * and key installation followed by key login.
 */

function rejection<T>(p: Promise<T>): Promise<Error> {
  return p.then(
    () => expect.fail('expected a rejection'),
    (e: unknown) => e as Error,
  );
}

async function waitFor(what: string, ms: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** True while /proc/<pid> exists and is not a zombie. */
async function running(pid: number): Promise<boolean> {
  try {
    return !/^\d+ \(.*\) Z/.test(await fs.readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function echo(stream: Duplex, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const timer = setTimeout(() => reject(new Error(`echo timed out; got ${JSON.stringify(got)}`)), 5000);
    stream.on('data', (c: Buffer) => {
      got += c.toString('utf8');
      if (Buffer.byteLength(got) >= Buffer.byteLength(payload)) {
        clearTimeout(timer);
        stream.end();
        resolve(got);
      }
    });
    stream.on('error', reject);
    stream.write(payload);
  });
}

describe('SshHost and sshPreflight (integration against a real sshd on 127.0.0.1)', function () {
  let sshd: SshdFixture | undefined;
  let port: number;
  let USER: string;
  let password: string;
  let dir: string;
  let home: string;
  let uid: number;
  const hosts: SshHost[] = [];
  let hostKeySha256: string;

  const options = (extra: Partial<SshConnectionOptions> = {}): SshConnectionOptions => ({
    host: '127.0.0.1',
    port,
    username: USER,
    password,
    timeoutMs: 10_000,
    ...extra,
  });
  const newHost = (extra: Partial<SshConnectionOptions> = {}) => {
    const h = new SshHost('node_test', options(extra));
    hosts.push(h);
    return h;
  };

  before(async function () {
    this.timeout(30_000);
    const reason = sshdUnavailableReason();
    requirePrerequisite(this, reason === null, `ssh integration: ${reason}`);
    sshd = await startSshd();
    ({ port, username: USER, password } = sshd);
    // The fingerprint OpenSSH's own tools compute for this server's key.
    const scanned = execFileSync('ssh-keyscan', ['-t', 'ed25519', '-p', String(port), '127.0.0.1'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
    hostKeySha256 = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', '-'], { input: scanned, encoding: 'utf8' }).split(' ')[1]!;
    expect(hostKeySha256).to.match(/^SHA256:[A-Za-z0-9+/]{43}$/);
    uid = Number(execFileSync('id', ['-u', USER], { encoding: 'utf8' }).trim());
    home = execFileSync('getent', ['passwd', USER], { encoding: 'utf8' }).split(':')[5]!;
    await fs.rm(path.join(home, '.ssh'), { recursive: true, force: true }); // start without keys
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pg-sshhost-'));
    await fs.chmod(dir, 0o755); // the test user must reach the unix socket inside
  });

  after(async function () {
    this.timeout(20_000);
    await Promise.all(hosts.map((h) => h.close().catch(() => undefined)));
    await sshd?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') console.log(`--- sshd log ---\n${(sshd?.log() ?? '').split('\n').slice(-30).join('\n')}`);
  });

  describe('sshPreflight', () => {
    it('authenticates, returns `uname -a` and the host key fingerprint to pin', async () => {
      const r = await sshPreflight({ host: '127.0.0.1', port, username: USER, password, timeoutMs: 10_000 });
      expect(r.uname).to.match(/^Linux \S+ /);
      expect(r.uname).to.equal(execFileSync('uname', ['-a'], { encoding: 'utf8' }).trim());
      expect(r.hostKeySha256).to.equal(hostKeySha256);
    });

    it('wrong password → invalid, "authentication failed for user@host"', async () => {
      const err = await rejection(sshPreflight({ host: '127.0.0.1', port, username: USER, password: 'wrong', timeoutMs: 10_000 }));
      expect(err).to.be.instanceOf(DomainError);
      expect((err as DomainError).kind).to.equal('invalid');
      expect(err.message).to.equal(`SSH preflight failed: authentication failed for ${USER}@127.0.0.1`);
    });

    it('closed port → "connection refused (host:port)"', async () => {
      const closed = await freePort();
      const err = await rejection(sshPreflight({ host: '127.0.0.1', port: closed, username: USER, password, timeoutMs: 5000 }));
      expect((err as DomainError).kind).to.equal('invalid');
      expect(err.message).to.equal(`SSH preflight failed: connection refused (127.0.0.1:${closed})`);
    });

    it('a server that never speaks SSH → "timed out after N ms connecting to host:port"', async () => {
      const silent = await startSilentServer();
      const silentPort = silent.port;
      try {
        const started = Date.now();
        const err = await rejection(sshPreflight({ host: '127.0.0.1', port: silentPort, username: USER, password, timeoutMs: 800 }));
        expect(Date.now() - started).to.be.below(5000);
        expect(err.message).to.equal(`SSH preflight failed: timed out after 800 ms connecting to 127.0.0.1:${silentPort}`);
      } finally {
        await silent.close();
      }
    });

    it('no credentials or a broken private key → a clear reason, no connection attempt hangs', async () => {
      const none = await rejection(sshPreflight({ host: '127.0.0.1', port, username: USER }));
      expect(none.message).to.equal('SSH preflight failed: neither a password nor a private key was given');
      const bad = await rejection(sshPreflight({ host: '127.0.0.1', port, username: USER, privateKey: 'not a key' }));
      expect(bad.message).to.match(/^SSH preflight failed: invalid private key/);
    });
  });

  describe('run', () => {
    it('passes nasty argv to the remote program literally (single-quoted for the remote shell)', async () => {
      const host = newHost();
      const nasty = [
        '$(id)',
        '`id`',
        "'; echo pwned",
        "it's",
        "''",
        '"double" \\back\\slash\\',
        'a b  c\t',
        'line1\nline2\n',
        '*',
        '~',
        '$HOME ${PATH}',
        '|&;<>(){}!#',
        '-n',
        'ünïcødé ✓ 日本語',
        '',
      ];
      for (const arg of nasty) {
        const r = await host.run(['printf', '%s', arg]);
        expect(r, `argument ${JSON.stringify(arg)}`).to.deep.equal({ code: 0, stdout: arg, stderr: '' });
      }
      const all = await host.run(['printf', '[%s]', ...nasty]);
      expect(all.stdout).to.equal(nasty.map((a) => `[${a}]`).join(''));
      const who = await host.run(['id', '-un']);
      expect(who.stdout.trim()).to.equal(USER);
    });

    it('returns the exit code from the channel exit event, with stdout/stderr, stdin, env and cwd', async () => {
      const host = newHost();
      expect(await host.run(['sh', '-c', 'echo out; echo err >&2; exit 42'])).to.deep.equal({ code: 42, stdout: 'out\n', stderr: 'err\n' });
      expect((await host.run(['cat'], { stdin: 'from stdin\n✓' })).stdout).to.equal('from stdin\n✓');
      expect((await host.run(['sh', '-c', 'printf %s "$PG_X"'], { env: { PG_X: "$(id) 'q'" } })).stdout).to.equal("$(id) 'q'");
      expect((await host.run(['pwd'], { cwd: '/tmp' })).stdout.trim()).to.equal('/tmp');
      expect((await host.run(['/nonexistent/program'])).code).to.equal(127);
    });

    it('is not confused by login scripts that print before the command runs', async () => {
      // sshd runs ~/.ssh/rc (PermitUserRC, default yes) before every command, output included.
      const rc = path.join(home, '.ssh', 'rc');
      await fs.mkdir(path.dirname(rc), { recursive: true });
      await fs.writeFile(rc, 'echo login-noise >&2\necho stdout-noise\n');
      try {
        const host = newHost();
        const r = await host.run(['printf', '%s', 'payload']);
        expect(r.stderr).to.equal('login-noise\n');
        expect(r.stdout).to.equal('stdout-noise\npayload');
        let out = '';
        const proc = host.spawn(['sleep', '30'], { onOutput: (c) => (out += c) });
        await waitFor('spawned pid', 5000, () => proc.pid !== undefined);
        proc.kill('SIGKILL');
        expect((await proc.exited).signal).to.equal('SIGKILL');
        // stdout and stderr are separate pipes on the node: their relative order is not fixed.
        expect(out.split('\n').filter(Boolean).sort()).to.deep.equal(['login-noise', 'stdout-noise']);
      } finally {
        await fs.rm(path.join(home, '.ssh'), { recursive: true, force: true });
      }
    });

    it('kills the remote program when the timeout passes', async () => {
      const host = newHost();
      const pidFile = path.join(home, `timeout-${randomBytes(3).toString('hex')}.pid`);
      const started = Date.now();
      // The forked sleep proves the whole process group is killed, not just the shell.
      const err = await rejection(host.run(['sh', '-c', `sleep 30 & echo $! > ${pidFile}; wait`], { timeoutMs: 700 }));
      expect(Date.now() - started).to.be.below(5000);
      expect(err).to.be.instanceOf(HostError);
      expect((err as HostError).reason).to.equal('timeout');
      const pid = Number(await fs.readFile(pidFile, 'utf8'));
      await fs.rm(pidFile);
      await waitFor(`remote sleep ${pid} to end`, 5000, async () => !(await running(pid)));
    });

    it('runs 20 commands concurrently over one connection (stays under sshd MaxSessions)', async () => {
      const host = newHost();
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => host.run(['sh', '-c', `sleep 0.2; echo ${i}`])));
      expect(results.map((r) => r.stdout.trim())).to.deep.equal(Array.from({ length: 20 }, (_, i) => String(i)));
    });

    it('reconnects by itself after the connection is lost', async () => {
      const host = newHost();
      expect((await host.run(['true'])).code).to.equal(0);
      // Kill the per-connection sshd children of our sshd (processes this test started).
      const children = (await fs.readFile(`/proc/${sshd!.pid}/task/${sshd!.pid}/children`, 'utf8')).trim().split(/\s+/).filter(Boolean);
      expect(children.length).to.be.greaterThan(0);
      for (const c of children) process.kill(Number(c), 'SIGKILL');
      await new Promise((r) => setTimeout(r, 300));
      expect((await host.run(['echo', 'back'])).stdout).to.equal('back\n');
    });
  });

  describe('files over sftp', () => {
    it('writeFileAtomic + readFile round-trip with exact mode; overwrite keeps the mode; no temp files', async () => {
      const host = newHost();
      const file = path.join(home, `polygate-${randomBytes(3).toString('hex')}.conf`);
      const body = Buffer.from('key = "värde"\n' + 'x'.repeat(100_000));
      await host.writeFileAtomic(file, body, 0o640);
      expect((await host.readFile(file)).equals(body)).to.equal(true);
      const st = await fs.stat(file);
      expect(st.mode & 0o7777).to.equal(0o640);
      expect(st.uid).to.equal(uid);
      await host.writeFileAtomic(file, 'second\n');
      expect((await fs.stat(file)).mode & 0o7777).to.equal(0o640);
      expect((await host.readFile(file)).toString()).to.equal('second\n');
      await host.writeFileAtomic(file, 'third\n', 0o600);
      expect((await fs.stat(file)).mode & 0o7777).to.equal(0o600);
      expect((await fs.readdir(home)).filter((n) => n.endsWith('.tmp'))).to.deep.equal([]);
      await host.remove(file);
    });

    it('readFile of a missing file fails with code ENOENT (like LocalHost); exists/mkdirp/remove work', async () => {
      const host = newHost();
      const err = (await rejection(host.readFile(path.join(home, 'missing-file')))) as NodeJS.ErrnoException;
      expect(err.code).to.equal('ENOENT');
      const d = path.join(home, 'pg-dir', 'with space', "it's");
      await host.mkdirp(d, 0o700);
      expect((await fs.stat(d)).mode & 0o7777).to.equal(0o700);
      expect(await host.exists(d)).to.equal(true);
      await host.remove(path.join(home, 'pg-dir'));
      expect(await host.exists(path.join(home, 'pg-dir'))).to.equal(false);
      const denied = await rejection(host.writeFileAtomic('/root/polygate-should-not-exist', 'x'));
      expect((denied as NodeJS.ErrnoException).code).to.equal('EACCES');
    });
  });

  describe('openStream', () => {
    it('forwards TCP to a server on the node (direct-tcpip)', async () => {
      const server = net.createServer((s) => s.pipe(s));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      try {
        const host = newHost();
        const stream = await host.openStream({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port });
        expect(await echo(stream, 'hello over ssh ✓')).to.equal('hello over ssh ✓');
      } finally {
        server.close();
      }
    });

    it('forwards to a unix socket on the node (direct-streamlocal@openssh.com)', async () => {
      const sock = path.join(dir, 'mgmt.sock');
      const server = net.createServer((s) => s.pipe(s));
      await new Promise<void>((r) => server.listen(sock, r));
      await fs.chmod(sock, 0o777);
      try {
        const host = newHost();
        const stream = await host.openStream({ path: sock });
        expect(await echo(stream, 'status 3\n')).to.equal('status 3\n');
      } finally {
        server.close();
      }
    });

    it('reports a refused forward as HostError(connection)', async () => {
      const host = newHost();
      const err = await rejection(host.openStream({ host: '127.0.0.1', port: await freePort() }));
      expect(err).to.be.instanceOf(HostError);
      expect((err as HostError).reason).to.equal('connection');
    });
  });

  describe('spawn', () => {
    it('starts a remote program, learns its pid, streams output, and kill() ends it', async () => {
      const host = newHost();
      let out = '';
      const proc = host.spawn(['sh', '-c', 'echo ready; echo warn >&2; exec sleep 30'], { onOutput: (c) => (out += c) });
      await waitFor('remote program output', 5000, () => out.includes('ready') && out.includes('warn') && proc.pid !== undefined);
      expect(out).to.not.include('polygate-pid'); // the pid announcement is not passed on
      const pid = proc.pid!;
      expect(await running(pid)).to.equal(true);
      proc.kill('SIGTERM');
      const exit = await proc.exited;
      expect(exit.code).to.equal(null);
      expect(exit.signal).to.equal('SIGTERM');
      await waitFor(`remote pid ${pid} to end`, 5000, async () => !(await running(pid)));
    });

    it('resolves exited with the exit code of a program that ends by itself', async () => {
      const host = newHost();
      expect(await host.spawn(['sh', '-c', 'exit 5']).exited).to.deep.equal({ code: 5, signal: null });
    });
  });

  describe('host key pinning', () => {
    it('refuses a server whose host key differs from the pinned fingerprint', async () => {
      const wrong = newHost({ hostKeySha256: 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' });
      const err = await rejection(wrong.run(['true']));
      expect(err).to.be.instanceOf(HostError);
      expect(err.message).to.match(/host key mismatch for 127\.0\.0\.1:\d+: expected SHA256:AAAA+, got SHA256:/);
      const right = newHost({ hostKeySha256: hostKeySha256 });
      expect((await right.run(['true'])).code).to.equal(0);
      expect(right.hostKeySha256).to.equal(hostKeySha256);
    });
  });

  describe('key installation', () => {
    it('installAuthorizedKey (idempotent, 0700/0600) then logs in with the private key only', async () => {
      const keys = generateSshKeyPair('ed25519', 'polygate@test');
      expect(keys.publicKey).to.match(/^ssh-ed25519 [A-Za-z0-9+/=]+ polygate@test$/);
      const byPassword = newHost();
      // A key line already there must be kept.
      const other = generateSshKeyPair('ed25519', 'someone-else');
      await installAuthorizedKey(byPassword, other.publicKey);
      expect(await installAuthorizedKey(byPassword, keys.publicKey)).to.deep.equal({ installed: true, path: `${home}/.ssh/authorized_keys` });
      expect(await installAuthorizedKey(byPassword, `${keys.publicKey.split(' ').slice(0, 2).join(' ')} other-comment`)).to.deep.include({
        installed: false,
      });
      const content = await fs.readFile(path.join(home, '.ssh', 'authorized_keys'), 'utf8');
      expect(content).to.equal(`${other.publicKey}\n${keys.publicKey}\n`);
      expect((await fs.stat(path.join(home, '.ssh'))).mode & 0o7777).to.equal(0o700);
      expect((await fs.stat(path.join(home, '.ssh', 'authorized_keys'))).mode & 0o7777).to.equal(0o600);

      const byKey = newHost({ password: undefined, privateKey: keys.privateKey });
      expect((await byKey.run(['id', '-un'])).stdout.trim()).to.equal(USER);
      const pre = await sshPreflight({ host: '127.0.0.1', port, username: USER, privateKey: keys.privateKey, timeoutMs: 10_000 });
      expect(pre.uname).to.match(/^Linux/);
      // A key that is not installed is refused.
      const stranger = generateSshKeyPair('ed25519');
      const err = await rejection(sshPreflight({ host: '127.0.0.1', port, username: USER, privateKey: stranger.privateKey, timeoutMs: 10_000 }));
      expect(err.message).to.equal(`SSH preflight failed: authentication failed for ${USER}@127.0.0.1`);
    });

    it('refuses anything that is not one public key line', async () => {
      for (const bad of ['', 'ssh-ed25519', 'ssh-ed25519 AAAA\nssh-rsa BBBB', 'ecdsa-foo AAAA', '-----BEGIN OPENSSH PRIVATE KEY-----']) {
        const err = await rejection(installAuthorizedKey(new LocalHost(), bad));
        expect((err as DomainError).kind).to.equal('invalid');
      }
    });

    it('generates RSA keys too', function () {
      this.timeout(30_000);
      const keys = generateSshKeyPair('rsa', 'polygate');
      expect(keys.publicKey).to.match(/^ssh-rsa [A-Za-z0-9+/=]+ polygate$/);
      expect(keys.privateKey).to.match(/^-----BEGIN (OPENSSH|RSA) PRIVATE KEY-----/);
    });
  });
});
