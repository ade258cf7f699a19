import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { addressWithoutPort, openVpnScope, parseStatus3, sessionsFromStatus3 } from '../../plugins/openvpn/status';

/*
 * `status 3` parsing on real captured output (OpenVPN 2.6.14). Proves: CLIENT_LIST rows are
 * read by header name with their counters and connect time; a connection still being
 * authenticated (no virtual address) is not a session; session keys are `<scope>:<cid>`;
 * a reordered header still parses; an empty server yields nothing.
 */

const fixture = (name: string) => readFileSync(path.join(__dirname, '../fixtures/openvpn', name), 'utf8');

describe('OpenVPN status 3 parser (pure)', () => {
  it('reads every CLIENT_LIST row of a real status, including a pending one', () => {
    const s = parseStatus3(fixture('status3-live-and-pending.txt'));
    expect(s.time).to.equal(1795718195);
    expect(s.clients).to.deep.equal([
      {
        commonName: 'user1',
        realAddress: '10.99.7.2:52289',
        virtualAddress: '10.8.77.2',
        virtualIpv6Address: '',
        bytesReceived: 2604,
        bytesSent: 2416,
        connectedSince: 1795718188,
        username: 'user1',
        clientId: '0',
        peerId: '0',
        cipher: 'AES-256-GCM',
      },
      {
        commonName: 'user1',
        realAddress: '10.99.7.2:44988',
        virtualAddress: '',
        virtualIpv6Address: '',
        bytesReceived: 2265,
        bytesSent: 2046,
        connectedSince: 1795718194,
        username: 'user1',
        clientId: '1',
        peerId: '1',
        cipher: 'BF-CBC',
      },
    ]);
  });

  it('turns established rows into LiveSessions keyed by scope and client id; pending rows are left out', () => {
    const scope = openVpnScope('main', 1194, 'udp');
    expect(scope).to.equal('main:1194udp');
    expect(sessionsFromStatus3(fixture('status3-live-and-pending.txt'), scope, 'main')).to.deep.equal([
      {
        sessionKey: 'main:1194udp:0',
        username: 'user1',
        protocol: 'openvpn',
        serverId: 'main',
        remoteAddress: '10.99.7.2',
        connectedAt: 1795718188,
        rxBytes: 2604,
        txBytes: 2416,
      },
    ]);
    const later = sessionsFromStatus3(fixture('status3-after-reconnect.txt'), scope, 'main');
    expect(later.map((s) => [s.sessionKey, s.rxBytes, s.txBytes, s.connectedAt])).to.deep.equal([['main:1194udp:3', 7539, 6997, 1795718218]]);
    expect(sessionsFromStatus3(fixture('status3-empty.txt'), scope, 'main')).to.deep.equal([]);
  });

  it('finds columns by header name, so a reordered or extended header still parses', () => {
    const text = [
      'HEADER\tCLIENT_LIST\tClient ID\tCommon Name\tNew Column\tBytes Sent\tBytes Received\tConnected Since (time_t)\tVirtual Address\tReal Address',
      'CLIENT_LIST\t7\talice\tx\t200\t100\t1700000000\t10.8.0.2\t[2001:db8::5]:1194',
      'END',
    ].join('\r\n');
    expect(sessionsFromStatus3(text, 'node_1:443tcp', 'node_1')).to.deep.equal([
      {
        sessionKey: 'node_1:443tcp:7',
        username: 'alice',
        protocol: 'openvpn',
        serverId: 'node_1',
        remoteAddress: '2001:db8::5',
        connectedAt: 1700000000,
        rxBytes: 100,
        txBytes: 200,
      },
    ]);
  });

  it('strips the port from real addresses it recognizes and keeps the rest as printed', () => {
    expect(addressWithoutPort('10.99.7.2:52289')).to.equal('10.99.7.2');
    expect(addressWithoutPort('[2001:db8::1]:443')).to.equal('2001:db8::1');
    expect(addressWithoutPort('2001:db8::1')).to.equal('2001:db8::1');
    expect(addressWithoutPort('')).to.equal('');
  });
});
