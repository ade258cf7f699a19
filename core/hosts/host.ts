import type { Duplex } from 'node:stream';
import { DomainError } from '../errors';

/** Result of running one program to completion on a host. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Written to the program's stdin, then stdin is closed. */
  stdin?: string | Buffer;
  /** Killed (SIGKILL) after this long; the promise then rejects. Default 60 s. */
  timeoutMs?: number;
  env?: Record<string, string>;
  cwd?: string;
}

/** A long-running process started on a host (a VPN daemon the plugin supervises). */
export interface HostProcess {
  readonly pid: number | undefined;
  /**
   * Resolves once, with the exit code (null when killed by a signal) and the signal name.
   * Never rejects: when the program could not be started at all, `code` and `signal` are
   * null and `error` says why.
   */
  readonly exited: Promise<HostProcessExit>;
  kill(signal?: NodeJS.Signals): void;
}

export interface HostProcessExit {
  code: number | null;
  signal: string | null;
  /** Set when the process could not be started or the connection carrying it was lost. */
  error?: string;
}

export interface SpawnOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** Called with each chunk of stdout+stderr (for logs); optional. */
  onOutput?: (chunk: string) => void;
}

export type StreamTarget = { host: string; port: number } | { path: string };

/**
 * The only way plugins and core touch a machine: the main server (LocalHost) or a node
 * (SshHost). Programs run from argv arrays, never through a shell, so no user string can
 * be interpreted by one.
 */
export interface Host {
  /** `main` for the main server, `node_<id>` for nodes. */
  readonly id: string;
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult>;
  spawn(argv: readonly string[], options?: SpawnOptions): HostProcess;
  readFile(path: string): Promise<Buffer>;
  /**
   * Writes to a temporary file beside `path` (fsynced), then renames it over `path`.
   * `mode` is set exactly (not masked by umask); without it an existing file keeps its mode
   * and a new one gets 0o644.
   */
  writeFileAtomic(path: string, data: string | Buffer, mode?: number): Promise<void>;
  /** Creates the directory and missing parents; `mode`, when given, is set exactly on `path`. */
  mkdirp(path: string, mode?: number): Promise<void>;
  /** Removes a file or a directory tree; absent paths are not an error. */
  remove(path: string): Promise<void>;
  exists(path: string): Promise<boolean>;
  /** A TCP or unix-socket stream opened from the host's side (ssh forwardOut on nodes). */
  openStream(target: StreamTarget): Promise<Duplex>;
  close(): Promise<void>;
}

/** Why a host operation failed, for callers that react differently (e.g. firewall "unmanaged"). */
export type HostErrorReason =
  /** The program does not exist on the host (ENOENT on spawn). */
  | 'not_found'
  /** The program or the connection took longer than allowed; the program was killed. */
  | 'timeout'
  /** The host cannot be reached or the SSH session failed. */
  | 'connection'
  /** Output exceeded the buffer limit; the program was killed. */
  | 'output_too_large'
  /** Any other failure to run the program or touch the file. */
  | 'failed';

/**
 * A host could not perform an operation (as opposed to the program exiting non-zero, which
 * `run()` reports through `RunResult.code`). Kind `unavailable`: the machine, not the input,
 * is the problem.
 */
export class HostError extends DomainError {
  constructor(
    readonly hostId: string,
    readonly reason: HostErrorReason,
    message: string,
  ) {
    super('unavailable', message);
    this.name = 'HostError';
  }
}

export const isHostError = (e: unknown): e is HostError => e instanceof HostError;

/**
 * Runs `argv` and throws a `HostError` (reason `failed`) naming the program and its stderr
 * when it exits non-zero.
 *
 * @example
 * const { stdout } = await runChecked(host, ['ip', '-j', 'addr']);
 */
export async function runChecked(host: Host, argv: readonly string[], options?: RunOptions): Promise<RunResult> {
  const result = await host.run(argv, options);
  if (result.code !== 0) {
    const detail = (result.stderr.trim() || result.stdout.trim()).slice(0, 500);
    throw new HostError(host.id, 'failed', `${argv[0]} exited with code ${result.code} on ${host.id}${detail ? `: ${detail}` : ''}`);
  }
  return result;
}
