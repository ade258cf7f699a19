import { DomainError } from '../../errors';
import { connectSsh, DEFAULT_SSH_CONNECT_TIMEOUT_MS, type Connected, type SshConnectionOptions } from './connect';
import { execOnce } from './exec';

/** Where and how to log in; no pinned host key, since preflight is what records it. */
export interface SshPreflightOptions extends Pick<SshConnectionOptions, 'host' | 'port' | 'username' | 'password' | 'privateKey' | 'passphrase'> {
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
