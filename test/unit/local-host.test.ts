import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { DomainError } from '../../core/errors';
import { HostError } from '../../core/hosts/host';
import { LocalHost } from '../../core/hosts/local-host';
import { requirePrerequisite } from '../helpers/prereq';

/** Sends `payload` through a stream and collects the echo until `expectBytes` arrived. */
export function echoThrough(stream: Duplex, payload: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const timer = setTimeout(() => reject(new Error(`echo timed out; got ${JSON.stringify(got)}`)), timeoutMs);
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      got += chunk;
      if (got.length >= payload.length) {
        clearTimeout(timer);
        stream.destroy();
        resolve(got);
      }
    });
    stream.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    stream.write(payload);
  });
}

function startEchoServer(listen: net.ListenOptions): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((s) => s.pipe(s));
    server.once('error', reject);
    server.listen(listen, () => resolve(server));
  });
}

describe('LocalHost', () => {
  const host = new LocalHost();
  let dir: string;

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pg-localhost-'));
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  describe('run', () => {
    it('passes shell metacharacters to the program literally (no shell involved)', async () => {
      const nasty = ['$(id)', '`id`', "'; echo pwned", 'a b\tc', 'line1\nline2', '*', '~', '$HOME', '|&;<>', 'ünïcødé ✓ 日本', ''];
      for (const arg of nasty) {
        const r = await host.run(['printf', '%s', arg]);
        expect(r).to.deep.equal({ code: 0, stdout: arg, stderr: '' });
      }
      const r = await host.run(['printf', '[%s]', ...nasty]);
      expect(r.stdout).to.equal(nasty.map((a) => `[${a}]`).join(''));
    });

    it('reports non-zero exits with their code and stderr instead of throwing', async () => {
      const r = await host.run(['sh', '-c', 'echo oops >&2; exit 7']);
      expect(r).to.deep.equal({ code: 7, stdout: '', stderr: 'oops\n' });
    });

    it('feeds stdin and closes it; applies env and cwd', async () => {
      expect((await host.run(['cat'], { stdin: 'hello\nworld' })).stdout).to.equal('hello\nworld');
      expect((await host.run(['cat'], { stdin: Buffer.from([0xe2, 0x9c, 0x93]) })).stdout).to.equal('✓');
      // A program that never reads stdin must not break the call (EPIPE is swallowed).
      expect((await host.run(['true'], { stdin: 'x'.repeat(1 << 20) })).code).to.equal(0);
      expect((await host.run(['sh', '-c', 'printf %s "$PG_TEST_VAR"'], { env: { PG_TEST_VAR: '$(id) x' } })).stdout).to.equal('$(id) x');
      expect((await host.run(['pwd'], { cwd: dir })).stdout.trim()).to.equal(await fs.realpath(dir));
    });

    it('rejects a missing program with HostError(not_found)', async () => {
      const err = await host.run(['/nonexistent/polygate-no-such-program']).then(
        () => expect.fail('should reject'),
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(HostError);
      expect((err as HostError).reason).to.equal('not_found');
      expect((err as HostError).kind).to.equal('unavailable');
    });

    it('refuses empty argv, NUL bytes and bad env names before starting anything', async () => {
      for (const [argv, opts] of [
        [[], {}],
        [[''], {}],
        [['echo', 'a\0b'], {}],
        [['true'], { env: { 'A=B': 'x' } }],
      ] as const) {
        const err = await host.run(argv, opts).then(
          () => expect.fail('should reject'),
          (e: unknown) => e,
        );
        expect(err).to.be.instanceOf(DomainError);
        expect((err as DomainError).kind).to.equal('invalid');
      }
    });

    it('kills the program and everything it forked when the timeout passes', async () => {
      const marker = path.join(dir, 'child.pid');
      const started = Date.now();
      const err = await host.run(['sh', '-c', `sleep 30 & echo $! > ${marker}; wait`], { timeoutMs: 300 }).then(
        () => expect.fail('should time out'),
        (e: unknown) => e,
      );
      expect(Date.now() - started).to.be.below(5000);
      expect(err).to.be.instanceOf(HostError);
      expect((err as HostError).reason).to.equal('timeout');
      expect((err as HostError).message).to.match(/timed out after 300 ms/);
      const childPid = Number(await fs.readFile(marker, 'utf8'));
      // The forked sleep was in the killed process group: dead (or a zombie awaiting its
      // reaper, which in containers can be slow) within a bounded wait.
      const isRunning = async () => {
        try {
          const stat = await fs.readFile(`/proc/${childPid}/stat`, 'utf8');
          return !/^\d+ \(.*\) Z/.test(stat);
        } catch {
          return false;
        }
      };
      let alive = true;
      for (let i = 0; i < 50 && (alive = await isRunning()); i++) await new Promise((r) => setTimeout(r, 50));
      expect(alive, 'forked child survived the timeout kill').to.equal(false);
    });
  });

  describe('files', () => {
    it('writeFileAtomic sets the exact mode (not masked by umask) and leaves no temp files', async () => {
      const file = path.join(dir, 'secret.conf');
      await host.writeFileAtomic(file, 'psk=1\n', 0o600);
      expect((await fs.stat(file)).mode & 0o7777).to.equal(0o600);
      expect((await host.readFile(file)).toString()).to.equal('psk=1\n');
      await host.writeFileAtomic(file, 'psk=2\n', 0o666);
      expect((await fs.stat(file)).mode & 0o7777).to.equal(0o666);
      // Without a mode, an existing file keeps its mode.
      await fs.chmod(file, 0o640);
      await host.writeFileAtomic(file, Buffer.from('psk=3\n'));
      expect((await fs.stat(file)).mode & 0o7777).to.equal(0o640);
      expect(await fs.readFile(file, 'utf8')).to.equal('psk=3\n');
      // A new file without a mode gets 0644.
      await host.writeFileAtomic(path.join(dir, 'new.conf'), '');
      expect((await fs.stat(path.join(dir, 'new.conf'))).mode & 0o7777).to.equal(0o644);
      expect((await fs.readdir(dir)).filter((n) => n.endsWith('.tmp'))).to.deep.equal([]);
    });

    it('writeFileAtomic replaces by rename: a reader holding the old file keeps the old content', async () => {
      const file = path.join(dir, 'swap.conf');
      await host.writeFileAtomic(file, 'old');
      const before = await fs.stat(file);
      const handle = await fs.open(file, 'r');
      await host.writeFileAtomic(file, 'new');
      expect((await handle.readFile()).toString()).to.equal('old');
      await handle.close();
      expect((await fs.stat(file)).ino).to.not.equal(before.ino);
      expect(await fs.readFile(file, 'utf8')).to.equal('new');
    });

    it('writeFileAtomic into a missing directory fails and leaves nothing behind', async () => {
      const err = await host.writeFileAtomic(path.join(dir, 'nope', 'x'), 'x').then(
        () => expect.fail('should reject'),
        (e: unknown) => e as NodeJS.ErrnoException,
      );
      expect(err.code).to.equal('ENOENT');
    });

    it('mkdirp sets the mode exactly; exists/remove handle files, trees and absent paths', async () => {
      const deep = path.join(dir, 'a', 'b', 'c');
      await host.mkdirp(deep, 0o700);
      expect((await fs.stat(deep)).mode & 0o7777).to.equal(0o700);
      await host.mkdirp(deep, 0o750); // idempotent, and re-applies the mode
      expect((await fs.stat(deep)).mode & 0o7777).to.equal(0o750);
      await fs.writeFile(path.join(deep, 'f'), 'x');
      expect(await host.exists(path.join(deep, 'f'))).to.equal(true);
      expect(await host.exists(path.join(deep, 'missing'))).to.equal(false);
      expect(await host.exists(path.join(deep, 'f', 'under-a-file'))).to.equal(false);
      await host.remove(path.join(dir, 'a'));
      expect(await host.exists(path.join(dir, 'a'))).to.equal(false);
      await host.remove(path.join(dir, 'a')); // absent: no error
      const err = await host.remove('/').then(
        () => expect.fail('should refuse'),
        (e: unknown) => e as DomainError,
      );
      expect(err.kind).to.equal('invalid');
    });
  });

  describe('spawn', () => {
    it('starts a long-running program, streams its output, and kill() ends it with the signal', async () => {
      const chunks: string[] = [];
      const proc = host.spawn(['sh', '-c', 'echo ready; exec sleep 30'], { onOutput: (c) => chunks.push(c) });
      expect(proc.pid).to.be.a('number');
      for (let i = 0; i < 100 && !chunks.join('').includes('ready'); i++) await new Promise((r) => setTimeout(r, 20));
      expect(chunks.join('')).to.include('ready');
      process.kill(proc.pid!, 0); // alive
      proc.kill('SIGTERM');
      expect(await proc.exited).to.deep.equal({ code: null, signal: 'SIGTERM' });
      proc.kill(); // after exit: harmless
    });

    it('resolves exited with the code of a program that ends by itself', async () => {
      const proc = host.spawn(['sh', '-c', 'exit 3']);
      expect(await proc.exited).to.deep.equal({ code: 3, signal: null });
    });

    it('resolves exited with an error (never rejects) when the program does not exist', async () => {
      const proc = host.spawn(['/nonexistent/polygate-daemon']);
      const exit = await proc.exited;
      expect(exit.code).to.equal(null);
      expect(exit.error).to.match(/not found/);
    });
  });

  describe('openStream', () => {
    it('connects to a TCP server and relays bytes both ways', async () => {
      const server = await startEchoServer({ host: '127.0.0.1', port: 0 });
      try {
        const { port } = server.address() as net.AddressInfo;
        const stream = await host.openStream({ host: '127.0.0.1', port });
        expect(await echoThrough(stream, 'ping ✓')).to.equal('ping ✓');
      } finally {
        server.close();
      }
    });

    it('connects to a unix socket', async () => {
      const sock = path.join(dir, 'mgmt.sock');
      const server = await startEchoServer({ path: sock });
      try {
        const stream = await host.openStream({ path: sock });
        expect(await echoThrough(stream, 'status\n')).to.equal('status\n');
      } finally {
        server.close();
      }
    });

    it('rejects with HostError(connection) when nothing listens', async () => {
      const server = await startEchoServer({ host: '127.0.0.1', port: 0 });
      const { port } = server.address() as net.AddressInfo;
      await new Promise((r) => server.close(r));
      const err = await host.openStream({ host: '127.0.0.1', port }).then(
        () => expect.fail('should reject'),
        (e: unknown) => e as HostError,
      );
      expect(err.reason).to.equal('connection');
      expect(err.message).to.match(/ECONNREFUSED/);
    });
  });

  it('refuses a netns name that is not a plain identifier', () => {
    expect(() => new LocalHost({ netns: 'x; rm -rf /' })).to.throw(DomainError, /netns must match/);
  });

  describe('with netns (programs and TCP streams inside a network namespace)', function () {
    const ns = `pg-lh-${randomBytes(3).toString('hex')}`;
    let nsHost: LocalHost;

    before(function () {
      requirePrerequisite(this, process.getuid?.() === 0, 'LocalHost netns tests: not running as root');
      let nsError = '';
      try {
        execFileSync('ip', ['netns', 'add', ns], { stdio: 'pipe' });
        execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up'], { stdio: 'pipe' });
      } catch (e) {
        nsError = (e as Error).message.split('\n')[0]!;
      }
      requirePrerequisite(this, nsError === '', `LocalHost netns tests: cannot create a network namespace (${nsError})`);
      nsHost = new LocalHost({ id: 'test-ns', netns: ns });
    });
    after(() => {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'pipe' });
      } catch {
        /* not created */
      }
    });

    it('runs programs inside the namespace (only lo is visible there)', async () => {
      const r = await nsHost.run(['ip', '-o', 'link', 'show']);
      expect(r.code).to.equal(0);
      expect(r.stdout.trim().split('\n')).to.have.length(1);
      expect(r.stdout).to.match(/^1: lo:/);
    });

    it('opens TCP streams from inside the namespace (server spawned in the namespace)', async () => {
      const port = 20000 + Math.floor(Math.random() * 20000);
      const script = `require('net').createServer((s) => s.pipe(s)).listen(${port}, '127.0.0.1', () => console.log('listening'))`;
      let out = '';
      const server = nsHost.spawn([process.execPath, '-e', script], { onOutput: (c) => (out += c) });
      try {
        for (let i = 0; i < 100 && !out.includes('listening'); i++) await new Promise((r) => setTimeout(r, 50));
        expect(out).to.include('listening');
        const stream = await nsHost.openStream({ host: '127.0.0.1', port });
        expect(await echoThrough(stream, 'inside the namespace')).to.equal('inside the namespace');
        const err = await nsHost.openStream({ host: '127.0.0.1', port: port + 1 }).then(
          () => expect.fail('should reject'),
          (e: unknown) => e as HostError,
        );
        expect(err.reason).to.equal('connection');
        expect(err.message).to.match(/in netns .*ECONNREFUSED/);
      } finally {
        server.kill('SIGKILL');
        await server.exited;
      }
    });
  });
});
