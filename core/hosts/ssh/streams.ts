import type { Duplex } from 'node:stream';
import type { ClientChannel } from 'ssh2';
import { checkPath, checkTcpTarget } from '../checks';
import { HostError, type StreamTarget } from '../host';
import type { SshConnection } from './connection';
import { withTimeout } from './timeout';

const STREAM_OPEN_TIMEOUT_MS = 10_000;

/** TCP via `direct-tcpip` (forwardOut); unix sockets via OpenSSH's `direct-streamlocal`. */
export async function openRemoteStream(connection: SshConnection, target: StreamTarget): Promise<Duplex> {
  const hostId = connection.hostId;
  if ('path' in target) checkPath(target.path);
  else checkTcpTarget(target);
  const client = await connection.client();
  const where = 'path' in target ? target.path : `${target.host}:${target.port}`;
  return withTimeout(
    new Promise<Duplex>((resolve, reject) => {
      const cb = (e: Error | undefined, stream: ClientChannel) => {
        if (e) reject(new HostError(hostId, 'connection', `cannot connect to ${where} on ${hostId}: ${e.message}`));
        else resolve(stream);
      };
      try {
        if ('path' in target) client.openssh_forwardOutStreamLocal(target.path, cb);
        else client.forwardOut('127.0.0.1', 0, target.host, target.port, cb);
      } catch (e) {
        reject(new HostError(hostId, 'connection', `cannot connect to ${where} on ${hostId}: ${(e as Error).message}`));
      }
    }),
    STREAM_OPEN_TIMEOUT_MS,
    () => new HostError(hostId, 'timeout', `connecting to ${where} on ${hostId} timed out`),
  );
}
