import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseStatusText } from '../../core';

/*
 * The kit's status-text reader is the accounting parser (native or fallback), not a second
 * one. Proves on captured OpenVPN 2.6 output: established rows come back with their Client ID,
 * counters, start and real address (as OpenVPN prints it, with the port); a connection still authenticating is not a
 * session; a truncated text is reported incomplete.
 */

const fixture = (name: string) => readFileSync(path.join(__dirname, '../fixtures/openvpn', name), 'utf8');

describe('kit: parseStatusText', () => {
  it('reads established OpenVPN sessions and leaves out pending ones', () => {
    const r = parseStatusText({ format: 'openvpn-status3', protocol: 'openvpn', text: fixture('status3-live-and-pending.txt') });
    expect(r.complete).to.equal(true);
    expect(r.sessions).to.deep.equal([{ id: '0', username: 'user1', remoteAddress: '10.99.7.2:52289', rxBytes: 2604, txBytes: 2416, connectedAt: 1795718188 }]);
  });

  it('says when the text is incomplete', () => {
    const text = fixture('status3-one-client.txt').replace(/END\r?\n?$/, '');
    expect(parseStatusText({ format: 'openvpn-status3', protocol: 'openvpn', text }).complete).to.equal(false);
  });
});
