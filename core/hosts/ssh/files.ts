import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { checkMode, checkPath, checkRemovable } from '../checks';
import { HostError, runChecked, type Host } from '../host';
import type { SshConnection } from './connection';
import { withTimeout } from './timeout';

export const SFTP_TIMEOUT_MS = 30_000;

const sftpCode = (e: unknown): number | undefined => (e as { code?: unknown }).code as number | undefined;

/** Gives sftp errors the errno codes Node's fs uses, so callers treat both hosts alike. */
function sftpError(e: unknown, op: string, file: string): Error {
  const code = sftpCode(e);
  const errno = code === 2 ? 'ENOENT' : code === 3 ? 'EACCES' : undefined;
  const err = new Error(`${op} ${file}: ${(e as Error).message}`) as NodeJS.ErrnoException;
  if (errno) err.code = errno;
  return err;
}

export async function readRemoteFile(connection: SshConnection, file: string): Promise<Buffer> {
  const hostId = connection.hostId;
  checkPath(file);
  const sftp = await connection.sftp();
  return withTimeout(
    new Promise<Buffer>((resolve, reject) => sftp.readFile(file, (e, data) => (e ? reject(sftpError(e, 'read', file)) : resolve(data)))),
    SFTP_TIMEOUT_MS,
    () => new HostError(hostId, 'timeout', `reading ${file} on ${hostId} timed out`),
  );
}

export async function writeRemoteFileAtomic(connection: SshConnection, host: Host, file: string, data: string | Buffer, mode?: number): Promise<void> {
  const hostId = connection.hostId;
  checkPath(file);
  if (mode !== undefined) checkMode(mode);
  const sftp = await connection.sftp();
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
        await runChecked(host, ['mv', '-f', '--', tmp, file], { timeoutMs: SFTP_TIMEOUT_MS });
      }
    } catch (e) {
      await call('unlink', tmp, (cb) => sftp.unlink(tmp, cb)).catch(() => undefined);
      throw e;
    }
  };
  await withTimeout(work(), SFTP_TIMEOUT_MS * 2, () => new HostError(hostId, 'timeout', `writing ${file} on ${hostId} timed out`));
}

export async function remoteMkdirp(host: Host, dir: string, mode?: number): Promise<void> {
  checkPath(dir);
  if (mode !== undefined) checkMode(mode);
  await runChecked(host, ['mkdir', '-p', '--', dir], { timeoutMs: SFTP_TIMEOUT_MS });
  if (mode !== undefined) await runChecked(host, ['chmod', mode.toString(8), '--', dir], { timeoutMs: SFTP_TIMEOUT_MS });
}

export async function remoteRemove(host: Host, target: string): Promise<void> {
  checkRemovable(target);
  await runChecked(host, ['rm', '-rf', '--', target], { timeoutMs: SFTP_TIMEOUT_MS });
}

export async function remoteExists(connection: SshConnection, target: string): Promise<boolean> {
  const hostId = connection.hostId;
  checkPath(target);
  const sftp = await connection.sftp();
  return withTimeout(
    new Promise<boolean>((resolve, reject) =>
      sftp.lstat(target, (e) => {
        if (!e) return resolve(true);
        if (sftpCode(e) === 2) return resolve(false);
        reject(sftpError(e, 'lstat', target));
      }),
    ),
    SFTP_TIMEOUT_MS,
    () => new HostError(hostId, 'timeout', `checking ${target} on ${hostId} timed out`),
  );
}
