import { expect } from 'chai';
import { parseStatusText } from '../../core';
import { DomainError } from '../../core/errors';
import { renderServerConfig } from '../../plugins/openvpn/render';
import {
  ENDED_RECORD_NAME_RE,
  openVpnSessionId,
  parseClientList,
  parseEndedRecord,
  parseOpenVpnSessionKey,
  withSessionIds,
} from '../../plugins/openvpn/status';

/*
 * The session identity OpenVPN's polls and its disconnect hook's records share (pure). Proves:
 * the status text's Client ID becomes `<epoch>:<virtual address>:<since>` for established rows
 * only, so the accounting parser keys a session exactly as the hook's record does; a key parses
 * back; a record the hook writes becomes the ended session with that key, and anything else is
 * refused; the server config runs the hook with script-security 2 and nothing else.
 * The status text was captured from OpenVPN 2.6.14 (one established client, one still
 * authenticating).
 */

const EPOCH = '17700.192870';
const STATUS = [
  'TITLE\tOpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)] [LZO] [LZ4] [EPOLL] [PKCS11] [MH/PKTINFO] [AEAD] [DCO]',
  'TIME\t2026-12-02 14:40:34\t1796222434',
  'HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher',
  'CLIENT_LIST\talice\t10.99.93.2:58203\t10.8.77.2\t\t2461\t2317\t2026-12-02 14:40:33\t1796222433\talice\t0\t0\tAES-256-GCM',
  'CLIENT_LIST\tcarol\t10.99.95.2:36054\t\t\t2310\t2025\t2026-12-02 14:49:45\t1796222985\tcarol\t1\t1\tBF-CBC',
  'HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name\tReal Address\tLast Ref\tLast Ref (time_t)',
  'ROUTING_TABLE\t10.8.77.2\talice\t10.99.93.2:58203\t2026-12-02 14:40:34\t1796222434',
  'GLOBAL_STATS\tMax bcast/mcast queue length\t0',
  'GLOBAL_STATS\tdco_enabled\t0',
  'END',
  '',
].join('\n');

const scopeOf = (port: number, proto: string) => `main:${port}${proto}`;

const RECORD = 'v=1\ninstance=1194udp\nepoch=17700.192870\nvaddr=10.8.77.2\nsince=1796222433\nrx=9001\ntx=8002\nremote=10.99.93.2:58203\ncn=alice\n';

describe('OpenVPN session identity: status text and hook records (pure)', () => {
  it('parses CLIENT_LIST rows with their client id, virtual address and start', () => {
    expect(parseClientList(STATUS)).to.deep.equal([
      { clientId: 0, commonName: 'alice', username: 'alice', realAddress: '10.99.93.2:58203', virtualAddress: '10.8.77.2', connectedSince: 1796222433, bytesReceived: 2461, bytesSent: 2317 },
      { clientId: 1, commonName: 'carol', username: 'carol', realAddress: '10.99.95.2:36054', virtualAddress: '', connectedSince: 1796222985, bytesReceived: 2310, bytesSent: 2025 },
    ]);
  });

  it('replaces the Client ID of established rows only; the accounting parser then keys the session <scope>:<epoch>:<vaddr>:<since>', () => {
    const text = withSessionIds(STATUS, EPOCH);
    expect(text.split('\n')[3]).to.equal(`CLIENT_LIST\talice\t10.99.93.2:58203\t10.8.77.2\t\t2461\t2317\t2026-12-02 14:40:33\t1796222433\talice\t${EPOCH}:10.8.77.2:1796222433\t0\tAES-256-GCM`);
    expect(text.split('\n')[4]).to.equal(STATUS.split('\n')[4]);
    expect(text.split('\n').filter((_, i) => i !== 3)).to.deep.equal(STATUS.split('\n').filter((_, i) => i !== 3));
    const { sessions, complete } = parseStatusText({ format: 'openvpn-status3', protocol: 'openvpn', text });
    expect(complete).to.equal(true);
    expect(sessions.map((s) => `main:1194udp:${s.id}`)).to.deep.equal([`main:1194udp:${openVpnSessionId(EPOCH, '10.8.77.2', 1796222433)}`]);
    // \r\n line ends survive.
    expect(withSessionIds(STATUS.replace(/\n/g, '\r\n'), EPOCH)).to.equal(text.replace(/\n/g, '\r\n'));
  });

  it('a session key parses back into scope, epoch, virtual address and start; other strings do not', () => {
    expect(parseOpenVpnSessionKey(`main:1194udp:${EPOCH}:10.8.77.2:1796222433`)).to.deep.equal({ scope: 'main:1194udp', epoch: EPOCH, virtualAddress: '10.8.77.2', connectedSince: 1796222433 });
    expect(parseOpenVpnSessionKey('node_7:443tcp:1.2:10.8.1.9:5')).to.deep.equal({ scope: 'node_7:443tcp', epoch: '1.2', virtualAddress: '10.8.1.9', connectedSince: 5 });
    for (const bad of ['main:1194udp:0', `main:1194udp:${EPOCH}:10.8.77:1`, `:${EPOCH}:10.8.77.2:1`, `main:1194udp:${EPOCH}:10.8.77.2:`]) expect(parseOpenVpnSessionKey(bad), bad).to.equal(null);
  });

  it('a hook record becomes the ended session with the key the live session had in polls', () => {
    const ended = parseEndedRecord(RECORD, 'main', scopeOf);
    expect(ended).to.deep.equal({
      session: {
        sessionKey: `main:1194udp:${EPOCH}:10.8.77.2:1796222433`,
        username: 'alice',
        protocol: 'openvpn',
        serverId: 'main',
        remoteAddress: '10.99.93.2:58203',
        connectedAt: 1796222433,
        rxBytes: 9001,
        txBytes: 8002,
      },
      reason: 'disconnected',
    });
    const polled = parseStatusText({ format: 'openvpn-status3', protocol: 'openvpn', text: withSessionIds(STATUS, EPOCH) }).sessions[0]!;
    expect(ended!.session.sessionKey).to.equal(`main:1194udp:${polled.id}`);
    expect(ENDED_RECORD_NAME_RE.test(`${EPOCH}-10.8.77.2-1796222433.rec`)).to.equal(true);
    for (const name of [`.${EPOCH}-10.8.77.2-1796222433.rec.123.tmp`, `${EPOCH}-10.8.77.2-1796222433.rec.tmp`, 'ended-reported.json', '../x.rec']) expect(ENDED_RECORD_NAME_RE.test(name), name).to.equal(false);
  });

  it('refuses records the hook does not write; a later line never overrides one the hook wrote', () => {
    const variants = [
      RECORD.replace('v=1', 'v=2'),
      RECORD.replace('instance=1194udp', 'instance=1194sctp'),
      RECORD.replace('rx=9001', 'rx=9e3'),
      RECORD.replace('since=1796222433', 'since='),
      RECORD.replace('vaddr=10.8.77.2', 'vaddr=fe80::1'),
      RECORD.replace('epoch=17700.192870', 'epoch=17700'),
      RECORD.replace('cn=alice', 'cn=a'),
      RECORD.replace('cn=alice', 'cn=alice bob'),
      '',
    ];
    for (const text of variants) expect(parseEndedRecord(text, 'main', scopeOf), text).to.equal(null);
    expect(parseEndedRecord(`${RECORD}rx=1\ncn=mallory\n`, 'main', scopeOf)?.session).to.deep.include({ rxBytes: 9001, username: 'alice' });
    expect(parseEndedRecord(RECORD.replace('remote=10.99.93.2:58203', 'remote=$(id)'), 'main', scopeOf)?.session.remoteAddress).to.equal('');
  });

  it('the server config runs the hook as client-disconnect with script-security 2; without it, no script runs', () => {
    const base = {
      port: 1194,
      proto: 'udp' as const,
      device: 'pgtun0',
      subnet: '10.8.0.0/24',
      managementSocket: '/var/lib/polygate/openvpn/run/1194udp.sock',
      caPath: '/p/ca.crt',
      certPath: '/p/server.crt',
      keyPath: '/p/server.key',
      crlPath: '/p/crl.pem',
      tlsCryptPath: '/p/tls-crypt.key',
    };
    const lines = renderServerConfig({ ...base, disconnectHook: { script: '/var/lib/polygate/openvpn/hooks/client-disconnect.sh', recordDir: '/var/lib/polygate/openvpn/ended', instance: '1194udp' } }).split('\n');
    expect(lines).to.include.members(['script-security 2', 'client-disconnect "/var/lib/polygate/openvpn/hooks/client-disconnect.sh /var/lib/polygate/openvpn/ended 1194udp"']);
    expect(lines).to.not.include('script-security 1');
    expect(lines.filter((l) => /^(up|down|client-connect|learn-address|auth-user-pass-verify|tls-verify)\b/.test(l))).to.deep.equal([]);
    expect(renderServerConfig(base).split('\n')).to.include('script-security 1').and.not.include.members(['script-security 2']);
    for (const hook of [
      { script: '/x/hook.sh /tmp/evil', recordDir: '/x/ended', instance: '1194udp' },
      { script: '/x/hook.sh', recordDir: '/x/ended"\nup "/bin/sh', instance: '1194udp' },
      { script: '/x/hook.sh', recordDir: '/x/ended', instance: '1194udp /etc' },
    ]) {
      expect(() => renderServerConfig({ ...base, disconnectHook: hook }), JSON.stringify(hook)).to.throw(DomainError);
    }
  });
});
