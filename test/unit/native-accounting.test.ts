import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import {
  createTracker,
  isNative,
  nativeLoadError,
  RowFlag,
  type AccountingTracker,
  type SessionSample,
  type StatusFormat,
  type TickResult,
  type TrackerPoll,
} from '../../native';
import { requirePrerequisite } from '../helpers/prereq';

// One suite, run against the C++ addon and the TypeScript fallback: both must give the same
// answers. A randomized differential test at the end compares them on 10k generated sequences.

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'native');
const OPENVPN = readFileSync(path.join(FIXTURES, 'openvpn-status3.txt'), 'utf8');
const WG = readFileSync(path.join(FIXTURES, 'wg-dump.txt'), 'utf8');
const OCSERV = readFileSync(path.join(FIXTURES, 'ocserv-users.json'), 'utf8');

const WG_PEER_1 = 'nI7LF0E1UX/4qTsh2WlGRXJkQpyU3pyhxYzfrEXk6zQ=';
const WG_PEER_IDLE = 'q9YjA+Zp2bnTHfXIeGgB3OqUd7RfFz6s1MZr0lDqvAk=';
const WG_PEER_2 = 'B4Z0W3VmH1oQk8F6nQ8lG8bHc2pZy5r7m9s1t3u5v7w=';

function text(format: StatusFormat, body: string | Uint8Array, scope: string, extra: Partial<TrackerPoll> = {}): TrackerPoll {
  const protocol = format === 'openvpn-status3' ? 'openvpn' : format === 'wg-dump' ? 'wireguard' : 'cisco';
  return { kind: 'status-text', format, text: body, scope, protocol, serverId: 'main', ...extra } as TrackerPoll;
}

function samples(scope: string, list: SessionSample[]): TrackerPoll {
  return { kind: 'samples', scope, protocol: 'l2tp', serverId: 'main', samples: list };
}

/** OpenVPN status 3 text with the 2.6 header and the given CLIENT_LIST rows. */
function ovpn(rows: { cn: string; id: number | string; rx: number; tx: number; at?: number; user?: string; real?: string }[], end = true): string {
  const lines = [
    'TITLE\tOpenVPN 2.6.14 x86_64-pc-linux-gnu',
    'TIME\t2026-11-26 18:28:12\t1795717692',
    'HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher',
  ];
  for (const r of rows) {
    lines.push(
      `CLIENT_LIST\t${r.cn}\t${r.real ?? '10.0.0.9:1194'}\t10.8.0.2\t\t${r.rx}\t${r.tx}\t2026-11-26 18:00:00\t${r.at ?? 1795716000}\t${r.user ?? r.cn}\t${r.id}\t${r.id}\tAES-256-GCM`,
    );
  }
  lines.push('HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name\tReal Address\tLast Ref\tLast Ref (time_t)');
  if (end) lines.push('END');
  return lines.join('\n') + '\n';
}

function rowsByKey(r: TickResult): Record<string, ReturnType<TickResult['toRows']>[number]> {
  return Object.fromEntries(r.toRows().map((row) => [row.key, row]));
}

for (const impl of ['native', 'fallback'] as const) {
  describe(`native accounting tracker (${impl})`, function () {
    before(function () {
      if (impl === 'native') requirePrerequisite(this, isNative, `the native addon is not loaded: ${nativeLoadError ?? 'unknown reason'}`);
    });

    let t: AccountingTracker;
    beforeEach(() => {
      t = createTracker({ forceFallback: impl === 'fallback' });
    });

    it('reports which implementation it is', () => {
      expect(t.implementation).to.equal(impl);
    });

    describe('OpenVPN status 3, captured from OpenVPN 2.6.14 (test/fixtures/openvpn)', () => {
      // Moved here from the plugin's own parser, which is gone: these captures now prove the
      // one parser accounting and the plugin both use.
      const capture = (name: string) => readFileSync(path.join(__dirname, '..', 'fixtures', 'openvpn', name), 'utf8');
      const rows = (r: TickResult) => r.toRows().map((x) => [x.key, x.user, x.remoteAddress, x.rx, x.tx, x.connectedAt]);

      it('an established client is a session with its counters and start; one still authenticating is not', () => {
        const r = t.tick([text('openvpn-status3', capture('status3-live-and-pending.txt'), 'main:1194udp')]);
        expect(rows(r)).to.deep.equal([['main:1194udp:0', 'user1', '10.99.7.2:52289', 2604, 2416, 1795718188]]);
        expect(r.polls[0]).to.include({ complete: true, malformed: 0 });
      });

      it('after a reconnect the new client id is a new session and the old one vanishes', () => {
        t.tick([text('openvpn-status3', capture('status3-live-and-pending.txt'), 'main:1194udp')]);
        const r = t.tick([text('openvpn-status3', capture('status3-after-reconnect.txt'), 'main:1194udp')]);
        expect(rows(r)).to.deep.equal([['main:1194udp:3', 'user1', '10.99.7.2:36138', 7539, 6997, 1795718218]]);
        expect(r.vanished.map((v) => v.key)).to.deep.equal(['main:1194udp:0']);
      });

      it('an empty server and a one-client server parse completely', () => {
        expect(t.tick([text('openvpn-status3', capture('status3-empty.txt'), 'e')]).rowCount).to.equal(0);
        const one = t.tick([text('openvpn-status3', capture('status3-one-client.txt'), 'o')]);
        expect(one.rowCount).to.equal(1);
        expect(one.polls.map((p) => p.complete)).to.deep.equal([true]);
      });

      it('finds columns by header name, so a reordered or extended header still parses (CRLF too)', () => {
        const body = [
          'HEADER\tCLIENT_LIST\tClient ID\tCommon Name\tNew Column\tBytes Sent\tBytes Received\tConnected Since (time_t)\tVirtual Address\tReal Address',
          'CLIENT_LIST\t7\talice\tx\t200\t100\t1700000000\t10.8.0.2\t[2001:db8::5]:1194',
          'END',
        ].join('\r\n');
        const r = t.tick([text('openvpn-status3', body, 'node_1:443tcp')]);
        expect(rows(r)).to.deep.equal([['node_1:443tcp:7', 'alice', '[2001:db8::5]:1194', 100, 200, 1700000000]]);
      });
    });

    describe('OpenVPN status 3', () => {
      it('reads CLIENT_LIST rows by the HEADER columns; a row without a virtual address (still authenticating) is no session', () => {
        const r = t.tick([text('openvpn-status3', OPENVPN, 'ovpn@s1')]);
        expect(r.polls[0]).to.include({ rowStart: 0, rowCount: 3, malformed: 0, ignored: 0, complete: true });
        expect(r.toRows().map((x) => [x.key, x.user, x.remoteAddress, x.rx, x.tx, x.connectedAt])).to.deep.equal([
          ['ovpn@s1:0', 'user1', '10.99.1.2:33515', 1125, 2033, 1795717691],
          // Username UNDEF (certificate-only client): the common name is the user.
          ['ovpn@s1:3', 'cert-only', '10.99.1.3:40211', 5400, 91230, 1795717201],
          ['ovpn@s1:7', 'user2', '[fd00::2]:51000', 0, 0, 1795717690],
        ]);
        expect(Array.from(r.flags)).to.deep.equal([RowFlag.New, RowFlag.New, RowFlag.New]);
        expect(r.toRows().some((x) => x.user === 'user3')).to.equal(false);
      });

      it('accepts CRLF lines and a Buffer, with the same result as a string', () => {
        const a = t.tick([text('openvpn-status3', OPENVPN.replace(/\n/g, '\r\n'), 'ovpn@s1')]).toRows();
        const other = createTracker({ forceFallback: impl === 'fallback' });
        const b = other.tick([text('openvpn-status3', Buffer.from(OPENVPN), 'ovpn@s1')]).toRows();
        expect(a).to.deep.equal(b);
        expect(a).to.have.length(3);
      });

      it('follows the header when columns are reordered or missing', () => {
        const body = [
          'HEADER\tCLIENT_LIST\tClient ID\tBytes Sent\tCommon Name\tExtra\tBytes Received\tUsername',
          'CLIENT_LIST\t12\t900\tbob\tx\t300\tUNDEF',
          'END',
        ].join('\n');
        const r = t.tick([text('openvpn-status3', body, 'o')]);
        expect(r.toRows().map((x) => [x.key, x.user, x.rx, x.tx, x.connectedAt, x.remoteAddress])).to.deep.equal([
          ['o:12', 'bob', 300, 900, 0, ''],
        ]);
        expect(r.polls[0].complete).to.equal(true);
      });

      it('keys by common name and real address when there is no Client ID column (OpenVPN < 2.4)', () => {
        const body = [
          'HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tBytes Received\tBytes Sent\tConnected Since (time_t)',
          'CLIENT_LIST\tcarol\t1.2.3.4:5555\t10\t20\t1700000000',
          'END',
        ].join('\n');
        const r = t.tick([text('openvpn-status3', body, 'o')]);
        expect(r.keyAt(0)).to.equal('o:carol:1.2.3.4:5555');
      });

      it('skips malformed rows, counts them, and then lets nothing vanish', () => {
        t.tick([text('openvpn-status3', ovpn([{ cn: 'a', id: 1, rx: 1, tx: 1 }, { cn: 'b', id: 2, rx: 1, tx: 1 }]), 'o')]);
        const body = ovpn([{ cn: 'a', id: 1, rx: 5, tx: 5 }]).replace('END', 'CLIENT_LIST\tb\tonly-two-fields\nCLIENT_LIST\tc\t1.1.1.1:1\t10.8.0.2\t\tNaN\t1\tx\t1\tc\t3\t3\tx\nCLIENT_LIST\nEND');
        const r = t.tick([text('openvpn-status3', body, 'o')]);
        expect(r.polls[0]).to.include({ rowCount: 1, malformed: 3, complete: false });
        expect(r.vanished).to.deep.equal([]);
        expect(t.size).to.equal(2);
      });

      it('treats a text without END (truncated) as incomplete', () => {
        t.tick([text('openvpn-status3', ovpn([{ cn: 'a', id: 1, rx: 1, tx: 1 }, { cn: 'b', id: 2, rx: 1, tx: 1 }]), 'o')]);
        const r = t.tick([text('openvpn-status3', ovpn([{ cn: 'a', id: 1, rx: 2, tx: 2 }], false), 'o')]);
        expect(r.polls[0].complete).to.equal(false);
        expect(r.vanished).to.deep.equal([]);
        const r2 = t.tick([text('openvpn-status3', ovpn([{ cn: 'a', id: 1, rx: 3, tx: 3 }]), 'o')]);
        expect(r2.vanished.map((v) => v.key)).to.deep.equal(['o:2']);
      });

      it('counts rows before any valid header as malformed', () => {
        const r = t.tick([text('openvpn-status3', 'CLIENT_LIST\ta\t1.1.1.1:1\t1\t2\nEND\n', 'o')]);
        expect(r.polls[0]).to.include({ rowCount: 0, malformed: 1, complete: false });
      });
    });

    describe('wg show all dump', () => {
      const names = new Map([
        [WG_PEER_1, 'dave'],
        [WG_PEER_2, 'erin'],
      ]);

      it('reads peers with a handshake, skips interface lines and never-handshaked peers', () => {
        const r = t.tick([text('wg-dump', WG, 'wg@s1', { peerNames: names })]);
        expect(r.polls[0]).to.include({ rowCount: 2, malformed: 0, complete: true });
        expect(r.toRows().map((x) => [x.key, x.user, x.remoteAddress, x.rx, x.tx, x.connectedAt])).to.deep.equal([
          [`wg@s1:wgs0:${WG_PEER_1}`, 'dave', '10.99.3.2:41234', 15460, 16012, 0],
          [`wg@s1:wgs1:${WG_PEER_2}`, 'erin', '[2001:db8::7]:60001', 1048576, 73400320, 0],
        ]);
        expect(r.toRows().some((x) => x.key.includes(WG_PEER_IDLE))).to.equal(false);
      });

      it("reports unknown public keys under user '' and names them once the map knows them", () => {
        const r1 = t.tick([text('wg-dump', WG, 'wg', { peerNames: { [WG_PEER_2]: 'erin' } })]);
        expect(r1.toRows().map((x) => x.user)).to.deep.equal(['', 'erin']);
        expect(r1.perUser().get('')).to.deep.equal({ rxDelta: 15460, txDelta: 16012, live: 1 });
        const grown = WG.replace('\t15460\t16012\t', '\t15500\t16100\t');
        const r2 = t.tick([text('wg-dump', grown, 'wg', { peerNames: names })]);
        expect(r2.toRows().map((x) => [x.user, x.rxDelta, x.txDelta])).to.deep.equal([
          ['dave', 40, 88],
          ['erin', 0, 0],
        ]);
      });

      it('keeps the first name of a known peer (names are looked up for new peers only)', () => {
        t.tick([text('wg-dump', WG, 'wg', { peerNames: names })]);
        const r = t.tick([text('wg-dump', WG, 'wg', { peerNames: new Map([[WG_PEER_1, 'mallory']]) })]);
        expect(r.userAt(0)).to.equal('dave');
      });

      it('treats a counter that went down (interface re-created) as a new connection', () => {
        t.tick([text('wg-dump', WG, 'wg', { peerNames: names })]);
        const r = t.tick([text('wg-dump', WG.replace('\t15460\t16012\t', '\t100\t200\t'), 'wg', { peerNames: names })]);
        expect(r.toRows()[0]).to.include({ rxDelta: 100, txDelta: 200, flags: RowFlag.Reset });
      });

      it('counts lines with a wrong number of fields or bad numbers as malformed', () => {
        const r = t.tick([text('wg-dump', `${WG}wgs0\tonly\tthree\nwgs0\tK=\t(none)\t(none)\t10.0.0.1/32\t1\tx\t2\toff\n\n`, 'wg')]);
        expect(r.polls[0]).to.include({ rowCount: 2, malformed: 2, complete: false });
      });
    });

    describe('occtl --json show users', () => {
      it('reads users whatever the field order, numbers or strings, escapes and duplicate keys', () => {
        const r = t.tick([text('ocserv-json', OCSERV, 'oc@s1')]);
        expect(r.polls[0]).to.include({ rowCount: 2, malformed: 0, complete: true });
        expect(r.toRows().map((x) => [x.key, x.user, x.remoteAddress, x.rx, x.tx, x.connectedAt])).to.deep.equal([
          ['oc@s1:412', 'alice', '10.99.2.2', 5412, 7780, 1795717740],
          ['oc@s1:418', 'Jürgen "jm"', '2001:db8::44', 1048576, 2097152, 1795717000],
        ]);
      });

      it('takes an empty array as a complete poll with no sessions', () => {
        t.tick([text('ocserv-json', OCSERV, 'oc')]);
        const r = t.tick([text('ocserv-json', '[]\n', 'oc')]);
        expect(r.polls[0]).to.include({ rowCount: 0, complete: true });
        expect(r.vanished.map((v) => v.key)).to.deep.equal(['oc:412', 'oc:418']);
      });

      it('keeps the users before a syntax error and marks the poll incomplete', () => {
        t.tick([text('ocserv-json', OCSERV, 'oc')]);
        const truncated = OCSERV.slice(0, OCSERV.indexOf('"ID":  "418"'));
        const r = t.tick([text('ocserv-json', truncated, 'oc')]);
        expect(r.polls[0]).to.include({ rowCount: 1, complete: false });
        expect(r.vanished).to.deep.equal([]);
      });

      it('counts objects without a usable ID, Username, RX or TX as malformed', () => {
        const body = JSON.stringify([
          { ID: 1, Username: 'u', RX: '1', TX: '2' },
          { ID: 2, Username: 'u', TX: '2' },
          { ID: -3, Username: 'u', RX: 1, TX: 2 },
          { ID: 4, Username: 7, RX: 1, TX: 2 },
          { ID: 5, Username: 'u', RX: '1e3', TX: 2 },
          'not an object',
          { ID: '6', Username: 'v', RX: 9, TX: 9, raw_connected_at: null },
          { ID: '7', Username: 'w', RX: 9, TX: 9, 'Remote IP': null },
        ]);
        const r = t.tick([text('ocserv-json', body, 'oc')]);
        expect(r.toRows().map((x) => [x.key, x.remoteAddress])).to.deep.equal([
          ['oc:1', ''],
          ['oc:7', ''],
        ]);
        expect(r.polls[0]).to.include({ malformed: 6, complete: false });
      });

      it('decodes \\u escapes, including surrogate pairs, and replaces lone surrogates', () => {
        const body = '[{"ID":1,"Username":"\\ud83d\\ude00 \\u00e9\\/\\t","RX":1,"TX":1},{"ID":2,"Username":"x\\ud800y","RX":1,"TX":1}]';
        const r = t.tick([text('ocserv-json', body, 'oc')]);
        expect(r.toRows().map((x) => x.user)).to.deep.equal(['😀 é/\t', 'x\ufffdy']);
      });

      it('gives up on anything that is not a JSON array', () => {
        for (const body of ['', '   ', '{"ID":1}', 'occtl: cannot connect', '[{"ID":1,"Username":"a","RX":1,"TX":1},]']) {
          const r = t.tick([text('ocserv-json', body, 'oc')]);
          expect(r.polls[0].complete, JSON.stringify(body)).to.equal(false);
        }
      });
    });

    describe('deltas', () => {
      const s = (key: string, rx: number, tx: number, at = 100, user = 'u'): SessionSample => ({ key, user, rx, tx, connectedAt: at });

      it('new key: the whole counters; same connection: the difference', () => {
        const r1 = t.tick([samples('l2tp', [s('k1', 1000, 5000)])]);
        expect([r1.rxDelta[0], r1.txDelta[0], r1.flags[0]]).to.deep.equal([1000, 5000, RowFlag.New]);
        const r2 = t.tick([samples('l2tp', [s('k1', 1500, 5000)])]);
        expect([r2.rxDelta[0], r2.txDelta[0], r2.flags[0]]).to.deep.equal([500, 0, 0]);
      });

      it('a counter that went down is a new connection: the whole counters, never negative', () => {
        t.tick([samples('l2tp', [s('k1', 1000, 5000)])]);
        const r = t.tick([samples('l2tp', [s('k1', 2000, 10)])]);
        expect([r.rxDelta[0], r.txDelta[0], r.flags[0]]).to.deep.equal([2000, 10, RowFlag.Reset]);
      });

      it('a changed connectedAt under the same key is a new connection', () => {
        t.tick([samples('l2tp', [s('k1', 1000, 5000, 100)])]);
        const r = t.tick([samples('l2tp', [s('k1', 3000, 6000, 200)])]);
        expect([r.rxDelta[0], r.txDelta[0], r.flags[0]]).to.deep.equal([3000, 6000, RowFlag.Reconnect]);
      });

      it('counts up to 2^53-1 bytes exactly', () => {
        const big = Number.MAX_SAFE_INTEGER;
        t.tick([samples('l2tp', [s('k1', big - 10, 0)])]);
        const r = t.tick([samples('l2tp', [s('k1', big, big)])]);
        expect([r.rxDelta[0], r.txDelta[0]]).to.deep.equal([10, big]);
        const o = t.tick([text('openvpn-status3', ovpn([{ cn: 'a', id: 1, rx: big, tx: 0 }]), 'o')]);
        expect(o.rx[0]).to.equal(big);
        const over = t.tick([text('openvpn-status3', ovpn([{ cn: 'a', id: 1, rx: 9007199254740992, tx: 0 }]), 'o')]);
        expect(over.polls[0].malformed).to.equal(1);
      });

      it('sums deltas per user and counts their live sessions', () => {
        t.tick([samples('l2tp', [s('a1', 10, 10, 1, 'ann'), s('a2', 10, 10, 1, 'ann'), s('b1', 10, 10, 1, 'ben')])]);
        const r = t.tick([
          samples('l2tp', [s('a1', 15, 20, 1, 'ann'), s('b1', 11, 10, 1, 'ben'), s('a2', 30, 10, 1, 'ann')]),
          text('openvpn-status3', ovpn([{ cn: 'ann', id: 9, rx: 7, tx: 3 }]), 'o'),
        ]);
        expect(r.perUser()).to.deep.equal(
          new Map([
            ['ann', { rxDelta: 5 + 20 + 7, txDelta: 10 + 3, live: 3 }],
            ['ben', { rxDelta: 1, txDelta: 0, live: 1 }],
          ]),
        );
        expect(Array.from(r.activeUsers).map((id) => r.userNames[id])).to.deep.equal(['ann', 'ben']);
        expect(r.userNames).to.have.length(2);
      });

      it('zeroes the sums of users without rows in the next tick', () => {
        t.tick([samples('l2tp', [s('a1', 10, 10, 1, 'ann')]), samples('x', [s('b1', 10, 10, 1, 'ben')])]);
        const r = t.tick([samples('l2tp', [s('a1', 12, 10, 1, 'ann')])]);
        const ben = r.userNames.indexOf('ben');
        expect([r.userRxDelta[ben], r.userTxDelta[ben], r.userLive[ben]]).to.deep.equal([0, 0, 0]);
      });

      it('a key repeated within one tick is flagged, counted once as live, never counted twice', () => {
        const r = t.tick([samples('l2tp', [s('k', 10, 10), s('k', 12, 10)])]);
        expect(Array.from(r.flags)).to.deep.equal([RowFlag.New, RowFlag.Repeat]);
        expect(r.perUser().get('u')).to.deep.equal({ rxDelta: 12, txDelta: 10, live: 1 });
      });

      it('attributes bytes to the new username when a connection reports another user', () => {
        t.tick([samples('l2tp', [s('k', 10, 10, 1, 'before')])]);
        const r = t.tick([samples('l2tp', [s('k', 15, 10, 1, 'after')])]);
        expect(r.perUser().get('after')).to.deep.equal({ rxDelta: 5, txDelta: 0, live: 1 });
      });
    });

    describe('vanishing', () => {
      const s = (key: string, rx: number): SessionSample => ({ key, user: 'u', rx, tx: 0, connectedAt: 1 });

      it('reports a key absent from its scope once, with its last counters, then forgets it', () => {
        t.tick([samples('l2tp@a', [s('k1', 10), s('k2', 20)])]);
        const r = t.tick([samples('l2tp@a', [s('k1', 11)])]);
        expect(r.vanished).to.deep.equal([
          { key: 'k2', scope: 'l2tp@a', protocol: 'l2tp', serverId: 'main', user: 'u', rx: 20, tx: 0, connectedAt: 1 },
        ]);
        expect(t.size).to.equal(1);
        const again = t.tick([samples('l2tp@a', [s('k1', 12), s('k2', 25)])]);
        expect(again.flags[1]).to.equal(RowFlag.New); // forgotten, so it is new (and counted whole)
      });

      it('only vanishes sessions of the scopes polled in the tick', () => {
        t.tick([samples('s1', [s('a', 1)]), samples('s2', [s('b', 1)]), text('ocserv-json', OCSERV, 'oc')]);
        const r = t.tick([samples('s1', [])]);
        expect(r.vanished.map((v) => v.key)).to.deep.equal(['a']);
        expect(t.snapshot().map((x) => x.key)).to.deep.equal(['b', 'oc:412', 'oc:418']);
      });

      it('vanishes nothing of a scope whose poll in this tick was incomplete, even if another poll of it was complete', () => {
        t.tick([text('openvpn-status3', ovpn([{ cn: 'a', id: 1, rx: 1, tx: 1 }, { cn: 'b', id: 2, rx: 1, tx: 1 }]), 'o')]);
        const r = t.tick([
          text('openvpn-status3', ovpn([{ cn: 'a', id: 1, rx: 1, tx: 1 }]), 'o'),
          text('openvpn-status3', 'garbage', 'o'),
        ]);
        expect(r.vanished).to.deep.equal([]);
      });

      it('moves a key to the scope that reports it', () => {
        t.tick([samples('s1', [s('k', 1)])]);
        t.tick([samples('s2', [s('k', 2)])]);
        const r = t.tick([samples('s1', [])]);
        expect(r.vanished).to.deep.equal([]);
        expect(t.snapshot()[0].scope).to.equal('s2');
      });
    });

    describe('seed, ended, forget, snapshot', () => {
      it('continues from seeded counters (after a restart)', () => {
        t.seed({ key: 'ovpn@s1:0', scope: 'ovpn@s1', user: 'user1', rx: 1000, tx: 2000, connectedAt: 1795717691 });
        const r = t.tick([text('openvpn-status3', OPENVPN, 'ovpn@s1')]);
        expect(rowsByKey(r)['ovpn@s1:0']).to.include({ rxDelta: 125, txDelta: 33, flags: 0 });
      });

      it('a seeded session missing from the first poll vanishes with its seeded counters', () => {
        t.seed({ key: 'ovpn@s1:99', scope: 'ovpn@s1', user: 'gone', rx: 5, tx: 6, connectedAt: 1 });
        const r = t.tick([text('openvpn-status3', OPENVPN, 'ovpn@s1')]);
        expect(r.vanished).to.deep.equal([
          { key: 'ovpn@s1:99', scope: 'ovpn@s1', protocol: 'openvpn', serverId: 'main', user: 'gone', rx: 5, tx: 6, connectedAt: 1 },
        ]);
      });

      it('snapshot() round-trips through seed()', () => {
        t.tick([text('openvpn-status3', OPENVPN, 'o'), text('wg-dump', WG, 'w')]);
        t.ended('o:3', 6000, 100000);
        const snap = t.snapshot();
        expect(snap.map((x) => x.key)).to.deep.equal([...snap.map((x) => x.key)].sort());
        const copy = createTracker({ forceFallback: impl === 'fallback' });
        for (const x of snap) copy.seed(x);
        expect(copy.snapshot()).to.deep.equal(snap);
        expect(snap.find((x) => x.key === 'o:3')).to.include({ ended: true, rx: 6000 });
      });

      it('ended() folds the final counters: the bytes since the last poll, nothing lost', () => {
        t.tick([samples('l2tp', [{ key: 'k', user: 'u', rx: 100, tx: 100, connectedAt: 5 }])]);
        expect(t.ended('k', 150, 180)).to.deep.equal({
          key: 'k',
          user: 'u',
          scope: 'l2tp',
          rxDelta: 50,
          txDelta: 80,
          rx: 150,
          tx: 180,
          connectedAt: 5,
          known: true,
        });
        // The same end reported twice adds nothing.
        expect(t.ended('k', 150, 180)).to.include({ rxDelta: 0, txDelta: 0 });
        // The ended session is no longer live: the next poll without it reports nothing.
        const r = t.tick([samples('l2tp', [])]);
        expect(r.vanished).to.deep.equal([]);
        expect(t.size).to.equal(0);
      });

      it('a stale row of an ended session (status captured before the disconnect) is ignored', () => {
        t.tick([text('openvpn-status3', ovpn([{ cn: 'a', id: 1, rx: 100, tx: 100 }]), 'o')]);
        t.ended('o:1', 120, 130);
        const r = t.tick([text('openvpn-status3', ovpn([{ cn: 'a', id: 1, rx: 110, tx: 100 }]), 'o')]);
        expect(r.rowCount).to.equal(0);
        expect(r.polls[0].ignored).to.equal(1);
        expect(t.size).to.equal(1); // still remembered while stale rows keep coming
        const r2 = t.tick([text('openvpn-status3', ovpn([]), 'o')]);
        expect(r2.vanished).to.deep.equal([]);
        expect(t.size).to.equal(0);
      });

      it('an ended session that shows more bytes is revived from its final counters', () => {
        t.tick([samples('l2tp', [{ key: 'k', user: 'u', rx: 100, tx: 100, connectedAt: 5 }])]);
        t.ended('k', 150, 150);
        const r = t.tick([samples('l2tp', [{ key: 'k', user: 'u', rx: 170, tx: 150, connectedAt: 5 }])]);
        expect([r.rxDelta[0], r.txDelta[0], r.flags[0]]).to.deep.equal([20, 0, RowFlag.Revived]);
      });

      it('ended() of an unknown key counts everything when a user is given, else returns null', () => {
        expect(t.ended('nope', 10, 10)).to.equal(null);
        expect(t.ended('short', 10, 20, { user: 'u', connectedAt: 7, scope: 'l2tp' })).to.deep.equal({
          key: 'short',
          user: 'u',
          scope: 'l2tp',
          rxDelta: 10,
          txDelta: 20,
          rx: 10,
          tx: 20,
          connectedAt: 7,
          known: false,
        });
        // Its stale row in the next poll is not counted again.
        const r = t.tick([samples('l2tp', [{ key: 'short', user: 'u', rx: 10, tx: 20, connectedAt: 7 }])]);
        expect(r.rowCount).to.equal(0);
        expect(t.ended('other', 1, 2, { user: 'v' })).to.include({ scope: undefined, rxDelta: 1 });
        expect(t.size).to.equal(1);
      });

      it('ended() with another connectedAt than tracked counts the whole final counters', () => {
        t.tick([samples('l2tp', [{ key: 'k', user: 'u', rx: 100, tx: 100, connectedAt: 5 }])]);
        expect(t.ended('k', 30, 40, { connectedAt: 6 })).to.include({ rxDelta: 30, txDelta: 40 });
      });

      it('forget() and reset() drop state', () => {
        t.tick([samples('l2tp', [{ key: 'k', user: 'u', rx: 1, tx: 1, connectedAt: 1 }])]);
        expect(t.forget('k')).to.equal(true);
        expect(t.forget('k')).to.equal(false);
        t.tick([samples('l2tp', [{ key: 'k', user: 'u', rx: 1, tx: 1, connectedAt: 1 }])]);
        t.reset();
        expect(t.size).to.equal(0);
        const r = t.tick([samples('l2tp', [{ key: 'k', user: 'w', rx: 1, tx: 1, connectedAt: 1 }])]);
        expect(r.flags[0]).to.equal(RowFlag.New);
        expect(r.userNames).to.deep.equal(['w']);
      });
    });

    describe('results', () => {
      it('lazy row readers refuse to answer after the tracker changed', () => {
        const r = t.tick([text('openvpn-status3', OPENVPN, 'o')]);
        expect(r.keyAt(0)).to.equal('o:0');
        t.tick([]);
        expect(() => r.keyAt(0)).to.throw(Error, /changed since this tick/);
        expect(() => t.tick([]).keyAt(0)).to.throw(RangeError);
      });

      it('reads remote addresses of sample rows from the samples', () => {
        const r = t.tick([
          text('wg-dump', WG, 'w'),
          samples('l2tp', [{ key: 'k', user: 'u', rx: 1, tx: 1, connectedAt: 1, remoteAddress: '198.51.100.7' }]),
        ]);
        expect(r.remoteAddressAt(2)).to.equal('198.51.100.7');
        expect(r.toRows()[2].pollIndex).to.equal(1);
      });

      it('handles non-ASCII keys and usernames in samples', () => {
        const r = t.tick([samples('l2tp', [{ key: 'ключ:1', user: 'Ζωή', rx: 1, tx: 2, connectedAt: 3 }])]);
        expect([r.keyAt(0), r.userAt(0)]).to.deep.equal(['ключ:1', 'Ζωή']);
        expect(t.snapshot()[0]).to.include({ key: 'ключ:1', user: 'Ζωή' });
      });

      it('survives random bytes in every format', () => {
        let seed = 12345;
        const rnd = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
        for (let i = 0; i < 300; i++) {
          const bytes = Buffer.alloc(Math.floor(rnd() * 400));
          for (let j = 0; j < bytes.length; j++) bytes[j] = rnd() < 0.2 ? [9, 10, 13, 34, 92, 91, 123][Math.floor(rnd() * 7)] : Math.floor(rnd() * 256);
          for (const format of ['openvpn-status3', 'wg-dump', 'ocserv-json'] as const) {
            t.tick([text(format, bytes, `s${format}`)]);
          }
        }
      });
    });

    describe('argument checks', () => {
      const bad: [string, () => unknown, RegExp][] = [
        ['polls not an array', () => t.tick({} as never), /polls must be an array/],
        ['unknown kind', () => t.tick([{ kind: 'x' } as never]), /scope must be a string/],
        ['unknown kind with labels', () => t.tick([{ kind: 'x', scope: 's', protocol: 'l2tp', serverId: '' } as never]), /kind must be/],
        ['unknown format', () => t.tick([{ ...text('wg-dump', '', 's'), format: 'csv' } as never]), /format must be/],
        ['bad protocol', () => t.tick([{ ...samples('s', []), protocol: 'pptp' } as never]), /protocol must be one of/],
        ['empty scope', () => t.tick([samples('', [])]), /scope must not be empty/],
        ['text of a wrong type', () => t.tick([text('wg-dump', 42 as never, 's')]), /text must be a string or a Uint8Array/],
        ['text with a lone surrogate', () => t.tick([text('wg-dump', 'a\ud800', 's')]), /well-formed/],
        ['peerNames of a wrong type', () => t.tick([text('wg-dump', '', 's', { peerNames: 'x' as never })]), /peerNames must be a Map/],
        ['sample not an object', () => t.tick([samples('s', [null as never])]), /samples\[0\] must be an object/],
        ['negative counter', () => t.tick([samples('s', [{ key: 'k', user: 'u', rx: -1, tx: 0, connectedAt: 0 }])]), /samples\[0\]\.rx must be a non-negative safe integer/],
        ['fractional counter', () => t.tick([samples('s', [{ key: 'k', user: 'u', rx: 1, tx: 0.5, connectedAt: 0 }])]), /\.tx must be/],
        ['unsafe counter', () => t.tick([samples('s', [{ key: 'k', user: 'u', rx: 2 ** 53, tx: 0, connectedAt: 0 }])]), /\.rx must be/],
        ['string counter', () => t.tick([samples('s', [{ key: 'k', user: 'u', rx: '1' as never, tx: 0, connectedAt: 0 }])]), /\.rx must be/],
        ['missing connectedAt', () => t.tick([samples('s', [{ key: 'k', user: 'u', rx: 1, tx: 0 } as never])]), /connectedAt must be/],
        ['empty key', () => t.tick([samples('s', [{ key: '', user: 'u', rx: 1, tx: 0, connectedAt: 0 }])]), /key must not be empty/],
        ['key too long', () => t.tick([samples('s', [{ key: 'k'.repeat(5000), user: 'u', rx: 1, tx: 0, connectedAt: 0 }])]), /at most 4096/],
        ['user not a string', () => t.tick([samples('s', [{ key: 'k', user: 5 as never, rx: 1, tx: 0, connectedAt: 0 }])]), /user must be a string/],
        ['user with a lone surrogate', () => t.tick([samples('s', [{ key: 'k', user: '\udc00x', rx: 1, tx: 0, connectedAt: 0 }])]), /user must be well-formed/],
        ['remoteAddress not a string', () => t.tick([samples('s', [{ key: 'k', user: 'u', rx: 1, tx: 0, connectedAt: 0, remoteAddress: 1 as never }])]), /remoteAddress must be a string/],
        ['ended key', () => t.ended(1 as never, 0, 0), /ended\(key\) must be a string/],
        ['ended counter', () => t.ended('k', NaN, 0), /ended\(finalRx\) must be a non-negative safe integer/],
        ['ended options', () => t.ended('k', 0, 0, { connectedAt: -5 }), /options\.connectedAt/],
        ['seed', () => t.seed({ key: 'k', scope: 's', user: 'u', rx: 1, tx: 1, connectedAt: Infinity }), /seed\(session\)\.connectedAt/],
        ['seed scope', () => t.seed({ key: 'k', scope: '', user: 'u', rx: 1, tx: 1, connectedAt: 1 }), /seed\(session\)\.scope must not be empty/],
        ['forget', () => t.forget(undefined as never), /forget\(key\) must be a string/],
        ['createTracker', () => createTracker({ forceFallback: 'yes' as never }), /forceFallback must be a boolean/],
      ];
      for (const [what, call, message] of bad) {
        it(`throws a TypeError: ${what}`, () => {
          expect(call).to.throw(TypeError, message);
        });
      }

      it('changes nothing when a poll of the tick is invalid', () => {
        t.tick([samples('s', [{ key: 'k', user: 'u', rx: 1, tx: 1, connectedAt: 1 }])]);
        expect(() => t.tick([samples('s', []), samples('s', [{ key: 'k', user: 'u', rx: -1, tx: 0, connectedAt: 0 }])])).to.throw(TypeError);
        expect(t.size).to.equal(1);
      });
    });
  });
}

// -------------------------------------------------------------------------------------------------
// Randomized differential test: native and fallback must agree on everything, always.

/** mulberry32 */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    let t = (s = (s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Sim {
  id: string;
  user: string;
  rx: number;
  tx: number;
  at: number;
  remote: string;
}

const USERS = ['ann', 'ben', 'Jürgen', 'ζωή', '', 'UNDEF', 'a"b', 'tab\\user', '😀'];

class Scenario {
  readonly scopes: { name: string; format: StatusFormat | 'samples'; sessions: Sim[]; idle: string[] }[];
  private next = 1;
  readonly peerNames = new Map<string, string>();

  constructor(private readonly r: () => number) {
    const formats: (StatusFormat | 'samples')[] = ['openvpn-status3', 'wg-dump', 'ocserv-json', 'samples'];
    this.scopes = [];
    const count = 1 + this.int(4);
    for (let i = 0; i < count; i++) {
      const format = formats[this.int(formats.length)];
      this.scopes.push({ name: `${format}@${i}`, format, sessions: [], idle: [] });
    }
    for (const sc of this.scopes) for (let i = this.int(5); i > 0; i--) sc.sessions.push(this.session(sc.format));
  }

  int(n: number): number {
    return Math.floor(this.r() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  counter(): number {
    const r = this.r();
    return r < 0.1 ? 0 : r < 0.95 ? this.int(1e6) : Number.MAX_SAFE_INTEGER - this.int(1000);
  }

  session(format: string): Sim {
    const n = this.next++;
    const id = format === 'wg-dump' ? `${this.pick(['wg0', 'wg1'])}\t${'P'.repeat(this.int(3))}${n}key=` : format === 'samples' ? this.pick(['', 'k:', 'ключ:']) + n : String(n);
    const user = this.pick(USERS);
    if (format === 'wg-dump' && this.r() < 0.8) this.peerNames.set(id.split('\t')[1], user);
    return { id, user, rx: this.counter(), tx: this.counter(), at: this.r() < 0.3 ? 0 : 1_700_000_000 + this.int(1000), remote: this.r() < 0.5 ? '' : `10.0.0.${this.int(255)}:${this.int(65535)}` };
  }

  /** Evolves the world between ticks. */
  step(): void {
    for (const sc of this.scopes) {
      for (let i = 0; i < sc.sessions.length; i++) {
        const s = sc.sessions[i];
        const r = this.r();
        if (r < 0.6) {
          s.rx = Math.min(Number.MAX_SAFE_INTEGER, s.rx + this.int(5000));
          s.tx = Math.min(Number.MAX_SAFE_INTEGER, s.tx + this.int(5000));
        } else if (r < 0.68) {
          s.rx = this.int(100);
          s.tx = this.int(100); // counter reset
        } else if (r < 0.74) {
          s.at += 1 + this.int(10); // reconnect under the same id
        } else if (r < 0.8) {
          sc.sessions.splice(i--, 1); // disconnect
        } else if (r < 0.83) {
          s.user = this.pick(USERS);
        }
      }
      for (let i = this.int(3); i > 0; i--) sc.sessions.push(this.session(sc.format));
      if (this.r() < 0.2) sc.sessions.reverse();
    }
  }

  render(sc: Scenario['scopes'][number]): TrackerPoll {
    const r = this.r;
    const wrap = (s: string): string | Uint8Array => (r() < 0.5 ? Buffer.from(s) : s);
    const junk = (): string => this.pick(['', 'garbage', '\t\t\t', 'CLIENT_LIST', 'x\ty', '{]', '"', '\\']);
    if (sc.format === 'samples') {
      const list: SessionSample[] = sc.sessions.map((s) => ({ key: s.id, user: s.user, rx: s.rx, tx: s.tx, connectedAt: s.at, ...(s.remote ? { remoteAddress: s.remote } : {}) }));
      if (r() < 0.1 && list.length) list.push({ ...list[0], rx: Math.min(list[0].rx + 1, Number.MAX_SAFE_INTEGER) }); // duplicate key
      return { kind: 'samples', scope: sc.name, protocol: 'l2tp', serverId: 'x', samples: list };
    }
    const lines: string[] = [];
    const eol = r() < 0.2 ? '\r\n' : '\n';
    if (sc.format === 'openvpn-status3') {
      const cols = ['Common Name', 'Real Address', 'Bytes Received', 'Bytes Sent', 'Connected Since (time_t)', 'Username', 'Client ID', 'Virtual Address', 'Virtual IPv6 Address'];
      if (r() < 0.3) cols.sort(() => r() - 0.5);
      if (r() < 0.1) cols.splice(cols.indexOf('Client ID'), 1);
      if (r() < 0.1) {
        for (const name of ['Virtual Address', 'Virtual IPv6 Address']) cols.splice(cols.indexOf(name), 1);
      }
      lines.push('TITLE\tOpenVPN', `HEADER\tCLIENT_LIST\t${cols.join('\t')}`);
      for (const s of sc.sessions) {
        const v: Record<string, string> = {
          'Common Name': s.user === '' ? 'cn' : s.user,
          'Real Address': s.remote,
          'Bytes Received': String(s.rx),
          'Bytes Sent': String(s.tx),
          'Connected Since (time_t)': String(s.at),
          Username: r() < 0.2 ? 'UNDEF' : s.user,
          'Client ID': s.id,
          'Virtual Address': r() < 0.1 ? '' : '10.8.0.2',
          'Virtual IPv6 Address': r() < 0.3 ? 'fd00::2' : '',
        };
        lines.push(`CLIENT_LIST\t${cols.map((c) => v[c]).join('\t')}`);
        if (r() < 0.05) lines.push(junk());
      }
      lines.push('HEADER\tROUTING_TABLE\tVirtual Address', 'ROUTING_TABLE\t10.8.0.2\tx');
      if (r() < 0.9) lines.push('END');
    } else if (sc.format === 'wg-dump') {
      lines.push('wg0\tPRIV=\tPUB=\t51820\toff');
      for (const s of sc.sessions) {
        const [iface, pub] = s.id.split('\t');
        lines.push(`${iface}\t${pub}\t(none)\t${s.remote || '(none)'}\t10.9.0.2/32\t${r() < 0.1 ? 0 : 1700000000}\t${s.rx}\t${s.tx}\toff`);
        if (r() < 0.05) lines.push(junk());
      }
    } else {
      const objs = sc.sessions.map((s) => {
        const num = (v: number): string => (r() < 0.5 ? String(v) : `"${v}"`);
        const fields = [
          `"ID": ${r() < 0.7 ? s.id : `"${s.id}"`}`,
          `"Username": ${JSON.stringify(s.user)}`,
          `"RX": ${num(s.rx)}`,
          `"TX": ${num(s.tx)}`,
          `"raw_connected_at": ${num(s.at)}`,
          `"Remote IP": ${JSON.stringify(s.remote)}`,
          '"DNS": ["10.0.0.1", {"nested": [1, 2, {"x": "]}"}]}]',
          '"Restricted to routes": "False"',
          '"Flag": true, "Nothing": null',
        ];
        if (r() < 0.3) fields.sort(() => r() - 0.5);
        if (r() < 0.05) fields.splice(this.int(fields.length), 1);
        return `  {\n    ${fields.join(',\n    ')}\n  }`;
      });
      let body = `[\n${objs.join(',\n')}\n]\n`;
      if (r() < 0.05) {
        let cut = this.int(body.length);
        if (cut > 0 && body.charCodeAt(cut - 1) >= 0xd800 && body.charCodeAt(cut - 1) <= 0xdbff) cut--; // (keep it well-formed)
        body = body.slice(0, cut); // truncated output
      }
      return { kind: 'status-text', format: sc.format, text: wrap(body), scope: sc.name, protocol: 'cisco', serverId: 'x' };
    }
    const poll: TrackerPoll = { kind: 'status-text', format: sc.format, text: wrap(lines.join(eol) + eol), scope: sc.name, protocol: sc.format === 'wg-dump' ? 'wireguard' : 'openvpn', serverId: 'x' };
    if (sc.format === 'wg-dump') poll.peerNames = r() < 0.5 ? this.peerNames : Object.fromEntries(this.peerNames);
    return poll;
  }
}

function dumpTick(r: TickResult): unknown {
  return {
    tick: r.tick,
    rows: r.toRows(),
    polls: r.polls,
    vanished: r.vanished,
    userNames: [...r.userNames],
    activeUsers: Array.from(r.activeUsers),
    userRx: Array.from(r.userRxDelta),
    userTx: Array.from(r.userTxDelta),
    userLive: Array.from(r.userLive),
  };
}

describe('native accounting: native and fallback agree (randomized differential test)', function () {
  before(function () {
    requirePrerequisite(this, isNative, `the native addon is not loaded: ${nativeLoadError ?? 'unknown reason'}`);
  });

  it('gives identical outputs on 10,000 random sequences of polls, resets, reconnects, vanishings and ends', function () {
    this.timeout(300_000);
    const base = Number(process.env.POLYGATE_FUZZ_SEED ?? 20261126);
    const runs = Number(process.env.POLYGATE_FUZZ_RUNS ?? 10_000);
    for (let i = 0; i < runs; i++) {
      const seed = base + i;
      try {
        runSequence(seed);
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        throw new Error(`sequence with seed ${seed} differs (rerun: POLYGATE_FUZZ_SEED=${seed} POLYGATE_FUZZ_RUNS=1): ${msg.slice(0, 4000)}`);
      }
    }
  });
});

function runSequence(seed: number): void {
  const r = prng(seed);
  const world = new Scenario(r);
  const a = createTracker();
  const b = createTracker({ forceFallback: true });
  /** Calls f on both trackers (f must not draw random numbers: it runs twice). */
  const both = <T>(f: (t: AccountingTracker) => T, what: string): void => {
    const x = f(a);
    const y = f(b);
    if (process.env.POLYGATE_FUZZ_DEBUG) { try { expect(x, what).to.deep.equal(y); } catch (e) { console.log(what, JSON.stringify(x), JSON.stringify(y)); throw e; } }
    expect(x, what).to.deep.equal(y);
  };
  if (r() < 0.3) {
    const sc = world.pick(world.scopes);
    const key = sc.format === 'samples' ? `seeded${seed}` : `${sc.name}:seeded`;
    const s = { key, scope: sc.name, user: world.pick(USERS), rx: world.counter(), tx: world.counter(), connectedAt: 1, ended: r() < 0.3 };
    both((t) => t.seed(s), 'seed');
  }
  const steps = 2 + world.int(5);
  for (let step = 0; step < steps; step++) {
    const polled = world.scopes.filter(() => r() < 0.8);
    const polls = polled.map((sc) => world.render(sc));
    if (r() < 0.1 && polls.length) polls.push(polls[0]); // the same poll twice in a tick
    both((t) => dumpTick(t.tick(polls)), `tick ${step}`);
    // Disconnect events between ticks, some for sessions the tracker never saw.
    for (const sc of world.scopes) {
      if (!sc.sessions.length || r() > 0.3) continue;
      const s = world.pick(sc.sessions);
      const key = sc.format === 'samples' ? s.id : sc.format === 'wg-dump' ? `${sc.name}:${s.id.replace('\t', ':')}` : `${sc.name}:${s.id}`;
      const finalRx = r() < 0.8 ? s.rx + world.int(100) : world.int(50);
      const finalTx = s.tx + world.int(100);
      const opts = r() < 0.5 ? { user: s.user, connectedAt: s.at, ...(r() < 0.5 ? { scope: sc.name } : {}) } : undefined;
      both((t) => t.ended(key, Math.min(finalRx, Number.MAX_SAFE_INTEGER), Math.min(finalTx, Number.MAX_SAFE_INTEGER), opts), 'ended');
      if (r() < 0.5) sc.sessions.splice(sc.sessions.indexOf(s), 1);
    }
    if (r() < 0.05) {
      const key = world.pick(world.scopes).name + ':1';
      both((t) => t.forget(key), 'forget');
    }
    if (r() < 0.1) {
      const scope = world.pick(world.scopes).name;
      both((t) => t.ended(`nobody${seed}`, 5, 6, { user: 'ghost', scope }), 'ended unknown');
    }
    world.step();
  }
  both((t) => t.snapshot(), 'snapshot');
  both((t) => t.size, 'size');
}
