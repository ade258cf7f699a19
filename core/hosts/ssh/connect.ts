import { createHash } from 'node:crypto';
import { Client, type ConnectConfig } from 'ssh2';

/** Default limit for TCP connect + SSH handshake + authentication. */
export const DEFAULT_SSH_CONNECT_TIMEOUT_MS = 20_000;

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

/** OpenSSH-style fingerprint of a raw host key: `SHA256:` + unpadded base64 of its SHA-256. */
export function hostKeyFingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/** Why a connection attempt failed, worded for humans ("connection refused (10.0.0.5:22)"). */
class SshConnectFailure extends Error {}

/** An authenticated connection and the fingerprint of the host key it was made with. */
export interface Connected {
  client: Client;
  hostKeySha256: string;
}

/**
 * Opens one authenticated ssh2 connection. Rejects with `SshConnectFailure` whose message
 * says what failed: refused, unreachable, unresolvable, timed out, authentication, host key.
 */
export function connectSsh(options: SshConnectionOptions): Promise<Connected> {
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
