import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Duplex, PassThrough } from 'node:stream';
import { DomainError } from '../../core/errors';
import { HostError, type StreamTarget } from '../../core/hosts/host';
import { UnusedHost } from '../fakes/unused-host';
import { until } from '../helpers/vpn-lab';
import {
  ManagementClient,
  ManagementParser,
  sanitizeReason,
  type ClientDisconnected,
  type ConnectRequest,
  type ManagementMessage,
} from '../../plugins/openvpn/management';

/*
 * The OpenVPN management client against real captured output (OpenVPN 2.6.14, captured
 * with the namespace recipe: test/fixtures/openvpn/). Proves: the parser gives the same
 * messages however the stream is chunked; CONNECT/REAUTH/ESTABLISHED/DISCONNECT blocks
 * carry their ENV (final byte counts on DISCONNECT); a whole real session replays through
 * the client with identical commands and answers (auth answered by the handler, hold
 * released, notifications interleaved with command answers); reconnect with backoff,
 * commands failing fast when the connection drops or times out, stale auth answers dropped,
 * refusal when nobody decides, and reason sanitizing.
 */

const FIXTURES = path.join(__dirname, '../fixtures/openvpn');
const fixture = (name: string) => readFileSync(path.join(FIXTURES, name), 'utf8');

/** One end of an in-memory socket: what the client writes arrives as lines here. */
class FakeConnection {
  readonly toClient = new PassThrough();
  readonly fromClient = new PassThrough();
  readonly clientSide: Duplex;
  readonly written: string[] = [];
  private partial = '';
  private waiters: Array<() => void> = [];
  closed = false;

  constructor() {
    this.clientSide = Duplex.from({ readable: this.toClient, writable: this.fromClient });
    this.fromClient.setEncoding('utf8');
    this.fromClient.on('data', (chunk: string) => {
      const parts = (this.partial + chunk).split('\n');
      this.partial = parts.pop()!;
      this.written.push(...parts);
      for (const w of this.waiters.splice(0)) w();
    });
    this.clientSide.on('close', () => {
      this.closed = true;
    });
  }

  send(text: string): void {
    this.toClient.write(text);
  }

  sendLines(lines: string[]): void {
    if (lines.length) this.toClient.write(lines.map((l) => `${l}\r\n`).join(''));
  }

  /** Ends the stream from OpenVPN's side (process exit). */
  hangUp(): void {
    this.toClient.end();
  }

  async nextWritten(count: number, timeoutMs = 2000): Promise<string> {
    const end = Date.now() + timeoutMs;
    while (this.written.length < count) {
      if (Date.now() > end) throw new Error(`client wrote ${this.written.length} lines, expected ${count}: ${JSON.stringify(this.written)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.written[count - 1]!;
  }
}

/** A Host that only opens streams: to FakeConnections, or fails while `refuse` > 0. */
class FakeHost extends UnusedHost {
  override readonly id = 'fake';
  readonly connections: FakeConnection[] = [];
  refuse = 0;
  attempts = 0;
  override async openStream(target: StreamTarget): Promise<Duplex> {
    this.attempts++;
    expect(target).to.deep.equal({ path: '/run/test/mgmt.sock' });
    if (this.refuse > 0) {
      this.refuse--;
      throw new HostError(this.id, 'connection', 'ECONNREFUSED');
    }
    const c = new FakeConnection();
    this.connections.push(c);
    return c.clientSide;
  }
}

function parseAll(text: string, chunkSizes: () => number): ManagementMessage[] {
  const p = new ManagementParser();
  const out: ManagementMessage[] = [];
  for (let i = 0; i < text.length; ) {
    const n = Math.max(1, chunkSizes());
    out.push(...p.push(text.slice(i, i + n)));
    i += n;
  }
  expect(p.problems).to.deep.equal([]);
  return out;
}

describe('OpenVPN management client', () => {
  describe('ManagementParser on a captured stream', () => {
    const raw = fixture('mgmt-stream-raw.txt');

    it('yields the same messages whatever the chunking (1 byte, 7 bytes, pseudo-random, whole)', () => {
      const whole = parseAll(raw, () => raw.length);
      let seed = 42;
      const random = () => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return 1 + (seed % 300);
      };
      expect(parseAll(raw, () => 1)).to.deep.equal(whole);
      expect(parseAll(raw, () => 7)).to.deep.equal(whole);
      expect(parseAll(raw, random)).to.deep.equal(whole);
      expect(raw).to.include('\r\n'); // the real stream is CRLF; no \r survives parsing
      expect(JSON.stringify(whole)).to.not.include('\\r');
    });

    it('groups >CLIENT blocks with their ENV and reads every event kind of a real session', () => {
      const msgs = parseAll(raw, () => 4096);
      const client = msgs.filter((m): m is Extract<ManagementMessage, { type: 'client' }> => m.type === 'client');
      expect(client.map((m) => `${m.event}:${m.cid}${m.kid === undefined ? '' : `/${m.kid}`}`)).to.deep.equal([
        'CONNECT:0/1',
        'ESTABLISHED:0',
        'CONNECT:1/1',
        'DISCONNECT:1',
        'REAUTH:0/3',
        'CONNECT:2/1',
        'ESTABLISHED:2',
        'DISCONNECT:2',
        'DISCONNECT:0',
        'CONNECT:3/1',
        'ESTABLISHED:3',
        'REAUTH:3/3',
        'REAUTH:3/4',
      ]);
      const first = client[0]!;
      expect(first.env).to.include({ common_name: 'user1', username: 'user1', password: 'secret1', untrusted_ip: '10.99.7.2', X509_0_CN: 'user1' });
      expect(client[2]!.env.password).to.equal('wrong');
      // A refused connection's DISCONNECT has no ENV at all; an established one has final counters.
      expect(client[3]!.env).to.deep.equal({});
      expect(client[7]!.env).to.include({ bytes_received: '2492', bytes_sent: '2272', time_unix: '1795718204', common_name: 'user1' });
      expect(msgs.filter((m) => m.type === 'address')).to.deep.include({ type: 'address', cid: 2, address: '10.8.77.3', primary: true });
      const counts = msgs.filter((m) => m.type === 'bytecount');
      expect(counts.length).to.be.greaterThan(10);
      expect(counts[0]).to.deep.equal({ type: 'bytecount', cid: 0, bytesReceived: 2298, bytesSent: 2010 });
      expect(msgs.slice(0, 2)).to.deep.equal([
        { type: 'notification', kind: 'INFO', text: "OpenVPN Management Interface Version 5 -- type 'help' for more info" },
        { type: 'notification', kind: 'HOLD', text: 'Waiting for hold release:0' },
      ]);
      const responses = msgs.filter((m): m is { type: 'response'; line: string } => m.type === 'response').map((m) => m.line);
      expect(responses).to.include.members(['SUCCESS: hold release succeeded', "SUCCESS: common name 'user1' found, 2 client(s) killed", 'ERROR: client-kill command failed', 'END']);
    });

    it('drops stray ENV lines, reports unparsable events, and refuses endless lines', () => {
      const p = new ManagementParser();
      expect(p.push('>CLIENT:ENV,a=b\r\n>CLIENT:ESTABLISHED,x\r\n>BYTECOUNT_CLI:1,z,2\r\n')).to.deep.equal([]);
      expect(p.problems).to.have.length(2);
      expect(p.push('>CLIENT:ESTABLISHED,5\r\n>CLIENT:ENV,k=v=w\r\n>CLIENT:ENV,noequals\r\n>CLIENT:ENV,END\r\n')).to.deep.equal([
        { type: 'client', event: 'ESTABLISHED', cid: 5, kid: undefined, args: [], env: { k: 'v=w' } },
      ]);
      expect(() => p.push('x'.repeat(70_000))).to.throw(/longer than/);
    });
  });

  describe('ManagementClient', () => {
    let host: FakeHost;
    let mgmt: ManagementClient;

    beforeEach(() => {
      host = new FakeHost();
      mgmt = new ManagementClient({ host, socketPath: '/run/test/mgmt.sock', reconnectInitialMs: 10, reconnectMaxMs: 40, commandTimeoutMs: 300 });
    });
    afterEach(async () => {
      await mgmt.close();
    });

    it('replays a real session: same commands, auth answered by the handler, answers and events as OpenVPN sent them', async () => {
      const transcript = fixture('mgmt-session.transcript').split('\n').filter(Boolean);
      const requests: ConnectRequest[] = [];
      const disconnects: ClientDisconnected[] = [];
      const established: number[] = [];
      mgmt.on('connect-request', (req) => {
        requests.push(req);
        const ok = req.env.username === req.env.common_name && req.env.password === 'secret1';
        void (ok ? req.allow() : req.deny('bad credentials'));
      });
      mgmt.on('disconnect', (d) => disconnects.push(d));
      mgmt.on('established', (e) => established.push(e.cid));
      mgmt.start();
      await mgmt.waitConnected(2000);
      const conn = host.connections[0]!;
      const results: Array<Promise<unknown>> = [];
      let pending: string[] = [];
      let writtenCount = 0;
      for (const entry of transcript) {
        if (entry.startsWith('S: ')) {
          pending.push(entry.slice(3));
          continue;
        }
        conn.sendLines(pending);
        pending = [];
        const expected = entry.slice(3);
        const auto = /^(hold release|client-auth-nt |client-deny )/.test(expected);
        if (!auto) {
          if (expected === 'status 3') results.push(mgmt.status3());
          else if (expected.startsWith('kill ')) results.push(mgmt.kill(expected.slice(5)));
          else results.push(mgmt.command(expected));
        }
        writtenCount++;
        expect(await conn.nextWritten(writtenCount)).to.equal(expected);
      }
      conn.sendLines(pending);
      const answers = await Promise.all(results);
      expect(answers[0]).to.deep.equal(['SUCCESS: bytecount interval changed']);
      expect(answers[1]).to.deep.equal([
        'OpenVPN Version: OpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)] [LZO] [LZ4] [EPOLL] [PKCS11] [MH/PKTINFO] [AEAD] [DCO]',
        'Management Version: 5',
      ]);
      expect(answers[2]).to.equal(fixture('status3-live-and-pending.txt'));
      expect(answers[3]).to.deep.equal(['ERROR: client-kill command failed']);
      expect(answers[4]).to.equal(0); // kill nosuchcn
      expect(answers[5]).to.deep.equal(['SUCCESS: nclients=1,bytesin=4909,bytesout=4634']);
      expect(answers[6]).to.equal(fixture('status3-one-client.txt'));
      expect(answers[7]).to.deep.equal(['SUCCESS: client-kill command succeeded']);
      expect(answers[8]).to.equal(2); // kill user1: two sessions
      expect(answers[9]).to.equal(fixture('status3-empty.txt'));
      expect(answers[11]).to.equal(fixture('status3-after-reconnect.txt'));
      expect(requests.map((r) => `${r.kind}:${r.cid}/${r.kid}`)).to.deep.equal([
        'connect:0/1',
        'connect:1/1',
        'reauth:0/3',
        'connect:2/1',
        'connect:3/1',
        'reauth:3/3',
        'reauth:3/4',
      ]);
      expect(established).to.deep.equal([0, 2, 3]);
      expect(disconnects.map((d) => [d.cid, d.bytesReceived, d.bytesSent])).to.deep.equal([
        [1, undefined, undefined],
        [2, 2492, 2272],
        [0, 5086, 4905],
      ]);
    });

    it('reconnects with backoff until the socket exists, and again after OpenVPN hangs up; in-flight commands fail fast', async () => {
      host.refuse = 3;
      const lost: string[] = [];
      let connects = 0;
      mgmt.on('connection-lost', (r) => lost.push(r));
      mgmt.on('connected', () => connects++);
      mgmt.start();
      await mgmt.waitConnected(2000);
      expect(host.attempts).to.equal(4);
      const first = host.connections[0]!;
      const status = mgmt.status3();
      await first.nextWritten(1);
      first.hangUp();
      try {
        await status;
        expect.fail('status3 should fail when the connection drops');
      } catch (e) {
        expect((e as DomainError).kind).to.equal('unavailable');
        expect((e as Error).message).to.match(/lost/);
      }
      await until(() => host.connections.length === 2 && mgmt.connected, 'reconnect', 2000, 10);
      expect(lost).to.have.length(1);
      expect(connects).to.equal(2);
      // Not connected: commands are refused at once, not queued.
      host.refuse = 1000;
      host.connections[1]!.hangUp();
      await until(() => !mgmt.connected, 'disconnect', 2000, 10);
      try {
        await mgmt.kill('user1');
        expect.fail('kill should be refused while disconnected');
      } catch (e) {
        expect((e as DomainError).kind).to.equal('unavailable');
      }
    });

    it('a command without an answer times out and the connection is replaced', async () => {
      mgmt.start();
      await mgmt.waitConnected(2000);
      const started = Date.now();
      try {
        await mgmt.command('version');
        expect.fail('should time out');
      } catch (e) {
        expect((e as Error).message).to.match(/timed out/);
      }
      expect(Date.now() - started).to.be.lessThan(2000);
      await until(() => host.connections.length === 2 && mgmt.connected, 'new connection', 2000, 10);
      expect(host.connections[0]!.closed).to.equal(true);
    });

    it('refuses logins when nobody decides, drops answers meant for a previous connection, and sanitizes reasons', async () => {
      mgmt.start();
      await mgmt.waitConnected(2000);
      const c1 = host.connections[0]!;
      c1.sendLines(['>CLIENT:CONNECT,4,1', '>CLIENT:ENV,common_name=eve', '>CLIENT:ENV,END']);
      expect(await c1.nextWritten(1)).to.equal('client-deny 4 1 "no auth decider attached"');
      c1.sendLines(['SUCCESS: client-deny command succeeded']);

      let held: ConnectRequest | undefined;
      mgmt.on('connect-request', (req) => {
        held = req;
      });
      c1.sendLines(['>CLIENT:CONNECT,5,1', '>CLIENT:ENV,END']);
      await until(() => held !== undefined, 'connect-request', 2000, 10);
      c1.hangUp();
      await until(() => host.connections.length === 2 && mgmt.connected, 'reconnect', 2000, 10);
      await held!.allow(); // meant for the old OpenVPN run: must not reach the new one
      await new Promise((r) => setTimeout(r, 50));
      expect(host.connections[1]!.written).to.deep.equal([]);

      expect(sanitizeReason('bad "password"\n\\r client-kill 1')).to.equal('bad password r client-kill 1');
      expect(sanitizeReason('"""')).to.equal('denied');
      expect(() => mgmt.command('status 3\nkill user1')).to.throw(/one line/);
      try {
        await mgmt.kill('user1 x');
        expect.fail('bad common name');
      } catch (e) {
        expect((e as DomainError).kind).to.equal('invalid');
      }
    });

    it('answers >HOLD with hold release and enables bytecount on every connection', async () => {
      await mgmt.close();
      mgmt = new ManagementClient({ host, socketPath: '/run/test/mgmt.sock', reconnectInitialMs: 10, bytecountIntervalSec: 5 });
      mgmt.start();
      await mgmt.waitConnected(2000);
      const c = host.connections[0]!;
      expect(await c.nextWritten(1)).to.equal('bytecount 5');
      c.sendLines(['>INFO:OpenVPN Management Interface Version 5', '>HOLD:Waiting for hold release:0', 'SUCCESS: bytecount interval changed']);
      expect(await c.nextWritten(2)).to.equal('hold release');
    });
  });
});
