/**
 * The daemon's control socket: a unix socket in the data dir (mode 0600, inside the 0700 data
 * dir, so only the daemon's user reaches it). It answers the operator CLI (`polygate status`,
 * `admin-key rotate`) and is how anything finds out whether a daemon runs on a data dir: the
 * kernel accepts a connection only while a process listens, so a crashed daemon's stale socket
 * file never counts (unlike a pid file, whose pid may have been reused).
 */
import { existsSync, readFileSync, unlinkSync, chmodSync, writeFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from '../logger';

export const CONTROL_SOCKET_NAME = 'polygate.sock';
export const PID_FILE_NAME = 'polygate.pid';
/** Linux's sun_path holds 108 bytes with the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

export const controlSocketPath = (dataDir: string): string => path.join(dataDir, CONTROL_SOCKET_NAME);

/** One request per connection: a JSON line in, a JSON line out. */
export interface ControlRequest {
  op: 'ping' | 'status' | 'auth.invalidate';
}
export type ControlReply = { ok: true; [key: string]: unknown } | { ok: false; error: string };
export type ControlHandlers = Record<ControlRequest['op'], () => Promise<Record<string, unknown>> | Record<string, unknown>>;

export class ControlSocketError extends Error {}

/** The version in package.json, found by walking up from here (source and dist/ layouts differ). */
export function packageVersion(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'polygate' && pkg.version) return pkg.version;
    }
    dir = path.dirname(dir);
  }
  return 'unknown';
}

/**
 * Asks the daemon on `dataDir`. Resolves `null` when none listens (no socket, or a stale one);
 * rejects only when something answers that is not a polygate daemon, or too slowly.
 */
export function askDaemon(dataDir: string, op: ControlRequest['op'], timeoutMs = 5000): Promise<ControlReply | null> {
  const socketPath = controlSocketPath(dataDir);
  if (!existsSync(socketPath)) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ path: socketPath });
    let buffer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ControlSocketError(`the daemon's control socket ${socketPath} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify({ op })}\n`));
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const nl = buffer.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      socket.end();
      try {
        resolve(JSON.parse(buffer.slice(0, nl)) as ControlReply);
      } catch {
        reject(new ControlSocketError(`${socketPath} answered something that is not JSON`));
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      // Nobody listens: a daemon that crashed left its socket file behind.
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(null);
      else reject(new ControlSocketError(`cannot reach ${socketPath}: ${err.message}`));
    });
  });
}

export interface ControlServer {
  close(): Promise<void>;
}

/**
 * Listens on `<dataDir>/polygate.sock` and writes `<dataDir>/polygate.pid`. Refuses (throws)
 * when another daemon already answers there: two daemons on one data dir would both start VPN
 * daemons and write the same database.
 */
export async function startControlServer(dataDir: string, handlers: ControlHandlers, logger: Logger): Promise<ControlServer> {
  const socketPath = controlSocketPath(dataDir);
  const pidFile = path.join(dataDir, PID_FILE_NAME);
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
    // Too long for a unix socket: the pid file is all `restore` and `status` can go by.
    logger.warn({ socketPath }, 'data dir path too long for the control socket; the CLI falls back to the pid file');
    writeFileSync(pidFile, `${process.pid}\n`, { mode: 0o600 });
    return { close: async () => rmSync(pidFile, { force: true }) };
  }
  if (await askDaemon(dataDir, 'ping').catch(() => ({ ok: true }) as ControlReply)) {
    throw new ControlSocketError(`another polygate daemon is running on the data dir ${dataDir} (it answers on ${socketPath}). Stop it first, or give this one its own POLYGATE_DATA_DIR.`);
  }
  if (existsSync(socketPath)) unlinkSync(socketPath);
  const server = net.createServer((socket) => {
    let buffer = '';
    socket.setEncoding('utf8');
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      if (buffer.length > 4096) return socket.destroy();
      const nl = buffer.indexOf('\n');
      if (nl < 0) return;
      const reply = (body: ControlReply) => socket.end(`${JSON.stringify(body)}\n`);
      let op: string | undefined;
      try {
        op = (JSON.parse(buffer.slice(0, nl)) as { op?: unknown }).op as string | undefined;
      } catch {
        return reply({ ok: false, error: 'not JSON' });
      }
      const handler = typeof op === 'string' && Object.hasOwn(handlers, op) ? handlers[op as ControlRequest['op']] : undefined;
      if (!handler) return reply({ ok: false, error: `unknown op ${JSON.stringify(op)}` });
      Promise.resolve()
        .then(() => handler())
        .then(
          (body) => reply({ ...body, ok: true }),
          (err: Error) => {
            logger.error({ err, op }, 'control request failed');
            reply({ ok: false, error: err.message });
          },
        );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(socketPath, 0o600);
  writeFileSync(pidFile, `${process.pid}\n`, { mode: 0o600 });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        rmSync(pidFile, { force: true });
        // close() unlinks the socket file itself.
        server.close(() => resolve());
      }),
  };
}

/**
 * Whether a daemon runs on `dataDir`: its control socket answers, or (for data dirs whose path
 * is too long for a socket) its pid file names a live process.
 */
export async function daemonRunning(dataDir: string): Promise<{ running: boolean; pid?: number; via?: 'socket' | 'pid file' }> {
  const reply = await askDaemon(dataDir, 'ping', 3000).catch(() => ({ ok: true }) as ControlReply);
  if (reply) {
    const pid = (reply as { pid?: unknown }).pid;
    return { running: true, pid: typeof pid === 'number' ? pid : undefined, via: 'socket' };
  }
  const pidFile = path.join(dataDir, PID_FILE_NAME);
  if (Buffer.byteLength(controlSocketPath(dataDir)) > MAX_SOCKET_PATH_BYTES && existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    if (Number.isInteger(pid) && pid > 0 && processAlive(pid)) return { running: true, pid, via: 'pid file' };
  }
  return { running: false };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
