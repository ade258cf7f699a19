import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseStatusText } from '../../core';
import { parseDump, PeerLedger } from '../../plugins/wireguard/dump';

/*
 * dump.ts on `wg show <if> dump` captured from wireguard-go on this machine (test/fixtures/
 * wireguard: a server with one connected peer and one that never handshook, and the client's
 * side; throwaway keys). The ledger's output is read back through the accounting parser itself.
 */
const fixture = (name: string) => readFileSync(path.join(__dirname, '../fixtures/wireguard', name), 'utf8');
const SERVER = fixture('server-dump.txt');
const CLIENT = fixture('client-dump.txt');
const CAPTURED_AT = Number(fixture('captured-at.txt').trim());
const ALICE = 'rHJ5qu8qxdDah1NJwPJ/CjLpOG/f6vIvN5D4RfLqGh8=';
const NEVER = 'CjRvVpnEQkoj7eZKdQR0X3kM9HVqy42P3X2Qwf74EW0=';
const HANDSHAKE = 1796158425;
// Periods are numbered per ledger in the order peers are first seen: alice 1, the never-handshaken peer 2, alice's next 3.

/** The dump with alice's counters and handshake replaced (a later read of the same interface). */
const withAlice = (rx: number, tx: number, handshake = HANDSHAKE) =>
  SERVER.replace(/^(rHJ5[^\t]*\t[^\t]*\t[^\t]*\t[^\t]*\t)\d+\t\d+\t\d+/m, `$1${handshake}\t${rx}\t${tx}`);

const sessionsOf = (text: string) => parseStatusText({ format: 'wg-dump', protocol: 'wireguard', text, peerNames: new Map([[ALICE, 'alice']]) });

describe('WireGuard dump parsing (captured wireguard-go output)', () => {
  it('reads the interface line and both peers, with `(none)` endpoints as empty', () => {
    const d = parseDump(SERVER);
    expect(d.malformed).to.equal(0);
    expect(d.device).to.deep.equal({ publicKey: 'RTi/YSKsuUFeUh6GDYwGFJqGZcwoc+wdwzDGUjfLB0U=', listenPort: 51820 });
    expect(d.peers).to.have.length(2);
    expect(d.peers[0]).to.include({ publicKey: ALICE, endpoint: '10.99.77.2:35714', allowedIps: '10.66.0.2/32', latestHandshake: HANDSHAKE, rx: 22004, tx: 21916 });
    expect(d.peers[1]).to.include({ publicKey: NEVER, endpoint: '', latestHandshake: 0, rx: 0, tx: 0 });
  });

  it('the client side counts the same bytes the other way round', () => {
    const c = parseDump(CLIENT).peers[0]!;
    const s = parseDump(SERVER).peers[0]!;
    expect([c.rx, c.tx]).to.deep.equal([s.tx, s.rx]);
  });

  it('counts a line with a wrong field count or bad numbers as malformed', () => {
    expect(parseDump(`${SERVER}garbage\tline\n`).malformed).to.equal(1);
    expect(parseDump(SERVER.replace('\t22004\t', '\t22x04\t')).malformed).to.equal(1);
  });
});

describe('WireGuard peer ledger: peers → sessions for the accounting parser', () => {
  it('hands over only peers with a handshake younger than the window, readable by the native parser', () => {
    const ledger = new PeerLedger('wg:pgwg0:1');
    const seen = ledger.observe(SERVER, CAPTURED_AT);
    expect(seen.online).to.equal(1);
    const parsed = sessionsOf(seen.text);
    expect(parsed.complete).to.equal(true);
    expect(parsed.sessions).to.have.length(1);
    expect(parsed.sessions[0]).to.include({ id: `1:${ALICE}`, username: 'alice', rxBytes: 22004, txBytes: 21916, remoteAddress: '10.99.77.2:35714' });
    expect(seen.text).to.not.include(NEVER);
    expect(new PeerLedger('x').observe(`${SERVER}garbage\tline\n`, CAPTURED_AT).malformed, 'a line of neither shape').to.equal(1);
    expect(new PeerLedger('x').observe(SERVER.replace('\t22004\t', '\t22x04\t'), CAPTURED_AT).malformed, 'bad counter').to.equal(1);
  });

  it('a peer idle past 180 s ends with its last counters; when it returns it is a new session counted from there', () => {
    const ledger = new PeerLedger('wg:pgwg0:1');
    ledger.observe(SERVER, CAPTURED_AT);
    const idle = ledger.observe(withAlice(22100, 22000), HANDSHAKE + 180);
    expect(idle.online).to.equal(0);
    expect(idle.ended).to.deep.equal([{ sessionKey: `wg:pgwg0:1:1:${ALICE}`, publicKey: ALICE, remoteAddress: '10.99.77.2:35714', rx: 22100, tx: 22000, reason: 'idle' }]);
    // Still idle: nothing more is reported.
    expect(ledger.observe(withAlice(22100, 22000), HANDSHAKE + 500).ended).to.deep.equal([]);
    const back = ledger.observe(withAlice(23100, 22500, HANDSHAKE + 600), HANDSHAKE + 601);
    const s = sessionsOf(back.text).sessions;
    expect(s.map((x) => [x.id, x.rxBytes, x.txBytes])).to.deep.equal([[`3:${ALICE}`, 1000, 500]]);
  });

  it('a handshake 179 s old is still online', () => {
    const ledger = new PeerLedger('wg:pgwg0:1');
    expect(ledger.observe(SERVER, HANDSHAKE + 179).online).to.equal(1);
  });

  it('counters that go down (peer re-created) start a new session from zero; the old one ends once', () => {
    const ledger = new PeerLedger('wg:pgwg0:1');
    ledger.observe(SERVER, CAPTURED_AT);
    const reset = ledger.observe(withAlice(300, 200), CAPTURED_AT);
    expect(reset.ended.map((e) => [e.sessionKey, e.rx, e.tx, e.reason])).to.deep.equal([[`wg:pgwg0:1:1:${ALICE}`, 22004, 21916, 'counters-reset']]);
    expect(sessionsOf(reset.text).sessions.map((x) => [x.id, x.rxBytes])).to.deep.equal([[`3:${ALICE}`, 300]]);
  });

  it('takeEnded gives a peer’s final counters before removal, once; a re-added peer starts over', () => {
    const ledger = new PeerLedger('wg:pgwg0:1');
    ledger.observe(SERVER, CAPTURED_AT);
    ledger.observe(withAlice(30000, 29000), CAPTURED_AT);
    expect(ledger.takeEnded(ALICE, 'removed')).to.include({ sessionKey: `wg:pgwg0:1:1:${ALICE}`, rx: 30000, tx: 29000 });
    expect(ledger.takeEnded(ALICE, 'removed')).to.equal(null);
    const readded = ledger.observe(withAlice(148, 92), CAPTURED_AT);
    expect(sessionsOf(readded.text).sessions.map((x) => [x.id, x.rxBytes])).to.deep.equal([[`3:${ALICE}`, 148]]);
  });

  it('a peer that never handshook holds nothing to report', () => {
    const ledger = new PeerLedger('wg:pgwg0:1');
    ledger.observe(SERVER, CAPTURED_AT);
    expect(ledger.takeEnded(NEVER, 'removed')).to.equal(null);
  });

  it('a peer missing from the dump ends with its last counters', () => {
    const ledger = new PeerLedger('wg:pgwg0:1');
    ledger.observe(SERVER, CAPTURED_AT);
    const gone = ledger.observe(SERVER.split('\n').filter((l) => !l.startsWith('rHJ5')).join('\n'), CAPTURED_AT);
    expect(gone.ended.map((e) => [e.reason, e.rx])).to.deep.equal([['peer-gone', 22004]]);
  });
  it('a ledger restored from its snapshot (a panel that adopted the interface) hands over the same keys and counters', () => {
    const first = new PeerLedger('wg:pgwg0:41.900');
    first.observe(SERVER, CAPTURED_AT);
    // Alice's first period ends idle and a second one opens above zero: the dump alone cannot say where it began.
    first.observe(withAlice(22100, 22000), HANDSHAKE + 180);
    const open = first.observe(withAlice(23100, 22500, HANDSHAKE + 600), HANDSHAKE + 601);
    expect(first.dirty, 'a period opened: the snapshot must be written').to.equal(true);
    const snapshot = JSON.parse(JSON.stringify(first.snapshot())) as unknown;
    expect(first.dirty).to.equal(false);
    expect(first.observe(withAlice(23200, 22600, HANDSHAKE + 600), HANDSHAKE + 602).ended, 'counters alone change nothing to keep').to.deep.equal([]);
    expect(first.dirty).to.equal(false);

    const restored = PeerLedger.restore(snapshot, 'wg:pgwg0:41.900')!;
    expect(restored).to.not.equal(null);
    const again = restored.observe(withAlice(23200, 22600, HANDSHAKE + 600), HANDSHAKE + 602);
    expect(sessionsOf(again.text).sessions.map((x) => [x.id, x.rxBytes, x.txBytes])).to.deep.equal([[`3:${ALICE}`, 1100, 600]]);
    expect(sessionsOf(open.text).sessions[0]!.id).to.equal(`3:${ALICE}`);
    // A period that began later never reuses a number a reported key had.
    expect(restored.takeEnded(ALICE, 'removed')).to.include({ sessionKey: `wg:pgwg0:41.900:3:${ALICE}`, rx: 1100, tx: 600 });
    const readded = restored.observe(withAlice(10, 10), CAPTURED_AT);
    expect(sessionsOf(readded.text).sessions.map((x) => x.id)).to.deep.equal([`5:${ALICE}`]);
  });

  it('a snapshot of another daemon run, or a damaged one, restores nothing (a new run counts from zero)', () => {
    const ledger = new PeerLedger('wg:pgwg0:41.900');
    ledger.observe(SERVER, CAPTURED_AT);
    const snapshot = ledger.snapshot();
    expect(PeerLedger.restore(snapshot, 'wg:pgwg0:42.1000')).to.equal(null);
    expect(PeerLedger.restore(null, 'wg:pgwg0:41.900')).to.equal(null);
    expect(PeerLedger.restore({ ...snapshot, nextPeriod: -1 }, 'wg:pgwg0:41.900')).to.equal(null);
    expect(PeerLedger.restore({ ...snapshot, peers: { [ALICE]: [1, true, true, 'x', 0, 0, 0, ''] } }, 'wg:pgwg0:41.900')).to.equal(null);
    expect(PeerLedger.restore({ ...snapshot, peers: { [ALICE]: [9, true, true, 0, 0, 0, 0, ''] } }, 'wg:pgwg0:41.900'), 'a period beyond nextPeriod').to.equal(null);
    expect(Object.keys(snapshot.peers), 'peers whose period nobody saw are not kept').to.deep.equal([ALICE]);
  });
  it('a partial dump (recent peers only) leaves absent peers idle, not gone: they keep their counters and come back in the same numbering', () => {
    const ledger = new PeerLedger('wg:pgwg0:1');
    ledger.observe(SERVER, CAPTURED_AT);
    const onlyInterface = `${SERVER.split('\n')[0]}\n`;
    // Alice is absent from a partial read only once her handshake left the recent window: her
    // open period ends with the counters read last, nothing is forgotten.
    const absent = ledger.observe(onlyInterface, HANDSHAKE + 900, { partial: true });
    expect(absent.ended).to.deep.equal([{ sessionKey: `wg:pgwg0:1:1:${ALICE}`, publicKey: ALICE, remoteAddress: '10.99.77.2:35714', rx: 22004, tx: 21916, reason: 'idle' }]);
    expect(ledger.observe(onlyInterface, HANDSHAKE + 950, { partial: true }).ended).to.deep.equal([]);
    // She handshakes again: a new period counted from where the last one stopped.
    const back = ledger.observe(withAlice(23004, 22916, HANDSHAKE + 1000), HANDSHAKE + 1001, { partial: true });
    expect(sessionsOf(back.text).sessions[0]).to.include({ id: `3:${ALICE}`, rxBytes: 1000, txBytes: 1000 });
    // A full dump without her is a removal: then she is forgotten.
    expect(ledger.observe(onlyInterface, HANDSHAKE + 1002).ended.map((e) => e.reason)).to.deep.equal(['peer-gone']);
  });
});
