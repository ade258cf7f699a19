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
/** Prefix of the per-process uid-0 login (a second name for root) that provisioning tests use. */
const ROOT_USER_PREFIX = 'pgnr';
/**
 * One user per test process: parallel runs (CI shards, a developer beside another helper)
 * must never reset each other's password or delete each other's user.
 */
export const SSHD_TEST_USER = `${USER_PREFIX}${process.pid}`;
/** Random per process: a known password must not outlive the run on a machine with a real sshd. */
const PASSWORD = `Pg-${randomBytes(12).toString('base64url')}`;
/**
 * A uid-0 login of our own, so provisioning (which needs root) is tested without touching
 * root's own password on a shared machine. Its password is random per process too.
 */
export const SSHD_ROOT_USER = `${ROOT_USER_PREFIX}${process.pid}`;
const ROOT_PASSWORD = `Pr-${randomBytes(12).toString('base64url')}`;

export interface SshdOptions {
  /** Run sshd inside this network namespace (one "node" per namespace, as in recipes/ssh.sh). */
  netns?: string;
  /** Address to listen on (default 127.0.0.1); must be reachable from the test process. */
  listenAddress?: string;
  /** Port (default: a free high port on 127.0.0.1, or 22 inside a namespace). */
  port?: number;
  /** Log in as a uid-0 user (PermitRootLogin yes for that user only) instead of the unprivileged one. */
  root?: boolean;
  /**
   * The unprivileged login gets passwordless sudo (a sudoers.d entry removed at stop), and root
   * may log in with a key. sshd runs in a private mount namespace where root's `~/.ssh` is a
   * directory of the fixture's own, so nothing of this machine's root login changes.
   */
  sudo?: boolean;
}

export interface SshdFixture {
  host: string;
  port: number;
  username: string;
  password: string;
  pid: number;
  /** Path of the host private key file (its public half beside it, `.pub`). */
  hostKeyPath: string;
  /** Restarts sshd on the same address with a brand-new host key (a node that was replaced or hijacked). */
  replaceHostKey(): Promise<void>;
  /** Sets the login user's password on this machine (all fixtures share /etc/shadow). */
  setPassword(password: string): void;
  /** Everything sshd wrote to stderr (-e), for failure messages. */
  log(): string;
  /** With `sudo`: root's authorized_keys as sshd (and everything started under it) sees it. */
  rootAuthorizedKeysPath?: string;
  /** Stops sshd (SIGTERM, SIGKILL after 3 s) and removes its temp dir; idempotent. */
  stop(): Promise<void>;
}

/** Why a real sshd cannot run here, or null when it can. */
export function sshdUnavailableReason(): string | null {
  if (process.getuid?.() !== 0) return 'not running as root (needs useradd, chpasswd and sshd)';
  if (!existsSync(SSHD)) return `${SSHD} is missing (apt-get install -y --no-install-recommends openssh-server)`;
  for (const tool of ['ssh-keygen', 'useradd', 'chpasswd', 'unshare']) {
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
  for (const prefix of [USER_PREFIX, ROOT_USER_PREFIX]) {
    for (const m of passwd.matchAll(new RegExp(`^${prefix}(\\d+):`, 'gm'))) {
      const pid = Number(m[1]);
      if (pid !== process.pid && !existsSync(`/proc/${pid}`)) deleteUser(`${prefix}${pid}`);
    }
  }
}

let rootUserReady = false;

function ensureTestUser(root = false): void {
  if (!userReady) {
    removeStaleTestUsers();
    if (!userExists(SSHD_TEST_USER)) execFileSync('useradd', ['-m', '-s', '/bin/sh', SSHD_TEST_USER], { stdio: 'pipe' });
    execFileSync('chpasswd', { input: `${SSHD_TEST_USER}:${PASSWORD}\n`, stdio: ['pipe', 'pipe', 'pipe'] });
    userReady = true;
  }
  if (root && !rootUserReady) {
    if (!userExists(SSHD_ROOT_USER)) execFileSync('useradd', ['-o', '-u', '0', '-g', '0', '-m', '-s', '/bin/sh', SSHD_ROOT_USER], { stdio: 'pipe' });
    execFileSync('chpasswd', { input: `${SSHD_ROOT_USER}:${ROOT_PASSWORD}\n`, stdio: ['pipe', 'pipe', 'pipe'] });
    rootUserReady = true;
  }
}

/** Removes this process's test users once its last fixture stopped. */
function releaseTestUser(): void {
  if (liveFixtures > 0 || !userReady) return;
  userReady = false;
  deleteUser(SSHD_TEST_USER);
  if (rootUserReady) {
    rootUserReady = false;
    deleteUser(SSHD_ROOT_USER);
  }
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
 * Starts sshd on 127.0.0.1 on a free high port (or inside `options.netns`) and resolves once
 * the port accepts (within 10 s). Throws with sshd's own log when it exits or never listens.
 */
export async function startSshd(options: SshdOptions = {}): Promise<SshdFixture> {
  const reason = sshdUnavailableReason();
  if (reason) throw new Error(`cannot start sshd: ${reason}`);
  ensureTestUser(options.root === true);
  const username = options.root ? SSHD_ROOT_USER : SSHD_TEST_USER;
  liveFixtures++;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pg-node-sshd-'));
  let child: ChildProcess | undefined;
  let log = '';
  let stopped = false;
  const listenAddress = options.listenAddress ?? '127.0.0.1';
  const hostKey = path.join(dir, 'host_ed25519');
  const rootSshDir = path.join(dir, 'root-ssh');
  const sudoers = `/etc/sudoers.d/polygate-test-${process.pid}-${path.basename(dir)}`;
  const cfg = path.join(dir, 'sshd_config');
  const killChild = async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  };
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await killChild();
    if (options.sudo) await fs.rm(sudoers, { force: true });
    await fs.rm(dir, { recursive: true, force: true });
    liveFixtures--;
    releaseTestUser();
  };
  let port = options.port ?? 0;
  const launch = async () => {
    const sshd = [SSHD, '-D', '-e', '-f', cfg];
    // Root's ~/.ssh is swapped for the fixture's own in a mount namespace of sshd's alone.
    const contained = options.sudo ? ['unshare', '-m', '--propagation', 'private', 'sh', '-c', 'mount --bind "$1" /root/.ssh && shift && exec "$@"', 'sshd-fixture', rootSshDir, ...sshd] : sshd;
    const argv = options.netns ? ['ip', 'netns', 'exec', options.netns, ...contained] : contained;
    child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (c: Buffer) => {
      log += c.toString();
      if (log.length > 200_000) log = log.slice(-100_000);
    });
    const started = child;
    await waitUntil(`sshd listening on ${listenAddress}:${port}`, 10_000, () => {
      if (started.exitCode !== null || started.signalCode !== null) throw new Error(`sshd exited during start:\n${log}`);
      return canConnect(port, listenAddress);
    });
  };
  try {
    await fs.mkdir('/run/sshd', { recursive: true, mode: 0o755 }); // privilege separation dir
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey], { stdio: 'pipe' });
    if (port === 0) port = options.netns ? 22 : await freePort();
    if (options.sudo) {
      await fs.mkdir(rootSshDir, { mode: 0o700 });
      await fs.mkdir('/root/.ssh', { recursive: true, mode: 0o700 });
      await fs.writeFile(sudoers, `${username} ALL=(ALL) NOPASSWD: ALL\n`, { mode: 0o440 });
    }
    await fs.writeFile(
      cfg,
      [
        `ListenAddress ${listenAddress}:${port}`,
        `HostKey ${hostKey}`,
        `PidFile ${path.join(dir, 'sshd.pid')}`,
        'PasswordAuthentication yes',
        'KbdInteractiveAuthentication no',
        'PubkeyAuthentication yes',
        'UsePAM yes',
        // Only our own uid-0 name is allowed in (AllowUsers); root itself only with sudo, by key, into the fixture's ~/.ssh.
        `PermitRootLogin ${options.root ? 'yes' : options.sudo ? 'prohibit-password' : 'no'}`,
        `AllowUsers ${username}${options.sudo ? ' root' : ''}`,
        'StrictModes no',
        'Subsystem sftp internal-sftp',
        'LogLevel VERBOSE',
        ...(supportsPerSourcePenalties() ? ['PerSourcePenalties no'] : []),
        '',
      ].join('\n'),
    );
    execFileSync(SSHD, ['-t', '-f', cfg], { stdio: 'pipe' });
    await launch();
    return {
      host: listenAddress,
      port,
      username,
      password: options.root ? ROOT_PASSWORD : PASSWORD,
      get pid() {
        return child!.pid!;
      },
      hostKeyPath: hostKey,
      log: () => log,
      ...(options.sudo && { rootAuthorizedKeysPath: path.join(rootSshDir, 'authorized_keys') }),
      stop,
      setPassword: (password: string) => execFileSync('chpasswd', { input: `${username}:${password}\n`, stdio: ['pipe', 'pipe', 'pipe'] }),
      replaceHostKey: async () => {
        await killChild();
        await fs.rm(hostKey, { force: true });
        await fs.rm(`${hostKey}.pub`, { force: true });
        execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey], { stdio: 'pipe' });
        await launch();
      },
    };
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}${log ? `\n--- sshd log ---\n${log}` : ''}`);
  }
}
