import { StringDecoder } from 'node:string_decoder';
import type { Client, ClientChannel } from 'ssh2';
import type { HostProcess, HostProcessExit, SpawnOptions } from '../host';
import { remoteCommandLine } from './command-line';
import type { SshConnection } from './connection';
import { killRemote, PidAnnouncement } from './exec';

/**
 * Starts a long-running program over its own exec channel. `pid` is the remote pid, known
 * shortly after start (a `kill()` before that is delivered once it is known); `kill()`
 * runs `kill(1)` on the node, since OpenSSH ignores signal requests on channels whose
 * stdin is closed. The exec channel counts against sshd's MaxSessions while it runs.
 */
export function spawnRemote(connection: SshConnection, argv: readonly string[], options: SpawnOptions = {}): HostProcess {
  const hostId = connection.hostId;
  const command = remoteCommandLine(argv, { env: options.env, cwd: options.cwd, announcePid: true });
  let pid: number | undefined;
  let pendingSignal: NodeJS.Signals | undefined;
  let done = false;
  let client: Client | undefined;
  // OpenSSH ignores signal requests on a channel whose stdin is closed: use kill(1).
  const sendKill = (signal: NodeJS.Signals) => {
    if (pid !== undefined && client) killRemote(client, hostId, ['kill', '-s', signal.replace(/^SIG/, ''), '--', String(pid)]);
  };
  const exited = new Promise<HostProcessExit>((resolve) => {
    const end = (exit: HostProcessExit) => {
      if (done) return;
      done = true;
      resolve(exit);
    };
    connection.client().then(
      (c) => {
        client = c;
        const onChannel = (e: Error | undefined, stream: ClientChannel) => {
          if (e) return end({ code: null, signal: null, error: `cannot start ${argv[0]} on ${hostId}: ${e.message}` });
          let code: number | null | undefined;
          let signal: string | null = null;
          const announcement = new PidAnnouncement();
          const decoder = new StringDecoder('utf8');
          const errDecoder = new StringDecoder('utf8');
          stream.on('data', (chunk: Buffer) => options.onOutput?.(decoder.write(chunk)));
          stream.stderr.on('data', (chunk: Buffer) => {
            const known = announcement.pid !== undefined;
            const pass = announcement.feed(chunk);
            if (pass.length > 0) options.onOutput?.(errDecoder.write(pass));
            if (!known && announcement.pid !== undefined) {
              pid = announcement.pid;
              if (pendingSignal) sendKill(pendingSignal);
            }
          });
          stream.on('exit', (c: number | null, s?: string) => {
            code = c;
            signal = s ?? null; // ssh2 already prefixes SIG
          });
          stream.on('close', () => {
            const held = announcement.flush();
            if (held.length > 0) options.onOutput?.(errDecoder.write(held));
            end(code === undefined ? { code: null, signal: null, error: `connection to ${hostId} lost` } : { code, signal });
          });
          stream.on('error', () => undefined);
          stream.end();
        };
        try {
          c.exec(command, onChannel);
        } catch (e) {
          end({ code: null, signal: null, error: `cannot start ${argv[0]} on ${hostId}: ${(e as Error).message}` });
        }
      },
      (e: Error) => end({ code: null, signal: null, error: e.message }),
    );
  });
  return {
    get pid() {
      return pid;
    },
    exited,
    kill: (signal: NodeJS.Signals = 'SIGTERM') => {
      if (done) return;
      if (pid === undefined) pendingSignal = signal;
      sendKill(signal);
    },
  };
}
