import type { Client, ClientChannel } from 'ssh2';
import { HostError, type RunOptions, type RunResult } from '../host';
import { DEFAULT_RUN_TIMEOUT_MS, MAX_RUN_OUTPUT_BYTES } from '../local-host';
import { remoteCommandLine } from './command-line';
import type { SshConnection } from './connection';

/**
 * OpenSSH's `MaxSessions` defaults to 10 session channels per connection (exec, sftp and
 * spawned programs each take one, and sshd frees a slot a moment after the channel closes).
 * Runs stay well below it; a refused channel open is retried with backoff.
 */
const MAX_CONCURRENT_RUNS = 6;
const CHANNEL_RETRIES = 6;

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

/** Errors from `execOnce` where the command never started (no channel): safe to retry. */
const notStarted = new WeakSet<Error>();

/**
 * Takes the `polygate-pid:<n>` line out of the start of stderr. Login scripts on the node
 * may print before it, so it is looked for in the first 4 KiB rather than the first line.
 */
export class PidAnnouncement {
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
export function execOnce(
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


/**
 * `run()` over one connection: one exec channel per call, at most `MAX_CONCURRENT_RUNS` at
 * a time, retried while the channel never opened.
 */
export class SshRunner {
  private readonly slots = new Semaphore(MAX_CONCURRENT_RUNS);

  constructor(private readonly connection: SshConnection) {}

  async run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const hostId = this.connection.hostId;
    const command = remoteCommandLine(argv, { env: options.env, cwd: options.cwd, announcePid: true });
    for (let attempt = 0; ; attempt++) {
      const client = await this.connection.client();
      const release = await this.slots.acquire();
      let retry: Error;
      try {
        return await execOnce(client, command, {
          stdin: options.stdin,
          timeoutMs: options.timeoutMs ?? DEFAULT_RUN_TIMEOUT_MS,
          hostId,
          label: argv[0],
          announcesPid: true,
          // The program leads its own process group (sshd calls setsid): end all of it.
          killRemote: (pid) => killRemote(client, hostId, ['kill', '-s', 'KILL', '--', `-${pid}`]),
        });
      } catch (e) {
        if (!(e instanceof Error) || !notStarted.has(e) || attempt >= CHANNEL_RETRIES) throw e;
        retry = e;
      } finally {
        release();
      }
      // The command never started, so trying again is safe: either the connection died
      // under us (reconnect on the next turn) or sshd had no free session slot yet (back off).
      if (this.connection.current === client) {
        if (!/open failed/i.test(retry.message)) throw retry;
        await new Promise((r) => setTimeout(r, 50 * 2 ** attempt));
      }
    }
  }
}

/** Best effort, on its own channel, outside the run slots (it must not wait behind them). */
export function killRemote(client: Client, hostId: string, argv: string[]): void {
  execOnce(client, remoteCommandLine(argv), { timeoutMs: 10_000, hostId, label: 'kill' }).catch(() => undefined);
}
