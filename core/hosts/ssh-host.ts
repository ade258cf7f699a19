import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { Client, utils as sshUtils, type ClientChannel, type ConnectConfig, type SFTPWrapper } from 'ssh2';
import { DomainError, invalid } from '../errors';
import { checkArgv, checkEnv, checkMode, checkPath, checkRemovable, checkTcpTarget } from './checks';
import {
  HostError,
  runChecked,
  type Host,
  type HostProcess,
  type HostProcessExit,
  type RunOptions,
  type RunResult,
  type SpawnOptions,
  type StreamTarget,
} from './host';
import { DEFAULT_RUN_TIMEOUT_MS, MAX_RUN_OUTPUT_BYTES } from './local-host';

/** Default limit for TCP connect + SSH handshake + authentication. */
export const DEFAULT_SSH_CONNECT_TIMEOUT_MS = 20_000;
const STREAM_OPEN_TIMEOUT_MS = 10_000;
const SFTP_TIMEOUT_MS = 30_000;
/**
 * OpenSSH's `MaxSessions` defaults to 10 session channels per connection (exec, sftp and
 * spawned programs each take one, and sshd frees a slot a moment after the channel closes).
 * Runs stay well below it; a refused channel open is retried with backoff.
 */
const MAX_CONCURRENT_RUNS = 6;
const CHANNEL_RETRIES = 6;

/** How to reach and authenticate to a node over SSH. */
export interface SshConnectionOptions {
  host: string;
  /** Default 22. */
  port?: number;
  username: string;
  password?: string;
  /** OpenSSH-format private key (e.g. from `generateSshKeyPair`). */
  privateKey?: string | Buffer;
  passphrase?: string;
  /** Limit for TCP connect + handshake + authentication; default 20 s. */
  timeoutMs?: number;
  /**
   * Pinned host key fingerprint as `ssh-keygen -lf` prints it (`SHA256:<base64>`), recorded
   * by `sshPreflight` during provisioning. When set, any other host key is refused.
   */
  hostKeySha256?: string;
  /** SSH keepalive interval; default 15 s (0 disables). */
  keepaliveIntervalMs?: number;
}

/** Single-quotes one argument for a POSIX shell: `it's` → `'it'\''s'`. */
export function shellQuote(arg: string): string {
  if (arg.includes('\0')) throw invalid('shell arguments cannot contain NUL bytes');
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * The one place argv becomes a remote command line. sshd hands the line to the login
 * shell (`$SHELL -c`), so every element is single-quoted and the program replaces that
 * shell via `exec`. Requires a POSIX-compatible login shell (sh, bash, dash, ksh, zsh).
 */
export function remoteCommandLine(argv: readonly string[], options: { env?: Record<string, string>; cwd?: string; announcePid?: boolean } = {}): string {
  checkArgv(argv);
  const parts: string[] = [];
  if (options.announcePid) parts.push(`printf 'polygate-pid:%s\\n' "$$" >&2 &&`);
  if (options.cwd !== undefined) {
    checkPath(options.cwd);
    // A leading "-" would read as an option to cd.
    parts.push(`cd ${shellQuote(options.cwd.startsWith('-') ? `./${options.cwd}` : options.cwd)} &&`);
  }
  parts.push('exec');
  if (options.env && Object.keys(options.env).length > 0) {
    checkEnv(options.env);
    parts.push('env', ...Object.entries(options.env).map(([k, v]) => shellQuote(`${k}=${v}`)));
  }
  parts.push(...argv.map(shellQuote));
  return parts.join(' ');
}

/** OpenSSH-style fingerprint of a raw host key: `SHA256:` + unpadded base64 of its SHA-256. */
export function hostKeyFingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/** Why a connection attempt failed, worded for humans ("connection refused (10.0.0.5:22)"). */
class SshConnectFailure extends Error {}

interface Connected {
  client: Client;
  hostKeySha256: string;
}

/**
 * Opens one authenticated ssh2 connection. Rejects with `SshConnectFailure` whose message
 * says what failed: refused, unreachable, unresolvable, timed out, authentication, host key.
 */
function connectSsh(options: SshConnectionOptions): Promise<Connected> {
  const port = options.port ?? 22;
  const timeoutMs = options.timeoutMs ?? DEFAULT_SSH_CONNECT_TIMEOUT_MS;
  const where = `${options.host}:${port}`;
  if (typeof options.host !== 'string' || options.host === '') return Promise.reject(new SshConnectFailure('no host given'));
  if (!Number.isInteger(port) || port < 1 || port > 65535) return Promise.reject(new SshConnectFailure(`invalid port ${port}`));
  if (typeof options.username !== 'string' || options.username === '') return Promise.reject(new SshConnectFailure('no username given'));
  if (options.password === undefined && options.privateKey === undefined) {
    return Promise.reject(new SshConnectFailure('neither a password nor a private key was given'));
  }
  return new Promise<Connected>((resolve, reject) => {
    const client = new Client();
    let seenKey: string | undefined;
    let mismatch = false;
    let settled = false;
    const fail = (message: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      client.removeAllListeners('ready');
      client.on('error', () => undefined); // late errors after we gave up
      client.destroy();
      reject(new SshConnectFailure(message));
    };
    // Our own timer too: readyTimeout alone does not bound every phase on every platform.
    const timer = setTimeout(() => fail(`timed out after ${timeoutMs} ms connecting to ${where}`), timeoutMs);
    client.on('ready', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ client, hostKeySha256: seenKey ?? '' });
    });
    client.on('error', (err: Error & { code?: string; level?: string }) => {
      if (mismatch) return fail(`host key mismatch for ${where}: expected ${options.hostKeySha256}, got ${seenKey}`);
      fail(describeConnectError(err, options, where, timeoutMs));
    });
    client.on('close', () => fail(`connection to ${where} closed during handshake`));
    // Servers that only offer keyboard-interactive (PAM) still get the password.
    client.on('keyboard-interactive', (_name, _instructions, _lang, prompts, finish) => {
      finish(prompts.map(() => options.password ?? ''));
    });
    const config: ConnectConfig = {
      host: options.host,
      port,
      username: options.username,
      password: options.password,
      privateKey: options.privateKey,
      passphrase: options.passphrase,
      tryKeyboard: options.password !== undefined,
      readyTimeout: timeoutMs,
      keepaliveInterval: options.keepaliveIntervalMs ?? 15_000,
      keepaliveCountMax: 3,
      hostVerifier: (key: Buffer): boolean => {
        seenKey = hostKeyFingerprint(key);
        if (options.hostKeySha256 && options.hostKeySha256 !== seenKey) {
          mismatch = true;
          return false;
        }
        return true;
      },
    };
    try {
      client.connect(config);
    } catch (e) {
      // ssh2 throws synchronously for unparsable keys and similar config errors.
      fail(/privateKey|key/i.test((e as Error).message) ? `invalid private key: ${(e as Error).message}` : (e as Error).message);
    }
  });
}

function describeConnectError(err: Error & { code?: string; level?: string }, options: SshConnectionOptions, where: string, timeoutMs: number): string {
  switch (err.code) {
    case 'ECONNREFUSED':
      return `connection refused (${where})`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EHOSTDOWN':
      return `host unreachable (${where})`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot resolve host name ${options.host}`;
    case 'ETIMEDOUT':
      return `timed out after ${timeoutMs} ms connecting to ${where}`;
    case 'ECONNRESET':
      return `connection reset by ${where}`;
  }
  if (err.level === 'client-authentication') return `authentication failed for ${options.username}@${options.host}`;
  if (err.level === 'client-timeout') return `timed out after ${timeoutMs} ms connecting to ${where}`;
  return `${err.message} (${where})`;
}

export interface SshPreflightOptions {
  host: string;
  port?: number;
  username: string;
  password?: string;
  privateKey?: string | Buffer;
  passphrase?: string;
  /** Whole preflight limit (connect + `uname -a`); default 20 s. */
  timeoutMs?: number;
}

export interface SshPreflightResult {
  /** Output of `uname -a` on the node. */
  uname: string;
  /** The node's host key fingerprint; pin it as `SshConnectionOptions.hostKeySha256`. */
  hostKeySha256: string;
}

/**
 * Checks that a node is reachable and the credentials work: connects, authenticates, runs
 * `uname -a`, disconnects. Throws `DomainError('invalid', 'SSH preflight failed: …')`
 * naming what failed, for the API to show as is.
 *
 * @example
 * const { uname, hostKeySha256 } = await sshPreflight({ host: '203.0.113.7', username: 'root', password });
 */
export async function sshPreflight(options: SshPreflightOptions): Promise<SshPreflightResult> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_SSH_CONNECT_TIMEOUT_MS;
  const started = Date.now();
  let connected: Connected;
  try {
    connected = await connectSsh({ ...options, timeoutMs, keepaliveIntervalMs: 0 });
  } catch (e) {
    throw new DomainError('invalid', `SSH preflight failed: ${(e as Error).message}`);
  }
  const { client } = connected;
  try {
    const left = Math.max(1000, timeoutMs - (Date.now() - started));
    const result = await execOnce(client, 'uname -a', { timeoutMs: left, hostId: options.host });
    if (result.code !== 0) {
      throw new DomainError('invalid', `SSH preflight failed: uname -a exited with code ${result.code} on ${options.host}: ${result.stderr.trim().slice(0, 300)}`);
    }
    return { uname: result.stdout.trim(), hostKeySha256: connected.hostKeySha256 };
  } catch (e) {
    if (e instanceof DomainError && e.kind === 'invalid') throw e;
    throw new DomainError('invalid', `SSH preflight failed: ${(e as Error).message}`);
  } finally {
    client.end();
  }
}

/** Errors from `execOnce` where the command never started (no channel): safe to retry. */
const notStarted = new WeakSet<Error>();

/**
 * Takes the `polygate-pid:<n>` line out of the start of stderr. Login scripts on the node
 * may print before it, so it is looked for in the first 4 KiB rather than the first line.
 */
class PidAnnouncement {
  pid: number | undefined;
  private pending = true;
  private head = Buffer.alloc(0);
  /** Returns the stderr bytes to pass on (empty while still looking). */
  feed(chunk: Buffer): Buffer {
    if (!this.pending) return chunk;
    this.head = Buffer.concat([this.head, chunk]);
    const text = this.head.toString('latin1');
    const m = /(^|\n)polygate-pid:(\d+)\n/.exec(text);
    if (!m && this.head.length < 4096) return Buffer.alloc(0);
    this.pending = false;
    const rest = this.head;
    this.head = Buffer.alloc(0);
    if (!m) return rest;
    this.pid = Number(m[2]);
    const from = m.index + m[1]!.length;
    return Buffer.concat([rest.subarray(0, from), rest.subarray(from + m[0].length - m[1]!.length)]);
  }
  /** Whatever is still held back when the stream ends. */
  flush(): Buffer {
    this.pending = false;
    const rest = this.head;
    this.head = Buffer.alloc(0);
    return rest;
  }
}

/**
 * Runs one command line on an open connection (shared by preflight and SshHost.run).
 * With `announcesPid`, the command starts by printing its pid on stderr (see
 * `remoteCommandLine`): the line is removed from stderr and handed to `killRemote` on a
 * timeout, because closing an SSH channel does not end the program behind it and OpenSSH
 * ignores signal requests once stdin is closed.
 */
function execOnce(
  client: Client,
  command: string,
  opts: { stdin?: string | Buffer; timeoutMs: number; hostId: string; label?: string; announcesPid?: boolean; killRemote?: (pid: number) => void },
): Promise<RunResult> {
  const label = opts.label ?? command;
  return new Promise<RunResult>((resolve, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    let settled = false;
    let channel: ClientChannel | undefined;
    let exitCode: number | null | undefined;
    let exitSignal: string | undefined;
    const announcement = opts.announcesPid ? new PidAnnouncement() : undefined;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const abort = () => {
      if (announcement?.pid !== undefined) opts.killRemote?.(announcement.pid);
      channel?.close();
    };
    const timer = setTimeout(() => {
      abort();
      finish(() => reject(new HostError(opts.hostId, 'timeout', `${label} on ${opts.hostId} timed out after ${opts.timeoutMs} ms; killed`)));
    }, opts.timeoutMs);
    const collect = (into: Buffer[], chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_RUN_OUTPUT_BYTES) {
        abort();
        finish(() => reject(new HostError(opts.hostId, 'output_too_large', `${label} on ${opts.hostId} wrote more than ${MAX_RUN_OUTPUT_BYTES} bytes; killed`)));
        return;
      }
      into.push(chunk);
    };
    const onStderr = (chunk: Buffer) => {
      const pass = announcement ? announcement.feed(chunk) : chunk;
      if (pass.length > 0) collect(err, pass);
    };
    try {
      client.exec(command, (e, stream) => {
        if (e) {
          const failure = new HostError(opts.hostId, 'connection', `cannot run ${label} on ${opts.hostId}: ${e.message}`);
          notStarted.add(failure);
          finish(() => reject(failure));
          return;
        }
        channel = stream;
        if (settled) return abort();
        stream.on('data', (c: Buffer) => collect(out, c));
        stream.stderr.on('data', onStderr);
        // The exit status arrives on 'exit', before 'close'; 'close' means all output is in.
        stream.on('exit', (code: number | null, signal?: string) => {
          exitCode = code;
          exitSignal = signal;
        });
        stream.on('close', () => {
          const held = announcement?.flush();
          if (held && held.length > 0) err.push(held);
          if (exitCode === undefined) {
            finish(() => reject(new HostError(opts.hostId, 'connection', `${label} on ${opts.hostId}: channel closed without an exit status (connection lost?)`)));
            return;
          }
          finish(() =>
            resolve({
              code: exitCode ?? 128 + (SIGNAL_NUMBERS[exitSignal ?? ''] ?? 0),
              stdout: Buffer.concat(out).toString('utf8'),
              stderr: Buffer.concat(err).toString('utf8'),
            }),
          );
        });
        stream.on('error', () => undefined);
        stream.end(opts.stdin ?? undefined);
      });
    } catch (e) {
      const failure = new HostError(opts.hostId, 'connection', `cannot run ${label} on ${opts.hostId}: ${(e as Error).message}`);
      notStarted.add(failure);
      finish(() => reject(failure));
    }
  });
}

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGPIPE: 13, SIGTERM: 15 };

/** Counts concurrent exec channels on one connection. */
class Semaphore {
  private waiting: (() => void)[] = [];
  constructor(private free: number) {}
  async acquire(): Promise<() => void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((r) => this.waiting.push(r));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    };
  }
}

const sftpCode = (e: unknown): number | undefined => (e as { code?: unknown }).code as number | undefined;

/** Gives sftp errors the errno codes Node's fs uses, so callers treat both hosts alike. */
function sftpError(e: unknown, op: string, file: string): Error {
  const code = sftpCode(e);
  const errno = code === 2 ? 'ENOENT' : code === 3 ? 'EACCES' : undefined;
  const err = new Error(`${op} ${file}: ${(e as Error).message}`) as NodeJS.ErrnoException;
  if (errno) err.code = errno;
  return err;
}

/**
 * A node reached over one SSH connection: `exec` for programs, `sftp` for files,
 * `forwardOut`/`direct-streamlocal` for TCP and unix-socket streams. Connects lazily and
 * reconnects after the connection drops.
 *
 * @example
 * const node = new SshHost('node_3', { host: '203.0.113.7', username: 'root', privateKey, hostKeySha256 });
 * await node.run(['systemctl', 'reload', 'openvpn-server@polygate']);
 */
export class SshHost implements Host {
  private connected: Connected | undefined;
  private connecting: Promise<Connected> | undefined;
  private sftpSession: Promise<SFTPWrapper> | undefined;
  private closed = false;
  private readonly runSlots = new Semaphore(MAX_CONCURRENT_RUNS);

  constructor(
    readonly id: string,
    private readonly options: SshConnectionOptions,
  ) {}

  /** Fingerprint of the host key of the current connection, once connected. */
  get hostKeySha256(): string | undefined {
    return this.connected?.hostKeySha256;
  }

  /** Connects now (otherwise the first operation does). Throws `HostError` reason `connection`. */
  async connect(): Promise<void> {
    await this.client();
  }

  async run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const command = remoteCommandLine(argv, { env: options.env, cwd: options.cwd, announcePid: true });
    for (let attempt = 0; ; attempt++) {
      const client = await this.client();
      const release = await this.runSlots.acquire();
      let retry: Error;
      try {
        return await execOnce(client, command, {
          stdin: options.stdin,
          timeoutMs: options.timeoutMs ?? DEFAULT_RUN_TIMEOUT_MS,
          hostId: this.id,
          label: argv[0],
          announcesPid: true,
          // The program leads its own process group (sshd calls setsid): end all of it.
          killRemote: (pid) => this.killRemote(client, ['kill', '-s', 'KILL', '--', `-${pid}`]),
        });
      } catch (e) {
        if (!(e instanceof Error) || !notStarted.has(e) || attempt >= CHANNEL_RETRIES) throw e;
        retry = e;
      } finally {
        release();
      }
      // The command never started, so trying again is safe: either the connection died
      // under us (reconnect on the next turn) or sshd had no free session slot yet (back off).
      if (this.connected?.client === client) {
        if (!/open failed/i.test(retry.message)) throw retry;
        await new Promise((r) => setTimeout(r, 50 * 2 ** attempt));
      }
    }
  }

  /** Best effort, on its own channel, outside the run slots (it must not wait behind them). */
  private killRemote(client: Client, argv: string[]): void {
    execOnce(client, remoteCommandLine(argv), { timeoutMs: 10_000, hostId: this.id, label: 'kill' }).catch(() => undefined);
  }

  /**
   * Starts a long-running program over its own exec channel. `pid` is the remote pid, known
   * shortly after start (a `kill()` before that is delivered once it is known); `kill()`
   * runs `kill(1)` on the node, since OpenSSH ignores signal requests on channels whose
   * stdin is closed. The exec channel counts against sshd's MaxSessions while it runs.
   */
  spawn(argv: readonly string[], options: SpawnOptions = {}): HostProcess {
    const command = remoteCommandLine(argv, { env: options.env, cwd: options.cwd, announcePid: true });
    let pid: number | undefined;
    let pendingSignal: NodeJS.Signals | undefined;
    let done = false;
    let client: Client | undefined;
    // OpenSSH ignores signal requests on a channel whose stdin is closed: use kill(1).
    const sendKill = (signal: NodeJS.Signals) => {
      if (pid !== undefined && client) this.killRemote(client, ['kill', '-s', signal.replace(/^SIG/, ''), '--', String(pid)]);
    };
    const exited = new Promise<HostProcessExit>((resolve) => {
      const end = (exit: HostProcessExit) => {
        if (done) return;
        done = true;
        resolve(exit);
      };
      this.client().then(
        (c) => {
          client = c;
          const onChannel = (e: Error | undefined, stream: ClientChannel) => {
            if (e) return end({ code: null, signal: null, error: `cannot start ${argv[0]} on ${this.id}: ${e.message}` });
            let code: number | null | undefined;
            let signal: string | null = null;
            const announcement = new PidAnnouncement();
            const decoder = new StringDecoder('utf8');
            const errDecoder = new StringDecoder('utf8');
            stream.on('data', (chunk: Buffer) => options.onOutput?.(decoder.write(chunk)));
            stream.stderr.on('data', (chunk: Buffer) => {
              const known = announcement.pid !== undefined;
              const pass = announcement.feed(chunk);
              if (pass.length > 0) options.onOutput?.(errDecoder.write(pass));
              if (!known && announcement.pid !== undefined) {
                pid = announcement.pid;
                if (pendingSignal) sendKill(pendingSignal);
              }
            });
            stream.on('exit', (c: number | null, s?: string) => {
              code = c;
              signal = s ?? null; // ssh2 already prefixes SIG
            });
            stream.on('close', () => {
              const held = announcement.flush();
              if (held.length > 0) options.onOutput?.(errDecoder.write(held));
              end(code === undefined ? { code: null, signal: null, error: `connection to ${this.id} lost` } : { code, signal });
            });
            stream.on('error', () => undefined);
            stream.end();
          };
          try {
            c.exec(command, onChannel);
          } catch (e) {
            end({ code: null, signal: null, error: `cannot start ${argv[0]} on ${this.id}: ${(e as Error).message}` });
          }
        },
        (e: Error) => end({ code: null, signal: null, error: e.message }),
      );
    });
    return {
      get pid() {
        return pid;
      },
      exited,
      kill: (signal: NodeJS.Signals = 'SIGTERM') => {
        if (done) return;
        if (pid === undefined) pendingSignal = signal;
        sendKill(signal);
      },
    };
  }

  async readFile(file: string): Promise<Buffer> {
    checkPath(file);
    const sftp = await this.sftp();
    return withTimeout(
      new Promise<Buffer>((resolve, reject) => sftp.readFile(file, (e, data) => (e ? reject(sftpError(e, 'read', file)) : resolve(data)))),
      SFTP_TIMEOUT_MS,
      () => new HostError(this.id, 'timeout', `reading ${file} on ${this.id} timed out`),
    );
  }

  async writeFileAtomic(file: string, data: string | Buffer, mode?: number): Promise<void> {
    checkPath(file);
    if (mode !== undefined) checkMode(mode);
    const sftp = await this.sftp();
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const dir = path.posix.dirname(file);
    const tmp = path.posix.join(dir, `.${path.posix.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
    const call = <T>(op: string, target: string, fn: (cb: (e: Error | null | undefined, v?: T) => void) => void) =>
      new Promise<T>((resolve, reject) => fn((e, v) => (e ? reject(sftpError(e, op, target)) : resolve(v as T))));

    const work = async () => {
      let finalMode = mode;
      if (finalMode === undefined) {
        try {
          const st = await call<{ mode: number }>('stat', file, (cb) => sftp.stat(file, cb));
          finalMode = st.mode & 0o7777;
        } catch {
          finalMode = 0o644;
        }
      }
      const handle = await call<Buffer>('create', tmp, (cb) => sftp.open(tmp, 'wx', { mode: 0o600 }, cb));
      try {
        try {
          if (buf.length > 0) await call('write', tmp, (cb) => sftp.write(handle, buf, 0, buf.length, 0, cb));
          await call('chmod', tmp, (cb) => sftp.fchmod(handle, finalMode!, cb));
          await call('fsync', tmp, (cb) => sftp.ext_openssh_fsync(handle, (e) => cb(e))).catch(() => undefined); // optional extension
        } finally {
          await call('close', tmp, (cb) => sftp.close(handle, cb));
        }
        try {
          // posix-rename@openssh.com replaces the target atomically; plain SFTP rename refuses to.
          await call('rename', tmp, (cb) => sftp.ext_openssh_rename(tmp, file, cb));
        } catch (e) {
          if (!/not supported|extension/i.test((e as Error).message)) throw e;
          await runChecked(this, ['mv', '-f', '--', tmp, file], { timeoutMs: SFTP_TIMEOUT_MS });
        }
      } catch (e) {
        await call('unlink', tmp, (cb) => sftp.unlink(tmp, cb)).catch(() => undefined);
        throw e;
      }
    };
    await withTimeout(work(), SFTP_TIMEOUT_MS * 2, () => new HostError(this.id, 'timeout', `writing ${file} on ${this.id} timed out`));
  }

  async mkdirp(dir: string, mode?: number): Promise<void> {
    checkPath(dir);
    if (mode !== undefined) checkMode(mode);
    await runChecked(this, ['mkdir', '-p', '--', dir], { timeoutMs: SFTP_TIMEOUT_MS });
    if (mode !== undefined) await runChecked(this, ['chmod', mode.toString(8), '--', dir], { timeoutMs: SFTP_TIMEOUT_MS });
  }

  async remove(target: string): Promise<void> {
    checkRemovable(target);
    await runChecked(this, ['rm', '-rf', '--', target], { timeoutMs: SFTP_TIMEOUT_MS });
  }

  async exists(target: string): Promise<boolean> {
    checkPath(target);
    const sftp = await this.sftp();
    return withTimeout(
      new Promise<boolean>((resolve, reject) =>
        sftp.lstat(target, (e) => {
          if (!e) return resolve(true);
          if (sftpCode(e) === 2) return resolve(false);
          reject(sftpError(e, 'lstat', target));
        }),
      ),
      SFTP_TIMEOUT_MS,
      () => new HostError(this.id, 'timeout', `checking ${target} on ${this.id} timed out`),
    );
  }

  /** TCP via `direct-tcpip` (forwardOut); unix sockets via OpenSSH's `direct-streamlocal`. */
  async openStream(target: StreamTarget): Promise<Duplex> {
    if ('path' in target) checkPath(target.path);
    else checkTcpTarget(target);
    const client = await this.client();
    const where = 'path' in target ? target.path : `${target.host}:${target.port}`;
    return withTimeout(
      new Promise<Duplex>((resolve, reject) => {
        const cb = (e: Error | undefined, stream: ClientChannel) => {
          if (e) reject(new HostError(this.id, 'connection', `cannot connect to ${where} on ${this.id}: ${e.message}`));
          else resolve(stream);
        };
        try {
          if ('path' in target) client.openssh_forwardOutStreamLocal(target.path, cb);
          else client.forwardOut('127.0.0.1', 0, target.host, target.port, cb);
        } catch (e) {
          reject(new HostError(this.id, 'connection', `cannot connect to ${where} on ${this.id}: ${(e as Error).message}`));
        }
      }),
      STREAM_OPEN_TIMEOUT_MS,
      () => new HostError(this.id, 'timeout', `connecting to ${where} on ${this.id} timed out`),
    );
  }

  /** Ends the connection; the host cannot be used afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    const current = this.connected?.client ?? (await this.connecting?.then((c) => c.client).catch(() => undefined));
    this.connected = undefined;
    this.sftpSession = undefined;
    if (!current) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        current.destroy();
        resolve();
      }, 2000);
      current.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      current.end();
    });
  }

  private async client(): Promise<Client> {
    if (this.closed) throw new HostError(this.id, 'connection', `SSH connection to ${this.id} was closed`);
    if (this.connected) return this.connected.client;
    this.connecting ??= connectSsh(this.options).then(
      (c) => {
        this.connecting = undefined;
        if (this.closed) {
          c.client.end();
          throw new HostError(this.id, 'connection', `SSH connection to ${this.id} was closed`);
        }
        this.connected = c;
        const forget = () => {
          if (this.connected === c) {
            this.connected = undefined;
            this.sftpSession = undefined;
          }
        };
        c.client.on('close', forget);
        c.client.on('error', forget);
        return c;
      },
      (e: Error) => {
        this.connecting = undefined;
        if (e instanceof HostError) throw e;
        throw new HostError(this.id, 'connection', `SSH connection to ${this.id} failed: ${e.message}`);
      },
    );
    return (await this.connecting).client;
  }

  private async sftp(): Promise<SFTPWrapper> {
    const client = await this.client();
    if (!this.sftpSession) {
      const session = withTimeout(
        new Promise<SFTPWrapper>((resolve, reject) =>
          client.sftp((e, sftp) => {
            if (e) return reject(new HostError(this.id, 'connection', `cannot open SFTP on ${this.id}: ${e.message}`));
            sftp.on('close', () => {
              if (this.sftpSession === session) this.sftpSession = undefined;
            });
            resolve(sftp);
          }),
        ),
        SFTP_TIMEOUT_MS,
        () => new HostError(this.id, 'timeout', `opening SFTP on ${this.id} timed out`),
      );
      this.sftpSession = session;
      session.catch(() => {
        if (this.sftpSession === session) this.sftpSession = undefined;
      });
    }
    return this.sftpSession;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/** An SSH key pair in OpenSSH format. */
export interface SshKeyPair {
  /** `-----BEGIN OPENSSH PRIVATE KEY-----…`, unencrypted; store it encrypted at rest. */
  privateKey: string;
  /** One `authorized_keys` line: `ssh-ed25519 AAAA… comment`. */
  publicKey: string;
}

/**
 * Generates the key the main server uses to log in to nodes.
 *
 * @example
 * const { privateKey, publicKey } = generateSshKeyPair('ed25519', 'polygate@main');
 */
export function generateSshKeyPair(type: 'ed25519' | 'rsa' = 'ed25519', comment = 'polygate'): SshKeyPair {
  const safeComment = comment.replace(/[^A-Za-z0-9_.@:-]/g, '_').slice(0, 64);
  const keys = type === 'rsa' ? sshUtils.generateKeyPairSync('rsa', { bits: 3072, comment: safeComment }) : sshUtils.generateKeyPairSync('ed25519', { comment: safeComment });
  const publicKey = keys.public.trim();
  return { privateKey: keys.private, publicKey: publicKey.includes(' ', publicKey.indexOf(' ') + 1) ? publicKey : `${publicKey} ${safeComment}` };
}

const PUBLIC_KEY_RE = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) ([A-Za-z0-9+/]+={0,3})(?: ([\x20-\x7e]{0,200}))?$/;

/**
 * Adds `publicKey` to `~/.ssh/authorized_keys` of the user the host runs programs as,
 * unless a line with the same key (type and blob, whatever the comment) is there already.
 * Sets `~/.ssh` to 0700 and the file to 0600 (what sshd's StrictModes demands), writing the
 * file atomically.
 *
 * @example
 * await installAuthorizedKey(new SshHost('node_3', { host, username: 'root', password }), keys.publicKey);
 */
export async function installAuthorizedKey(host: Host, publicKey: string): Promise<{ installed: boolean; path: string }> {
  const line = publicKey.trim();
  const m = PUBLIC_KEY_RE.exec(line);
  if (!m) throw invalid('public key must be one OpenSSH public key line (e.g. "ssh-ed25519 AAAA… comment")');
  const { stdout } = await runChecked(host, ['printenv', 'HOME'], { timeoutMs: 20_000 });
  const home = stdout.trim();
  if (!home.startsWith('/')) throw new HostError(host.id, 'failed', `cannot find the home directory on ${host.id} (HOME=${JSON.stringify(home)})`);
  const dir = path.posix.join(home, '.ssh');
  const file = path.posix.join(dir, 'authorized_keys');
  await host.mkdirp(dir, 0o700);
  let existing = '';
  if (await host.exists(file)) existing = (await host.readFile(file)).toString('utf8');
  const present = existing.split('\n').some((l) => {
    const fields = l.trim().split(/\s+/);
    // Options may precede the key type in authorized_keys; look for type + blob anywhere.
    const i = fields.indexOf(m[1]!);
    return i >= 0 && fields[i + 1] === m[2];
  });
  if (present) {
    await runChecked(host, ['chmod', '600', '--', file], { timeoutMs: 20_000 });
    return { installed: false, path: file };
  }
  const prefix = existing === '' || existing.endsWith('\n') ? existing : `${existing}\n`;
  await host.writeFileAtomic(file, `${prefix}${line}\n`, 0o600);
  return { installed: true, path: file };
}
