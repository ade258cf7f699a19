import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/*
 * A real OpenSSH server on 127.0.0.1 standing in for a node (see /work/shared/recipes/ssh.sh):
 * own config and host key in a temp dir, a free high port, password authentication for a
 * throwaway user. Needs root (useradd, chpasswd, sshd's privilege separation) and
 * /usr/sbin/sshd; suites call `sshdUnavailableReason()` and skip with the reason otherwise
 * (CI installs openssh-server and runs as root, so nothing skips there).
 */

const SSHD = '/usr/sbin/sshd';
const USER_PREFIX = 'pgnt';
/**
 * One user per test process: parallel runs (CI shards, a developer beside another helper)
 * must never reset each other's password or delete each other's user.
 */
export const SSHD_TEST_USER = `${USER_PREFIX}${process.pid}`;
/** Random per process: a known password must not outlive the run on a machine with a real sshd. */
const PASSWORD = `Pg-${randomBytes(12).toString('base64url')}`;

export interface SshdFixture {
  host: '127.0.0.1';
  port: number;
  username: string;
  password: string;
  pid: number;
  /** Everything sshd wrote to stderr (-e), for failure messages. */
  log(): string;
  /** Stops sshd (SIGTERM, SIGKILL after 3 s) and removes its temp dir; idempotent. */
  stop(): Promise<void>;
}

/** Why a real sshd cannot run here, or null when it can. */
export function sshdUnavailableReason(): string | null {
  if (process.getuid?.() !== 0) return 'not running as root (needs useradd, chpasswd and sshd)';
  if (!existsSync(SSHD)) return `${SSHD} is missing (apt-get install -y --no-install-recommends openssh-server)`;
  for (const tool of ['ssh-keygen', 'useradd', 'chpasswd']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'pipe' });
    } catch {
      return `${tool} is missing`;
    }
  }
  return null;
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export function canConnect(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** A TCP server that accepts connections and never says a word (an SSH handshake that hangs). */
export async function startSilentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

let userReady = false;
let liveFixtures = 0;

function userExists(name: string): boolean {
  try {
    execFileSync('id', ['-u', name], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

function deleteUser(name: string): void {
  try {
    execFileSync('userdel', ['-r', '-f', name], { stdio: 'pipe' });
  } catch {
    /* mail spool missing and similar: harmless */
  }
}

/** Users left behind by test processes that died before their cleanup. */
function removeStaleTestUsers(): void {
  let passwd = '';
  try {
    passwd = readFileSync('/etc/passwd', 'utf8');
  } catch {
    return;
  }
  for (const m of passwd.matchAll(new RegExp(`^${USER_PREFIX}(\\d+):`, 'gm'))) {
    const pid = Number(m[1]);
    if (pid !== process.pid && !existsSync(`/proc/${pid}`)) deleteUser(`${USER_PREFIX}${pid}`);
  }
}

function ensureTestUser(): void {
  if (userReady) return;
  removeStaleTestUsers();
  if (!userExists(SSHD_TEST_USER)) execFileSync('useradd', ['-m', '-s', '/bin/sh', SSHD_TEST_USER], { stdio: 'pipe' });
  execFileSync('chpasswd', { input: `${SSHD_TEST_USER}:${PASSWORD}\n`, stdio: ['pipe', 'pipe', 'pipe'] });
  userReady = true;
}

/** Removes this process's test user once its last fixture stopped. */
function releaseTestUser(): void {
  if (liveFixtures > 0 || !userReady) return;
  userReady = false;
  deleteUser(SSHD_TEST_USER);
}

/** OpenSSH ≥ 9.8 penalizes sources with failed logins; tests fail logins on purpose. */
function supportsPerSourcePenalties(): boolean {
  try {
    execFileSync(SSHD, ['-V'], { stdio: 'pipe' });
  } catch (e) {
    const out = String((e as { stderr?: Buffer }).stderr ?? '');
    const m = /OpenSSH_(\d+)\.(\d+)/.exec(out);
    if (m) return Number(m[1]) > 9 || (Number(m[1]) === 9 && Number(m[2]) >= 8);
  }
  return false;
}

async function waitUntil(what: string, ms: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/**
 * Starts sshd on 127.0.0.1 on a free high port and resolves once the port accepts (within
 * 10 s). Throws with sshd's own log when it exits or never listens.
 */
export async function startSshd(): Promise<SshdFixture> {
  const reason = sshdUnavailableReason();
  if (reason) throw new Error(`cannot start sshd: ${reason}`);
  ensureTestUser();
  liveFixtures++;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pg-node-sshd-'));
  let child: ChildProcess | undefined;
  let log = '';
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    await fs.rm(dir, { recursive: true, force: true });
    liveFixtures--;
    releaseTestUser();
  };
  try {
    await fs.mkdir('/run/sshd', { recursive: true, mode: 0o755 }); // privilege separation dir
    const hostKey = path.join(dir, 'host_ed25519');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey], { stdio: 'pipe' });
    const port = await freePort();
    const cfg = path.join(dir, 'sshd_config');
    await fs.writeFile(
      cfg,
      [
        `ListenAddress 127.0.0.1:${port}`,
        `HostKey ${hostKey}`,
        `PidFile ${path.join(dir, 'sshd.pid')}`,
        'PasswordAuthentication yes',
        'KbdInteractiveAuthentication no',
        'PubkeyAuthentication yes',
        'UsePAM yes',
        'PermitRootLogin no',
        `AllowUsers ${SSHD_TEST_USER}`,
        'StrictModes no',
        'Subsystem sftp internal-sftp',
        'LogLevel VERBOSE',
        ...(supportsPerSourcePenalties() ? ['PerSourcePenalties no'] : []),
        '',
      ].join('\n'),
    );
    execFileSync(SSHD, ['-t', '-f', cfg], { stdio: 'pipe' });
    child = spawn(SSHD, ['-D', '-e', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (c: Buffer) => {
      log += c.toString();
      if (log.length > 200_000) log = log.slice(-100_000);
    });
    const started = child;
    await waitUntil(`sshd listening on 127.0.0.1:${port}`, 10_000, () => {
      if (started.exitCode !== null || started.signalCode !== null) throw new Error(`sshd exited during start:\n${log}`);
      return canConnect(port);
    });
    return { host: '127.0.0.1', port, username: SSHD_TEST_USER, password: PASSWORD, pid: started.pid!, log: () => log, stop };
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}${log ? `\n--- sshd log ---\n${log}` : ''}`);
  }
}
