import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs, constants as fsConstants } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Duplex } from 'node:stream';
import { invalid } from '../errors';
import { checkArgv, checkEnv, checkMode, checkPath, checkRemovable, checkTcpTarget } from './checks';
import {
  HostError,
  type Host,
  type HostProcess,
  type HostProcessExit,
  type RunOptions,
  type RunResult,
  type SpawnOptions,
  type StreamTarget,
} from './host';

/** Default for `RunOptions.timeoutMs`. */
export const DEFAULT_RUN_TIMEOUT_MS = 60_000;
/** stdout + stderr of one `run()` beyond this is refused (the program is killed). */
export const MAX_RUN_OUTPUT_BYTES = 64 * 1024 * 1024;
const STREAM_CONNECT_TIMEOUT_MS = 10_000;

const NETNS_RE = /^[A-Za-z0-9_.-]{1,64}$/;

export interface LocalHostOptions {
  /** Host id; default `main`. */
  id?: string;
  /**
   * Run every program inside this network namespace (`ip netns exec <ns> argv…`) and open
   * TCP streams from inside it. Files are shared across network namespaces, so file
   * operations are unaffected.
   */
  netns?: string;
  /** `ip` binary used for `netns`; default `ip` (found on PATH). */
  ipPath?: string;
}

/**
 * The main server itself. Programs start from argv arrays (never a shell); files are
 * written atomically with fsync.
 *
 * @example
 * const host = new LocalHost();
 * const { code, stdout } = await host.run(['wg', 'show', 'wg0', 'dump']);
 */
export class LocalHost implements Host {
  readonly id: string;
  readonly netns: string | undefined;
  private readonly ipPath: string;

  constructor(options: LocalHostOptions = {}) {
    this.id = options.id ?? 'main';
    if (options.netns !== undefined && !NETNS_RE.test(options.netns)) {
      throw invalid(`netns must match ${NETNS_RE.source} (got ${JSON.stringify(options.netns)})`);
    }
    this.netns = options.netns;
    this.ipPath = options.ipPath ?? 'ip';
  }

  /** The argv actually executed: prefixed with `ip netns exec <ns>` when a namespace is set. */
  commandLine(argv: readonly string[]): string[] {
    checkArgv(argv);
    return this.netns ? [this.ipPath, 'netns', 'exec', this.netns, ...argv] : [...argv];
  }

  async run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const full = this.commandLine(argv);
    const timeoutMs = options.timeoutMs ?? DEFAULT_RUN_TIMEOUT_MS;
    const env = mergeEnv(options.env);
    return new Promise<RunResult>((resolve, reject) => {
      let child: ChildProcess;
      try {
        // detached: own process group, so a timeout kills whatever the program forked too.
        child = spawnChild(full[0]!, full.slice(1), { cwd: options.cwd, env, stdio: 'pipe', detached: true });
      } catch (e) {
        reject(this.spawnError(argv[0]!, e));
        return;
      }
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let size = 0;
      let settled = false;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        fn();
      };
      const killGroup = () => {
        if (child.pid === undefined) return;
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
      };
      const collect = (into: Buffer[]) => (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_RUN_OUTPUT_BYTES) {
          killGroup();
          finish(() =>
            reject(new HostError(this.id, 'output_too_large', `${argv[0]} on ${this.id} wrote more than ${MAX_RUN_OUTPUT_BYTES} bytes; killed`)),
          );
          return;
        }
        into.push(chunk);
      };
      const timer = setTimeout(() => {
        killGroup();
        finish(() => reject(new HostError(this.id, 'timeout', `${argv[0]} on ${this.id} timed out after ${timeoutMs} ms; killed`)));
      }, timeoutMs);
      child.stdout!.on('data', collect(out));
      child.stderr!.on('data', collect(err));
      child.on('error', (e) => finish(() => reject(this.spawnError(argv[0]!, e))));
      // 'close' (not 'exit'): all output has been read by then.
      child.on('close', (code, signal) =>
        finish(() =>
          resolve({
            code: code ?? (signal ? 128 + (signalNumber(signal) ?? 0) : -1),
            stdout: Buffer.concat(out).toString('utf8'),
            stderr: Buffer.concat(err).toString('utf8'),
          }),
        ),
      );
      // A program may exit without reading its stdin; EPIPE then is not our failure.
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(options.stdin ?? undefined);
    });
  }

  spawn(argv: readonly string[], options: SpawnOptions = {}): HostProcess {
    const full = this.commandLine(argv);
    const child = spawnChild(full[0]!, full.slice(1), {
      cwd: options.cwd,
      env: mergeEnv(options.env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const onOutput = options.onOutput;
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => onOutput?.(chunk));
    child.stderr!.on('data', (chunk: string) => onOutput?.(chunk));
    let done = false;
    const exited = new Promise<HostProcessExit>((resolve) => {
      child.on('error', (e) => {
        // 'error' without 'exit' means it never started; with a pid it was a kill failure.
        if (child.pid === undefined && !done) {
          done = true;
          resolve({ code: null, signal: null, error: this.spawnError(argv[0]!, e).message });
        }
      });
      child.on('exit', (code, signal) => {
        if (done) return;
        done = true;
        resolve({ code, signal });
      });
    });
    return {
      pid: child.pid,
      exited,
      kill: (signal: NodeJS.Signals = 'SIGTERM') => {
        if (!done && child.exitCode === null && child.signalCode === null) child.kill(signal);
      },
    };
  }

  async readFile(file: string): Promise<Buffer> {
    checkPath(file);
    return fs.readFile(file);
  }

  async writeFileAtomic(file: string, data: string | Buffer, mode?: number): Promise<void> {
    checkPath(file);
    if (mode !== undefined) checkMode(mode);
    const dir = path.dirname(file);
    let finalMode = mode;
    if (finalMode === undefined) {
      try {
        finalMode = (await fs.stat(file)).mode & 0o7777;
      } catch {
        finalMode = 0o644;
      }
    }
    const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
    const handle = await fs.open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
    try {
      try {
        await handle.writeFile(data);
        await handle.chmod(finalMode); // exact, not masked by umask
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fs.rename(tmp, file);
    } catch (e) {
      await fs.rm(tmp, { force: true }).catch(() => undefined);
      throw e;
    }
    await syncDir(dir);
  }

  async mkdirp(dir: string, mode?: number): Promise<void> {
    checkPath(dir);
    if (mode !== undefined) checkMode(mode);
    await fs.mkdir(dir, { recursive: true, mode: mode ?? 0o755 });
    if (mode !== undefined) await fs.chmod(dir, mode);
  }

  async remove(target: string): Promise<void> {
    checkRemovable(target);
    await fs.rm(target, { recursive: true, force: true });
  }

  async exists(target: string): Promise<boolean> {
    checkPath(target);
    try {
      await fs.lstat(target);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return false;
      throw e;
    }
  }

  /**
   * Unix sockets and TCP in the daemon's own namespace connect directly. TCP with `netns`
   * goes through a tiny Node helper started inside the namespace (Node cannot `setns`),
   * which reports the connect result before relaying bytes, so errors surface here.
   */
  async openStream(target: StreamTarget): Promise<Duplex> {
    if ('path' in target) {
      checkPath(target.path);
      return connectSocket(this.id, () => net.connect({ path: target.path }), target.path);
    }
    checkTcpTarget(target);
    if (!this.netns) {
      return connectSocket(this.id, () => net.connect({ host: target.host, port: target.port }), `${target.host}:${target.port}`);
    }
    return this.openNetnsStream(target);
  }

  async close(): Promise<void> {
    // Nothing held open: every program is started per call.
  }

  private openNetnsStream(target: { host: string; port: number }): Promise<Duplex> {
    const where = `${target.host}:${target.port} in netns ${this.netns}`;
    const full = this.commandLine([process.execPath, '-e', NETNS_RELAY_SCRIPT, target.host, String(target.port)]);
    return new Promise<Duplex>((resolve, reject) => {
      const child = spawnChild(full[0]!, full.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
      let settled = false;
      let errText = '';
      const fail = (message: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        child.kill('SIGKILL');
        reject(new HostError(this.id, 'connection', `cannot connect to ${where}: ${message}`));
      };
      const timer = setTimeout(() => fail(`timed out after ${STREAM_CONNECT_TIMEOUT_MS} ms`), STREAM_CONNECT_TIMEOUT_MS);
      child.on('error', (e) => fail(e.message));
      child.on('exit', () => fail(errText.trim() || 'relay exited'));
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (chunk: string) => {
        if (settled) return;
        errText += chunk;
        if (!errText.includes('connected\n')) return;
        settled = true;
        clearTimeout(timer);
        const stream = Duplex.from({
          readable: child.stdout!,
          writable: child.stdin!,
        });
        // Destroying the stream must not leave the relay behind.
        stream.on('close', () => child.kill('SIGKILL'));
        child.stdin!.on('error', () => undefined);
        resolve(stream);
      });
    });
  }

  private spawnError(program: string, e: unknown): HostError {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') return new HostError(this.id, 'not_found', `${program} not found on ${this.id} (${err.message})`);
    return new HostError(this.id, 'failed', `cannot start ${program} on ${this.id}: ${err.message}`);
  }
}

/**
 * Runs inside the namespace: connect, tell the parent on stderr, then relay stdio.
 * Passed with `node -e`; the target comes as argv, never spliced into the code.
 */
const NETNS_RELAY_SCRIPT = `
const net = require('net');
const [host, port] = process.argv.slice(-2);
const s = net.connect({ host, port: Number(port) });
s.on('connect', () => { process.stderr.write('connected\\n'); process.stdin.pipe(s); s.pipe(process.stdout); });
s.on('error', (e) => { process.stderr.write(e.message + '\\n'); process.exit(1); });
s.on('close', () => process.exit(0));
process.stdout.on('error', () => process.exit(0));
`;

function connectSocket(hostId: string, open: () => net.Socket, where: string): Promise<Duplex> {
  return new Promise<Duplex>((resolve, reject) => {
    const socket = open();
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new HostError(hostId, 'timeout', `cannot connect to ${where} from ${hostId}: timed out after ${STREAM_CONNECT_TIMEOUT_MS} ms`));
    }, STREAM_CONNECT_TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(new HostError(hostId, 'connection', `cannot connect to ${where} from ${hostId}: ${e.message}`));
    });
  });
}

async function syncDir(dir: string): Promise<void> {
  // Makes the rename durable; not every filesystem allows fsync on a directory.
  try {
    const h = await fs.open(dir, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    /* best effort */
  }
}

function mergeEnv(extra: Record<string, string> | undefined): NodeJS.ProcessEnv {
  if (!extra) return process.env;
  checkEnv(extra);
  return { ...process.env, ...extra };
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };
const signalNumber = (s: string): number | undefined => SIGNALS[s];
