import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { invalid, unavailable } from '../../core';
import type { Host } from '../../core';
import type { Logger } from '../../core';
import { COMMON_NAME_PATTERN } from './validate';

/*
 * OpenVPN's management interface: a line protocol on a unix socket. Lines starting with
 * `>` are real-time notifications and may arrive at any moment, also between a command
 * and its answer; every other line answers the oldest command in flight. `>CLIENT:` events
 * (other than ADDRESS) are followed by `>CLIENT:ENV,name=value` lines up to
 * `>CLIENT:ENV,END`. OpenVPN accepts one management connection at a time: this client
 * owns it, and with it every auth decision.
 */

/** One parsed unit of the management stream. */
export type ManagementMessage =
  /** A `>CLIENT:<event>,cid[,kid…]` block with its ENV lines (CONNECT, REAUTH, ESTABLISHED, DISCONNECT, CR_RESPONSE, …). */
  | { type: 'client'; event: string; cid: number; kid: number | undefined; args: string[]; env: Record<string, string> }
  /** `>CLIENT:ADDRESS,cid,address,primary`. */
  | { type: 'address'; cid: number; address: string; primary: boolean }
  /** `>BYTECOUNT_CLI:cid,bytes_received,bytes_sent` (when `bytecount N` is on). */
  | { type: 'bytecount'; cid: number; bytesReceived: number; bytesSent: number }
  /** Any other `>KIND:text` line: INFO, HOLD, PASSWORD, FATAL, LOG, STATE, BYTECOUNT, … */
  | { type: 'notification'; kind: string; text: string }
  /** A line that answers a command. */
  | { type: 'response'; line: string };

/** Lines longer than this (or a block with more ENV entries) mean a broken stream. */
const MAX_LINE = 64 * 1024;
const MAX_ENV_ENTRIES = 1000;

/**
 * Incremental, pure parser of the management stream: feed it chunks, get messages.
 * Tolerates `\r\n` or `\n`, chunks split anywhere, and notifications between ENV lines of
 * nothing else (a block interrupted by another `>CLIENT:` header is dropped).
 */
export class ManagementParser {
  private buffer = '';
  private block: Extract<ManagementMessage, { type: 'client' }> | null = null;
  private envCount = 0;
  /** Messages that could not be parsed (for logs). */
  readonly problems: string[] = [];

  push(chunk: string): ManagementMessage[] {
    this.buffer += chunk;
    const out: ManagementMessage[] = [];
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      let line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      this.line(line, out);
    }
    if (this.buffer.length > MAX_LINE) throw new Error(`management line longer than ${MAX_LINE} bytes`);
    return out;
  }

  private line(line: string, out: ManagementMessage[]): void {
    if (!line.startsWith('>')) {
      out.push({ type: 'response', line });
      return;
    }
    if (line.startsWith('>CLIENT:ENV,')) {
      if (!this.block) return; // stray ENV line: nothing to attach it to
      const kv = line.slice('>CLIENT:ENV,'.length);
      if (kv === 'END') {
        out.push(this.block);
        this.block = null;
        return;
      }
      if (++this.envCount > MAX_ENV_ENTRIES) throw new Error(`more than ${MAX_ENV_ENTRIES} ENV entries in one >CLIENT block`);
      const eq = kv.indexOf('=');
      if (eq > 0) this.block.env[kv.slice(0, eq)] = kv.slice(eq + 1);
      return;
    }
    const colon = line.indexOf(':');
    const kind = colon > 1 ? line.slice(1, colon) : line.slice(1);
    const text = colon > 1 ? line.slice(colon + 1) : '';
    if (kind === 'CLIENT') {
      const [event = '', ...args] = text.split(',');
      const cid = toId(args[0]);
      if (cid === undefined) {
        this.problems.push(`unparsable client event: ${line.slice(0, 200)}`);
        return;
      }
      if (event === 'ADDRESS') {
        out.push({ type: 'address', cid, address: args[1] ?? '', primary: args[2] === '1' });
        return;
      }
      if (this.block) this.problems.push(`>CLIENT:${this.block.event},${this.block.cid} block interrupted by ${line.slice(0, 200)}`);
      const hasKid = event === 'CONNECT' || event === 'REAUTH' || event === 'CR_RESPONSE';
      this.block = { type: 'client', event, cid, kid: hasKid ? toId(args[1]) : undefined, args: args.slice(1), env: {} };
      this.envCount = 0;
      return;
    }
    if (kind === 'BYTECOUNT_CLI') {
      const [c, rx, tx] = text.split(',');
      const cid = toId(c);
      const bytesReceived = Number(rx);
      const bytesSent = Number(tx);
      if (cid === undefined || !Number.isFinite(bytesReceived) || !Number.isFinite(bytesSent)) {
        this.problems.push(`unparsable bytecount: ${line.slice(0, 200)}`);
        return;
      }
      out.push({ type: 'bytecount', cid, bytesReceived, bytesSent });
      return;
    }
    out.push({ type: 'notification', kind, text });
  }
}

function toId(s: string | undefined): number | undefined {
  if (s === undefined || !/^\d{1,15}$/.test(s)) return undefined;
  return Number(s);
}

/** A connecting (or renegotiating) client waiting for a verdict. Answer exactly once. */
export interface ConnectRequest {
  kind: 'connect' | 'reauth';
  cid: number;
  kid: number;
  /** OpenVPN's ENV block: `common_name`, `username`, `password`, `untrusted_ip`, … (never log it: it holds the password). */
  env: Readonly<Record<string, string>>;
  /** `client-auth-nt cid kid`. No-op if the management connection changed meanwhile. */
  allow(): Promise<void>;
  /** `client-deny cid kid "reason" ["client reason"]`; reasons are sanitized. */
  deny(reason: string, clientReason?: string): Promise<void>;
}

export interface ClientEstablished {
  cid: number;
  env: Readonly<Record<string, string>>;
}

export interface ClientDisconnected {
  cid: number;
  env: Readonly<Record<string, string>>;
  /** Final counters from ENV `bytes_received`/`bytes_sent`; absent for connections that never got established. */
  bytesReceived: number | undefined;
  bytesSent: number | undefined;
}

export interface ByteCount {
  cid: number;
  bytesReceived: number;
  bytesSent: number;
}

export interface ManagementEvents {
  'connect-request': [ConnectRequest];
  established: [ClientEstablished];
  disconnect: [ClientDisconnected];
  address: [{ cid: number; address: string; primary: boolean }];
  bytecount: [ByteCount];
  /** The management connection is (again) open. */
  connected: [];
  /** It closed (OpenVPN exited or restarted); reconnection follows. */
  'connection-lost': [reason: string];
  notification: [kind: string, text: string];
}

export interface ManagementClientOptions {
  host: Host;
  /** The `management <path> unix` socket. */
  socketPath: string;
  logger?: Logger;
  /** A command without an answer after this long closes the connection. Default 10 s. */
  commandTimeoutMs?: number;
  /** Reconnect backoff: starts here, doubles, capped. Defaults 100 ms and 5 s. */
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
  /** Ask for `>BYTECOUNT_CLI` every N seconds (0 = off, the default). Re-sent on each connect. */
  bytecountIntervalSec?: number;
  /** Answer `>HOLD` with `hold release` (for `management-hold`). Default true. */
  releaseHold?: boolean;
}

interface PendingCommand {
  line: string;
  multiline: boolean;
  lines: string[];
  resolve: (lines: string[]) => void;
  reject: (err: Error) => void;
  timer?: NodeJS.Timeout;
}

/** Commands whose answer is several lines ended by `END`. */
const MULTILINE_COMMANDS = new Set(['status', 'version', 'help']);

/**
 * The one management connection to one OpenVPN process: parses notifications into events,
 * serializes commands with their (multi-line) answers, answers `>HOLD`, and reconnects with
 * bounded backoff whenever OpenVPN restarts.
 *
 * @example
 * const mgmt = new ManagementClient({ host, socketPath: '/var/lib/polygate/openvpn/run/1194udp.sock' });
 * mgmt.on('connect-request', async (req) => {
 *   const ok = req.env.username === req.env.common_name;
 *   await (ok ? req.allow() : req.deny('username does not match the certificate'));
 * });
 * mgmt.start();
 * await mgmt.waitConnected(10_000);
 * const text = await mgmt.status3();
 */
export class ManagementClient extends EventEmitter<ManagementEvents> {
  private readonly host: Host;
  readonly socketPath: string;
  private readonly logger: Logger | undefined;
  private readonly commandTimeoutMs: number;
  private readonly reconnectInitialMs: number;
  private readonly reconnectMaxMs: number;
  private readonly bytecountIntervalSec: number;
  private readonly releaseHold: boolean;
  private stream: Duplex | null = null;
  /** Bumped on each new connection; answers to auth requests of an older one are dropped. */
  private generation = 0;
  private running = false;
  private queue: PendingCommand[] = [];
  private inflight: PendingCommand | null = null;
  private wake: (() => void) | null = null;
  private loopDone: Promise<void> = Promise.resolve();
  private connectedWaiters: Array<() => void> = [];

  constructor(options: ManagementClientOptions) {
    super();
    this.host = options.host;
    this.socketPath = options.socketPath;
    this.logger = options.logger;
    this.commandTimeoutMs = options.commandTimeoutMs ?? 10_000;
    this.reconnectInitialMs = options.reconnectInitialMs ?? 100;
    this.reconnectMaxMs = options.reconnectMaxMs ?? 5_000;
    this.bytecountIntervalSec = options.bytecountIntervalSec ?? 0;
    this.releaseHold = options.releaseHold ?? true;
  }

  get connected(): boolean {
    return this.stream !== null;
  }

  /** Starts connecting (and reconnecting until close()). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop();
  }

  /** Closes the connection for good; commands in flight are rejected. */
  async close(): Promise<void> {
    this.running = false;
    this.wake?.();
    this.stream?.destroy();
    await this.loopDone;
  }

  /** Resolves once connected; rejects (kind `unavailable`) after `timeoutMs`. */
  waitConnected(timeoutMs: number): Promise<void> {
    if (this.stream) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.connectedWaiters = this.connectedWaiters.filter((w) => w !== done);
        reject(unavailable(`OpenVPN management socket ${this.socketPath} on ${this.host.id} not connected after ${timeoutMs} ms`));
      }, timeoutMs);
      this.connectedWaiters.push(done);
    });
  }

  /**
   * Sends one command and resolves with its answer lines (for multi-line commands without
   * the final `END`). `ERROR:` answers resolve too; the typed helpers below interpret them.
   * Rejects (kind `unavailable`) when not connected, on timeout, or when the connection drops.
   */
  command(line: string, options: { multiline?: boolean } = {}): Promise<string[]> {
    if (typeof line !== 'string' || line === '' || line.length > 1024 || /[\r\n\0]/.test(line)) {
      throw invalid('a management command is one line of at most 1024 characters');
    }
    if (!this.stream) return Promise.reject(unavailable(`OpenVPN management interface ${this.socketPath} on ${this.host.id} is not connected`));
    const multiline = options.multiline ?? MULTILINE_COMMANDS.has(line.split(' ')[0]!);
    return new Promise<string[]>((resolve, reject) => {
      this.queue.push({ line, multiline, lines: [], resolve, reject });
      this.pump();
    });
  }

  /** The raw `status 3` text (tab-separated, ends with `END`). */
  async status3(): Promise<string> {
    const lines = await this.command('status 3', { multiline: true });
    if (lines[0]?.startsWith('ERROR:')) throw unavailable(`status 3 failed: ${lines[0]}`);
    return `${lines.join('\n')}\nEND\n`;
  }

  /**
   * `client-kill cid HALT|RESTART`. HALT (default) tells the client to exit instead of
   * reconnecting; the session ends (with a `disconnect` event) within a few seconds.
   * Resolves false when OpenVPN has no such client.
   */
  async killClient(cid: number, message: 'HALT' | 'RESTART' = 'HALT'): Promise<boolean> {
    if (!Number.isSafeInteger(cid) || cid < 0) throw invalid(`client id must be a non-negative integer (got ${cid})`);
    if (message !== 'HALT' && message !== 'RESTART') throw invalid('client-kill message must be HALT or RESTART');
    const [answer = ''] = await this.command(`client-kill ${cid} ${message}`);
    return answer.startsWith('SUCCESS:');
  }

  /** `kill <common name>`: ends every session with that CN at once. Resolves how many. */
  async kill(commonName: string): Promise<number> {
    if (typeof commonName !== 'string' || !COMMON_NAME_PATTERN.test(commonName)) throw invalid(`common name must match ${COMMON_NAME_PATTERN.source}`);
    const [answer = ''] = await this.command(`kill ${commonName}`);
    if (!answer.startsWith('SUCCESS:')) return 0;
    return Number(/(\d+) client\(s\) killed/.exec(answer)?.[1] ?? 1);
  }

  /** `client-auth-nt cid kid`. */
  async clientAuthNt(cid: number, kid: number): Promise<void> {
    const [answer = ''] = await this.command(`client-auth-nt ${id(cid)} ${id(kid)}`);
    if (!answer.startsWith('SUCCESS:')) this.logger?.warn({ cid, kid, answer }, 'OpenVPN refused client-auth-nt');
  }

  /** `client-deny cid kid "reason" ["client reason"]`. */
  async clientDeny(cid: number, kid: number, reason: string, clientReason?: string): Promise<void> {
    let line = `client-deny ${id(cid)} ${id(kid)} "${sanitizeReason(reason)}"`;
    if (clientReason !== undefined) line += ` "${sanitizeReason(clientReason)}"`;
    const [answer = ''] = await this.command(line);
    if (!answer.startsWith('SUCCESS:')) this.logger?.warn({ cid, kid, answer }, 'OpenVPN refused client-deny');
  }

  // ---- connection ----

  private async loop(): Promise<void> {
    let delay = this.reconnectInitialMs;
    while (this.running) {
      let stream: Duplex;
      try {
        stream = await this.host.openStream({ path: this.socketPath });
      } catch (err) {
        this.logger?.debug({ err: (err as Error).message, socket: this.socketPath }, 'management socket not reachable yet');
        await this.sleep(delay);
        delay = Math.min(delay * 2, this.reconnectMaxMs);
        continue;
      }
      if (!this.running) {
        stream.destroy();
        break;
      }
      delay = this.reconnectInitialMs;
      const reason = await this.serve(stream);
      if (this.running) {
        this.logger?.warn({ socket: this.socketPath, reason }, 'OpenVPN management connection lost; reconnecting');
        this.emit('connection-lost', reason);
        await this.sleep(delay);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = null;
        done();
      };
    });
  }

  /** Runs one connection until it closes; resolves with why it closed. */
  private serve(stream: Duplex): Promise<string> {
    const generation = ++this.generation;
    const parser = new ManagementParser();
    const decoder = new StringDecoder('utf8');
    this.stream = stream;
    return new Promise<string>((resolve) => {
      let reason = 'closed by OpenVPN';
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        this.stream = null;
        const err = unavailable(`OpenVPN management connection ${this.socketPath} lost: ${reason}`);
        const pending = [...(this.inflight ? [this.inflight] : []), ...this.queue];
        this.inflight = null;
        this.queue = [];
        for (const p of pending) {
          if (p.timer) clearTimeout(p.timer);
          p.reject(err);
        }
        resolve(reason);
      };
      stream.on('data', (chunk: Buffer | string) => {
        let messages: ManagementMessage[];
        try {
          messages = parser.push(typeof chunk === 'string' ? chunk : decoder.write(chunk));
        } catch (e) {
          reason = `protocol error: ${(e as Error).message}`;
          stream.destroy();
          return;
        }
        for (const p of parser.problems.splice(0)) this.logger?.warn({ socket: this.socketPath, problem: p }, 'unexpected management output');
        for (const m of messages) {
          try {
            this.handle(m, generation);
          } catch (e) {
            this.logger?.error({ err: e }, 'management event handler failed');
          }
        }
      });
      stream.on('error', (e: Error) => {
        reason = e.message;
      });
      stream.on('close', finish);
      stream.on('end', () => stream.destroy());
      this.logger?.info({ socket: this.socketPath }, 'OpenVPN management connected');
      const waiters = this.connectedWaiters;
      this.connectedWaiters = [];
      for (const w of waiters) w();
      this.emit('connected');
      if (this.bytecountIntervalSec > 0) {
        this.command(`bytecount ${Math.floor(this.bytecountIntervalSec)}`).catch((e: Error) =>
          this.logger?.warn({ err: e.message }, 'could not enable bytecount'),
        );
      }
    });
  }

  private handle(m: ManagementMessage, generation: number): void {
    switch (m.type) {
      case 'response':
        this.onResponse(m.line);
        return;
      case 'bytecount':
        this.emit('bytecount', { cid: m.cid, bytesReceived: m.bytesReceived, bytesSent: m.bytesSent });
        return;
      case 'address':
        this.emit('address', { cid: m.cid, address: m.address, primary: m.primary });
        return;
      case 'notification':
        if (m.kind === 'HOLD' && this.releaseHold) {
          this.command('hold release').catch((e: Error) => this.logger?.warn({ err: e.message }, 'hold release failed'));
        } else if (m.kind === 'FATAL') {
          this.logger?.error({ socket: this.socketPath, text: m.text }, 'OpenVPN reported a fatal error');
        } else if (m.kind === 'PASSWORD') {
          this.logger?.warn({ socket: this.socketPath, text: m.text.slice(0, 200) }, 'OpenVPN asks for a password on the management interface');
        }
        this.emit('notification', m.kind, m.text);
        return;
      case 'client':
        this.onClient(m, generation);
        return;
    }
  }

  private onClient(m: Extract<ManagementMessage, { type: 'client' }>, generation: number): void {
    if ((m.event === 'CONNECT' || m.event === 'REAUTH') && m.kid !== undefined) {
      const { cid, kid } = m;
      const current = () => generation === this.generation && this.stream !== null;
      let answered = false;
      const once = (fn: () => Promise<void>) => async () => {
        if (answered) return;
        answered = true;
        if (!current()) {
          this.logger?.debug({ cid, kid }, 'auth answer dropped: management connection changed');
          return;
        }
        await fn();
      };
      const request: ConnectRequest = {
        kind: m.event === 'CONNECT' ? 'connect' : 'reauth',
        cid,
        kid,
        env: m.env,
        allow: once(() => this.clientAuthNt(cid, kid)),
        deny: (reason, clientReason) => once(() => this.clientDeny(cid, kid, reason, clientReason))(),
      };
      if (this.listenerCount('connect-request') === 0) {
        // Nobody to decide: refusing is the only safe answer.
        request.deny('no auth decider attached').catch(() => undefined);
        return;
      }
      this.emit('connect-request', request);
      return;
    }
    if (m.event === 'ESTABLISHED') {
      this.emit('established', { cid: m.cid, env: m.env });
      return;
    }
    if (m.event === 'DISCONNECT') {
      const num = (k: string) => (m.env[k] !== undefined && /^\d+$/.test(m.env[k]!) ? Number(m.env[k]) : undefined);
      this.emit('disconnect', { cid: m.cid, env: m.env, bytesReceived: num('bytes_received'), bytesSent: num('bytes_sent') });
      return;
    }
    this.logger?.debug({ event: m.event, cid: m.cid }, 'unhandled management client event');
  }

  private onResponse(line: string): void {
    const p = this.inflight;
    if (!p) {
      this.logger?.debug({ line: line.slice(0, 200) }, 'unsolicited management output');
      return;
    }
    if (p.multiline) {
      if (line === 'END' || (p.lines.length === 0 && line.startsWith('ERROR:'))) {
        if (line !== 'END') p.lines.push(line);
        this.settle(p);
      } else {
        p.lines.push(line);
      }
      return;
    }
    p.lines.push(line);
    this.settle(p);
  }

  private settle(p: PendingCommand): void {
    if (p.timer) clearTimeout(p.timer);
    this.inflight = null;
    p.resolve(p.lines);
    this.pump();
  }

  private pump(): void {
    if (this.inflight || this.queue.length === 0 || !this.stream) return;
    const p = this.queue.shift()!;
    this.inflight = p;
    const stream = this.stream;
    p.timer = setTimeout(() => {
      // The answer stream is out of step now: start over on a new connection.
      this.logger?.warn({ command: p.line.split(' ')[0] }, 'OpenVPN management command timed out; reconnecting');
      stream.destroy(new Error(`command '${p.line.split(' ')[0]}' timed out after ${this.commandTimeoutMs} ms`));
    }, this.commandTimeoutMs);
    stream.write(`${p.line}\n`);
  }
}

function id(n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) throw invalid(`client/key id must be a non-negative integer (got ${n})`);
  return n;
}

/** What may go inside a double-quoted management argument: no quotes, backslashes or control characters. */
export function sanitizeReason(reason: string): string {
  const clean = String(reason)
    .replace(/[^A-Za-z0-9 _.,:;()/+@=-]/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 120);
  return clean || 'denied';
}
