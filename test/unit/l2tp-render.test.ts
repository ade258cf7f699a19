import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import {
  chapWord,
  parseIkeSas,
  parsePppEnded,
  parsePppSession,
  renderChapSecrets,
  renderClientProfile,
  renderPppHook,
  renderStrongswanConf,
  renderSwanctlConf,
  swanSecret,
} from '../../plugins/l2tp-ipsec/render';
import { decodeMessage, encodeMessage, type ViciMessage } from '../../plugins/l2tp-ipsec/vici';

/** The pure parts of the L2TP/IPsec plugin: what it writes for charon, pppd and clients, and how it reads charon's vici answers. */
const swanctlBase = {
  users: [{ username: 'alice', password: 'p"w} #\\x\nsecrets { evil' }],
  serverIdentity: 'vpn.example.com',
  certFile: 'server.crt',
  ikev2Pool: '10.10.128.0/17',
  trafficSelectors: ['0.0.0.0/0'],
  dns: [],
  ikeProposals: ['aes256-sha256-modp2048', 'default'],
  espProposals: ['aes256-sha256', 'default'],
  l2tp: true,
};

describe('l2tp-ipsec render: swanctl.conf', () => {
  it('writes every secret as base64, so a password with quotes, braces, # or a newline cannot add syntax', () => {
    const text = renderSwanctlConf({ ...swanctlBase, psk: 'psk "} x' });
    expect(text).to.include(`secret = ${swanSecret('psk "} x', 'psk')}`);
    expect(text).to.include(`secret = 0s${Buffer.from(swanctlBase.users[0]!.password).toString('base64')}`);
    expect(text).to.not.include('evil');
    expect(text.match(/^secrets \{/gm)).to.have.length(1);
    expect(text).to.include('mode = transport').and.include('local_ts = dynamic[udp/1701]');
  });

  it('leaves the IKEv1 L2TP connection out while there is no PSK, and refuses identities or selectors that are not plain values', () => {
    expect(renderSwanctlConf(swanctlBase)).to.not.include('l2tp-psk');
    expect(() => renderSwanctlConf({ ...swanctlBase, serverIdentity: 'a b' })).to.throw(/serverIdentity/);
    expect(() => renderSwanctlConf({ ...swanctlBase, trafficSelectors: ['0.0.0.0/0 }'] })).to.throw(/trafficSelectors/);
    expect(() => renderSwanctlConf({ ...swanctlBase, users: [{ username: 'x y', password: 'p' }] })).to.throw(/username/);
  });

  it('lists kernel-libipsec before kernel-netlink when userspace ESP is on (otherwise netlink takes the IPsec part)', () => {
    const conf = renderStrongswanConf({ viciSocket: '/tmp/x.vici', ikePort: 500, natPort: 4500, userspaceEsp: true, extraPlugins: [], logPath: '/tmp/c.log', logLevel: 1 });
    const load = /load = (.*)/.exec(conf)![1]!.split(' ');
    expect(load.indexOf('kernel-libipsec')).to.be.within(0, load.indexOf('kernel-netlink') - 1);
    expect(load).to.include('eap-mschapv2').and.include('gcrypt');
  });
});

describe('l2tp-ipsec render: chap-secrets', () => {
  it('quotes and escapes like pppd reads it, and refuses control characters', () => {
    expect(chapWord('a"b\\c d', 'w')).to.equal('"a\\"b\\\\c d"');
    expect(() => chapWord('a\nb', 'w')).to.throw(/control character/);
    expect(renderChapSecrets([{ username: 'bob', password: 'x' }], 'polygate-l2tp')).to.match(/^"bob"\tpolygate-l2tp\t"x"\t\*$/m);
  });
});

describe('l2tp-ipsec pppd hooks (run by /bin/sh with pppd\'s environment)', () => {
  it('ip-up records the session, ip-down its final counters; a malformed environment writes nothing', async () => {
    const dir = `/tmp/pg-l2hook-${randomBytes(3).toString('hex')}`;
    await fs.mkdir(`${dir}/s`, { recursive: true });
    await fs.mkdir(`${dir}/e`, { recursive: true });
    try {
      const dirs = { sessionsDir: `${dir}/s`, endedDir: `${dir}/e` };
      await fs.writeFile(`${dir}/up.sh`, renderPppHook('up', dirs), { mode: 0o700 });
      await fs.writeFile(`${dir}/down.sh`, renderPppHook('down', dirs), { mode: 0o700 });
      const env = { PATH: process.env.PATH!, PPPD_PID: '4242', IFNAME: 'ppp3', PEERNAME: 'alice', IPREMOTE: '10.10.0.7' };
      execFileSync(`${dir}/up.sh`, ['ppp3', '/dev/pts/1', '0', '10.10.0.1', '10.10.0.7', ''], { env });
      execFileSync(`${dir}/up.sh`, [], { env: { ...env, PPPD_PID: '1;touch /tmp/x' } });
      execFileSync(`${dir}/up.sh`, [], { env: { ...env, PPPD_PID: '77', PEERNAME: 'a b' } });
      expect(await fs.readdir(`${dir}/s`)).to.deep.equal(['4242.up']);
      const s = parsePppSession(await fs.readFile(`${dir}/s/4242.up`, 'utf8'))!;
      expect(s).to.include({ pid: 4242, ifname: 'ppp3', username: 'alice', remoteAddress: '10.10.0.7' });
      execFileSync(`${dir}/down.sh`, [], { env: { ...env, BYTES_SENT: 'x' } });
      expect(await fs.readdir(`${dir}/e`)).to.deep.equal([]);
      execFileSync(`${dir}/down.sh`, [], { env: { ...env, BYTES_SENT: '2000', BYTES_RCVD: '1000' } });
      expect(await fs.readdir(`${dir}/s`)).to.deep.equal([]);
      const [rec] = await fs.readdir(`${dir}/e`);
      expect(rec).to.equal(`ppp-4242-${s.startedAt}.rec`);
      expect(parsePppEnded(await fs.readFile(`${dir}/e/${rec}`, 'utf8'))).to.include({ pid: 4242, username: 'alice', rxBytes: 1000, txBytes: 2000 });
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('l2tp-ipsec vici', () => {
  it('encodes and decodes sections, lists and values (round trip), and refuses truncated or unbalanced messages', () => {
    const msg: ViciMessage = { a: '1', list: ['x', 'y z'], sec: { inner: { k: 'v' }, e: '' } };
    const bin = encodeMessage(msg);
    expect(decodeMessage(bin)).to.deep.equal(msg);
    expect(() => decodeMessage(bin.subarray(0, bin.length - 1))).to.throw();
    expect(() => decodeMessage(Buffer.from([1, 1, 0x61]))).to.throw(/not closed/);
    expect(() => decodeMessage(Buffer.from([9]))).to.throw(/unknown/);
  });

  it('reads an IKE_SA with its CHILD_SA counters from a real child-updown event', () => {
    const event = JSON.parse(readFileSync(path.join(__dirname, '../fixtures/l2tp/child-updown-down.json'), 'utf8')) as ViciMessage;
    delete event['_source'];
    const [sa] = parseIkeSas(decodeMessage(encodeMessage(event)));
    expect(sa).to.deep.include({ uniqueId: '1', connection: 'rw', state: 'DELETING', username: 'alice', remoteAddress: '10.99.7.2' });
    expect(sa!.children).to.deep.equal([{ id: '1', rxBytes: 672, txBytes: 672 }]);
  });

  it('names the session after the EAP identity, not the IKE identity the client chose, and skips names no user can have', () => {
    const sas = parseIkeSas({
      a: { uniqueid: '5', state: 'ESTABLISHED', 'remote-id': 'alice', 'remote-eap-id': 'bob', 'remote-host': '1.2.3.4' },
      b: { uniqueid: '6', state: 'ESTABLISHED', 'remote-id': 'x remote-eap-id=alice' },
    });
    expect(sas.map((s) => [s.uniqueId, s.username])).to.deep.equal([['5', 'bob']]);
  });
});

describe('l2tp-ipsec client profile (.sswan)', () => {
  it('carries the gateway, its identity, the username and the CA as DER; never the password', () => {
    const ca = execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', '/dev/null', '-subj', '/CN=test-ca', '-days', '1'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    const p = JSON.parse(renderClientProfile({ name: 'alice @ vpn', host: '198.51.100.1', port: 500, serverIdentity: 'vpn.example.com', username: 'alice', caCertificatePem: ca }));
    expect(p).to.deep.include({ type: 'ikev2-eap', local: { eap_id: 'alice' } });
    expect(p.remote).to.deep.include({ addr: '198.51.100.1', id: 'vpn.example.com', port: 500 });
    expect(Buffer.from(p.remote.cert, 'base64').toString('base64')).to.equal(ca.replace(/-----[A-Z ]+-----|\s/g, ''));
    expect(() => renderClientProfile({ name: 'x', host: 'a b', port: 500, serverIdentity: 'v', username: 'alice', caCertificatePem: ca })).to.throw(/host/);
  });
});
