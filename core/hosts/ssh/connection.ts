import type { Client, SFTPWrapper } from 'ssh2';
import { HostError } from '../host';
import { connectSsh, type Connected, type SshConnectionOptions } from './connect';
import { SFTP_TIMEOUT_MS } from './files';
import { withTimeout } from './timeout';

/**
 * The one SSH connection behind an `SshHost`, and its one SFTP session. Connects lazily,
 * reconnects after the connection drops, and refuses everything once closed.
 */
export class SshConnection {
  private connected: Connected | undefined;
  private connecting: Promise<Connected> | undefined;
  private sftpSession: Promise<SFTPWrapper> | undefined;
  private closed = false;

  constructor(
    readonly hostId: string,
    private readonly options: SshConnectionOptions,
  ) {}

  /** Fingerprint of the host key of the current connection, once connected. */
  get hostKeySha256(): string | undefined {
    return this.connected?.hostKeySha256;
  }

  /** The client of the live connection, if there is one (no connection attempt). */
  get current(): Client | undefined {
    return this.connected?.client;
  }

  async client(): Promise<Client> {
    if (this.closed) throw new HostError(this.hostId, 'connection', `SSH connection to ${this.hostId} was closed`);
    if (this.connected) return this.connected.client;
    this.connecting ??= connectSsh(this.options).then(
      (c) => {
        this.connecting = undefined;
        if (this.closed) {
          c.client.end();
          throw new HostError(this.hostId, 'connection', `SSH connection to ${this.hostId} was closed`);
        }
        this.connected = c;
        const forget = () => {
          if (this.connected === c) {
            this.connected = undefined;
            this.sftpSession = undefined;
          }
        };
        c.client.on('close', forget);
        c.client.on('error', forget);
        return c;
      },
      (e: Error) => {
        this.connecting = undefined;
        if (e instanceof HostError) throw e;
        throw new HostError(this.hostId, 'connection', `SSH connection to ${this.hostId} failed: ${e.message}`);
      },
    );
    return (await this.connecting).client;
  }

  async sftp(): Promise<SFTPWrapper> {
    const client = await this.client();
    if (!this.sftpSession) {
      const session = withTimeout(
        new Promise<SFTPWrapper>((resolve, reject) =>
          client.sftp((e, sftp) => {
            if (e) return reject(new HostError(this.hostId, 'connection', `cannot open SFTP on ${this.hostId}: ${e.message}`));
            sftp.on('close', () => {
              if (this.sftpSession === session) this.sftpSession = undefined;
            });
            resolve(sftp);
          }),
        ),
        SFTP_TIMEOUT_MS,
        () => new HostError(this.hostId, 'timeout', `opening SFTP on ${this.hostId} timed out`),
      );
      this.sftpSession = session;
      session.catch(() => {
        if (this.sftpSession === session) this.sftpSession = undefined;
      });
    }
    return this.sftpSession;
  }

  /** Ends the connection; it cannot be used afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    const current = this.connected?.client ?? (await this.connecting?.then((c) => c.client).catch(() => undefined));
    this.connected = undefined;
    this.sftpSession = undefined;
    if (!current) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        current.destroy();
        resolve();
      }, 2000);
      current.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      current.end();
    });
  }
}
