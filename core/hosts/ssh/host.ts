import type { Duplex } from 'node:stream';
import type { Host, HostProcess, RunOptions, RunResult, SpawnOptions, StreamTarget } from '../host';
import type { SshConnectionOptions } from './connect';
import { SshConnection } from './connection';
import { SshRunner } from './exec';
import { readRemoteFile, remoteExists, remoteMkdirp, remoteRemove, writeRemoteFileAtomic } from './files';
import { spawnRemote } from './spawn';
import { openRemoteStream } from './streams';

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
  private readonly connection: SshConnection;
  private readonly runner: SshRunner;

  constructor(
    readonly id: string,
    options: SshConnectionOptions,
  ) {
    this.connection = new SshConnection(id, options);
    this.runner = new SshRunner(this.connection);
  }

  /** Fingerprint of the host key of the current connection, once connected. */
  get hostKeySha256(): string | undefined {
    return this.connection.hostKeySha256;
  }

  /** Connects now (otherwise the first operation does). Throws `HostError` reason `connection`. */
  async connect(): Promise<void> {
    await this.connection.client();
  }

  run(argv: readonly string[], options?: RunOptions): Promise<RunResult> {
    return this.runner.run(argv, options);
  }

  spawn(argv: readonly string[], options?: SpawnOptions): HostProcess {
    return spawnRemote(this.connection, argv, options);
  }

  readFile(file: string): Promise<Buffer> {
    return readRemoteFile(this.connection, file);
  }

  writeFileAtomic(file: string, data: string | Buffer, mode?: number): Promise<void> {
    return writeRemoteFileAtomic(this.connection, this, file, data, mode);
  }

  mkdirp(dir: string, mode?: number): Promise<void> {
    return remoteMkdirp(this, dir, mode);
  }

  remove(target: string): Promise<void> {
    return remoteRemove(this, target);
  }

  exists(target: string): Promise<boolean> {
    return remoteExists(this.connection, target);
  }

  /** TCP via `direct-tcpip` (forwardOut); unix sockets via OpenSSH's `direct-streamlocal`. */
  openStream(target: StreamTarget): Promise<Duplex> {
    return openRemoteStream(this.connection, target);
  }

  /** Ends the connection; the host cannot be used afterwards. */
  close(): Promise<void> {
    return this.connection.close();
  }
}
