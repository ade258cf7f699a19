import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import { ManualClock } from '../../core/clock';
import { parseStatusText, ProcessSupervisor, type DesiredState, type SupervisedExit } from '../../core';
import type { HostProcess } from '../../core/hosts/host';
import { LocalHost } from '../../core/hosts/local-host';
import { logger } from '../../core/logger';
import { createPanelPki, type OpensslPanelPki } from '../../core/pki';
import type { PluginContext, SessionEnded } from '../../core/plugin/types';
import openvpnPlugin, { OPENVPN_CAPABILITIES, openVpnConfigSchema, type OpenVpnConfig, type OpenVpnPlugin } from '../../plugins/openvpn';
import { ManagementClient, type ClientDisconnected, type ConnectRequest } from '../../plugins/openvpn/management';
import { renderClientProfile, renderServerConfig } from '../../plugins/openvpn/render';
import { requirePrerequisite } from '../helpers/prereq';

/*
 * The OpenVPN building blocks with the real thing: OpenVPN 2.6 server and clients in two
 * network namespaces this suite creates (veth 10.99.21.0/24), certificates from the panel's
 * PKI (core/pki, real openssl). Proves: the panel PKI's certificates work in OpenVPN and its
 * CRL revokes; the rendered server config runs under the kit's supervisor; the management
 * client decides logins (cert CN must equal the auth username, password from a map), sees
 * ESTABLISHED/DISCONNECT with final counters, reads `status 3` (read by the accounting
 * parser), cuts a session with client-kill; a SIGKILLed OpenVPN is restarted and management
 * reconnects; a revoked user's old certificate is refused by the running server while the new
 * one connects. Then the plugin itself (index.ts, plugin API v2) runs two instances (UDP +
 * TCP) through apply/authorize/pollSessions/disconnect/stop, with profiles rendered from the
 * panel PKI, and refuses a revoked certificate after the CRL arrives in `apply`.
 * Traffic only flows inside the namespaces. Skips (printing why) without root or binaries.
 */

const SUFFIX = randomBytes(3).toString('hex');
const NS_S = `pg-ovs-${SUFFIX}`;
const NS_C = `pg-ovc-${SUFFIX}`;
const SRV_IP = '10.99.21.1';
const CLI_IP = '10.99.21.2';
const TUN_SUBNET = '10.8.210.0/24';
const TUN_SERVER_IP = '10.8.210.1';
const DIR = `/tmp/pg-ovpn-${SUFFIX}`;

function tool(argv: string[]): boolean {
  try {
    execFileSync(argv[0]!, argv.slice(1), { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function missingPrerequisite(): string | null {
  if (process.getuid?.() !== 0) return 'not root (network namespaces need root)';
  if (!tool(['openvpn', '--version'])) return 'openvpn is not installed (apt-get install openvpn)';
  if (!tool(['openssl', 'version'])) return 'openssl is not installed';
  if (!tool(['ip', '-V'])) return 'iproute2 is not installed';
  if (!tool(['ping', '-V'])) return 'ping is not installed (apt-get install iputils-ping)';
  if (!existsSync('/dev/net/tun')) return '/dev/net/tun is missing';
  return null;
}

async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function exitedWithin(p: HostProcess, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([p.exited.then(() => true), new Promise<boolean>((res) => (timer = setTimeout(() => res(false), ms)))]);
  clearTimeout(timer);
  return r;
}

const statusSessions = (text: string) => parseStatusText({ format: 'openvpn-status3', protocol: 'openvpn', text }).sessions;

/** The CA, certificate and key one client holds. */
interface ClientMaterial {
  caPem: string;
  certPem: string;
  keyPem: string;
}

const alive = (pid: number | undefined) => {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

interface VpnClient {
  proc: HostProcess;
  lines: string[];
  connected(): boolean;
}

describe('OpenVPN building blocks (integration, network namespaces)', function () {
  this.timeout(90_000);
  const rootHost = new LocalHost();
  const serverHost = new LocalHost({ netns: NS_S });
  const clientHost = new LocalHost({ netns: NS_C });
  const clients: HostProcess[] = [];
  let created = false;

  let pki: OpensslPanelPki;
  let tlsCrypt: string;
  /** Files the hand-made server config of the building-block tests points at. */
  const files = { ca: `${DIR}/m/ca.crt`, cert: `${DIR}/m/server.crt`, key: `${DIR}/m/server.key`, crl: `${DIR}/m/crl.pem`, tlsCrypt: `${DIR}/m/tls-crypt.key` };
  const SERVER_CN = 'blocks-server';
  const materialOf = async (username: string): Promise<ClientMaterial> => {
    const c = await pki.clientCertificate(username);
    return { caPem: await pki.caCertificate(), certPem: c.certificate, keyPem: c.privateKey };
  };
  let supervisor: ProcessSupervisor | undefined;
  let mgmt: ManagementClient | undefined;
  let vpn: OpenVpnPlugin | undefined;
  const serverLog: string[] = [];
  const requests: Array<{ cid: number; cn: string | undefined; username: string | undefined; verdict: string }> = [];
  const disconnects: ClientDisconnected[] = [];
  const established: Array<{ cid: number; cn: string | undefined }> = [];
  const passwords = new Map([
    ['alice', 'pw-alice'],
    ['bob', 'pw-bob'],
  ]);

  const startClient = async (name: string, material: ClientMaterial, creds: [string, string] | null): Promise<VpnClient> => {
    const profile = renderClientProfile({
      remotes: [{ host: SRV_IP, port: 1194, proto: 'udp' }],
      ...material,
      tlsCryptKey: tlsCrypt,
      serverCommonName: SERVER_CN,
      passwordAuth: creds !== null,
    });
    return startProfile(name, profile, creds);
  };

  /** A real `openvpn` client in the client namespace; its output is collected. */
  const startProfile = async (name: string, profile: string, creds: [string, string] | null): Promise<VpnClient> => {
    const profilePath = `${DIR}/${name}.ovpn`;
    await rootHost.writeFileAtomic(profilePath, profile, 0o600);
    const argv = ['openvpn', '--config', profilePath, '--disable-dco', '--connect-retry', '1', '1'];
    if (creds) {
      await rootHost.writeFileAtomic(`${DIR}/${name}.creds`, `${creds[0]}\n${creds[1]}\n`, 0o600);
      argv.push('--auth-user-pass', `${DIR}/${name}.creds`);
    }
    const lines: string[] = [];
    const proc = clientHost.spawn(argv, { onOutput: (chunk) => lines.push(...chunk.split('\n')) });
    clients.push(proc);
    return { proc, lines, connected: () => lines.some((l) => l.includes('Initialization Sequence Completed')) };
  };

  const stopClient = async (c: VpnClient) => {
    c.proc.kill('SIGTERM');
    if (!(await exitedWithin(c.proc, 5000))) {
      c.proc.kill('SIGKILL');
      await exitedWithin(c.proc, 5000);
    }
  };

  const onConnectRequest = (req: ConnectRequest) => {
    const cn = req.env.common_name;
    const username = req.env.username;
    let verdict = 'allow';
    if (!cn || username !== cn) verdict = 'username does not match certificate';
    else if (passwords.get(cn) !== req.env.password) verdict = 'bad credentials';
    requests.push({ cid: req.cid, cn, username, verdict });
    void (verdict === 'allow' ? req.allow() : req.deny(verdict));
  };

  before(async function () {
    const missing = missingPrerequisite();
    requirePrerequisite(this, missing === null, missing ?? '');
    const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
    ip('netns', 'add', NS_S);
    created = true;
    ip('netns', 'add', NS_C);
    ip('link', 'add', `pgvs${SUFFIX}`, 'netns', NS_S, 'type', 'veth', 'peer', 'name', `pgvc${SUFFIX}`, 'netns', NS_C);
    ip('-n', NS_S, 'addr', 'add', `${SRV_IP}/24`, 'dev', `pgvs${SUFFIX}`);
    ip('-n', NS_C, 'addr', 'add', `${CLI_IP}/24`, 'dev', `pgvc${SUFFIX}`);
    for (const [ns, dev] of [
      [NS_S, `pgvs${SUFFIX}`],
      [NS_C, `pgvc${SUFFIX}`],
    ] as const) {
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      ip('-n', ns, 'link', 'set', dev, 'up');
    }
    await rootHost.mkdirp(DIR, 0o700);
    pki = createPanelPki({ host: rootHost, dir: `${DIR}/pki` }) as OpensslPanelPki;
  });

  after(async () => {
    await vpn?.stop().catch(() => undefined);
    await supervisor?.stop().catch(() => undefined);
    await mgmt?.close().catch(() => undefined);
    for (const c of clients) {
      c.kill('SIGKILL');
      await exitedWithin(c, 5000);
    }
    if (created) {
      for (const ns of [NS_S, NS_C]) {
        try {
          execFileSync('ip', ['netns', 'del', ns], { stdio: 'pipe' });
        } catch {
          /* already gone */
        }
      }
    }
    await fs.rm(DIR, { recursive: true, force: true });
  });

  it('panel PKI material in the files a server config points at; keys are 0600', async () => {
    await pki.init();
    const server = await pki.serverCertificate(SERVER_CN, { ipAddresses: [SRV_IP] });
    await rootHost.mkdirp(`${DIR}/m`, 0o700);
    await rootHost.writeFileAtomic(files.ca, await pki.caCertificate(), 0o644);
    await rootHost.writeFileAtomic(files.cert, server.certificate, 0o644);
    await rootHost.writeFileAtomic(files.key, server.privateKey, 0o600);
    await rootHost.writeFileAtomic(files.crl, await pki.crl(), 0o644);
    tlsCrypt = execFileSync('openvpn', ['--genkey', 'secret']).toString();
    await rootHost.writeFileAtomic(files.tlsCrypt, tlsCrypt, 0o600);
    const material = await materialOf('alice');
    const text = execFileSync('openssl', ['x509', '-noout', '-subject', '-ext', 'extendedKeyUsage', '-nameopt', 'RFC2253'], { input: material.certPem }).toString();
    expect(text).to.match(/CN=alice/).and.match(/TLS Web Client Authentication/);
    expect((await fs.stat(`${DIR}/pki/clients/alice.pem`)).mode & 0o777).to.equal(0o600);
  });

  it('the rendered server config runs under the supervisor in its namespace; management attaches and releases the hold', async () => {
    const socket = `${DIR}/run/mgmt.sock`;
    await rootHost.mkdirp(`${DIR}/run`, 0o700);
    const conf = `${DIR}/server.conf`;
    await rootHost.writeFileAtomic(
      conf,
      renderServerConfig({
        port: 1194,
        proto: 'udp',
        local: SRV_IP,
        device: 'pgtun9',
        subnet: TUN_SUBNET,
        managementSocket: socket,
        caPath: files.ca,
        certPath: files.cert,
        keyPath: files.key,
        crlPath: files.crl,
        tlsCryptPath: files.tlsCrypt,
        keepalive: { interval: 2, timeout: 10 },
      }),
      0o600,
    );
    supervisor = new ProcessSupervisor({
      host: serverHost,
      argv: ['openvpn', '--config', conf],
      name: 'openvpn test',
      initialBackoffMs: 200,
      beforeStart: () => rootHost.remove(socket),
    });
    supervisor.on('output', (l) => serverLog.push(l));
    mgmt = new ManagementClient({ host: serverHost, socketPath: socket, reconnectInitialMs: 50, reconnectMaxMs: 500 });
    mgmt.on('connect-request', onConnectRequest);
    mgmt.on('disconnect', (d) => disconnects.push(d));
    mgmt.on('established', (e) => established.push({ cid: e.cid, cn: e.env.common_name }));
    supervisor.start();
    mgmt.start();
    await mgmt.waitConnected(15_000);
    // Held until our client said `hold release`; the tunnel device only exists after that.
    await until(() => serverLog.some((l) => l.includes('Initialization Sequence Completed')), 'server initialization', 15_000);
    expect(serverLog.join('\n')).to.include('MANAGEMENT: Client connected from');
    expect(execFileSync('ip', ['-n', NS_S, '-br', 'addr', 'show', 'pgtun9']).toString()).to.include('10.8.210.1/24');
    const version = await mgmt.command('version');
    expect(version[0]).to.match(/^OpenVPN Version: OpenVPN 2\.\d/);
  });

  let aliceMaterial: ClientMaterial;
  let alice: VpnClient;

  it('a real client logs in (cert CN = auth username, password checked on the management interface), pings through the tunnel, shows in status 3', async () => {
    aliceMaterial = await materialOf('alice');
    alice = await startClient('alice', aliceMaterial, ['alice', 'pw-alice']);
    await until(() => alice.connected(), 'alice tunnel up', 20_000);
    expect(requests.at(-1)).to.deep.include({ cn: 'alice', username: 'alice', verdict: 'allow' });
    expect(established.at(-1)).to.deep.include({ cn: 'alice' });
    const ping = await clientHost.run(['ping', '-c', '3', '-i', '0.2', '-W', '2', TUN_SERVER_IP], { timeoutMs: 15_000 });
    expect(ping.code, ping.stdout + ping.stderr).to.equal(0);
    expect(ping.stdout).to.match(/3 received/);
    const text = await mgmt!.status3();
    expect(text).to.match(/^TITLE\t/).and.match(/\nEND\n$/);
    const sessions = statusSessions(text);
    expect(sessions).to.have.length(1);
    expect(sessions[0]).to.deep.include({ username: 'alice', id: String(established.at(-1)!.cid) });
    expect(sessions[0]!.remoteAddress.startsWith(`${CLI_IP}:`), sessions[0]!.remoteAddress).to.equal(true);
    // Three pings of 84 bytes each way plus the handshake.
    expect(sessions[0]!.rxBytes).to.be.greaterThan(252);
    expect(sessions[0]!.txBytes).to.be.greaterThan(252);
  });

  it('refuses a login whose username is not the certificate CN, and a wrong password (client-deny → AUTH_FAILED)', async () => {
    const before = requests.length;
    const mismatch = await startClient('alice-as-bob', aliceMaterial, ['bob', 'pw-bob']);
    expect(await exitedWithin(mismatch.proc, 20_000), 'client exits after AUTH_FAILED').to.equal(true);
    expect(mismatch.lines.join('\n')).to.include('AUTH_FAILED');
    const wrong = await startClient('alice-wrong', aliceMaterial, ['alice', 'nope']);
    expect(await exitedWithin(wrong.proc, 20_000)).to.equal(true);
    expect(wrong.connected()).to.equal(false);
    expect(requests.slice(before).map((r) => r.verdict)).to.deep.equal(['username does not match certificate', 'bad credentials']);
  });

  it('killClient cuts the session; the disconnect event carries the final counters', async () => {
    const cid = established.filter((e) => e.cn === 'alice').at(-1)!.cid;
    const [live] = statusSessions(await mgmt!.status3());
    expect(await mgmt!.killClient(cid)).to.equal(true);
    await until(() => disconnects.some((d) => d.cid === cid), `DISCONNECT of cid ${cid}`, 15_000);
    const d = disconnects.find((x) => x.cid === cid)!;
    expect(d.env.common_name).to.equal('alice');
    expect(d.bytesReceived).to.be.at.least(live!.rxBytes);
    expect(d.bytesSent).to.be.at.least(live!.txBytes);
    // HALT: the client exits instead of reconnecting.
    expect(await exitedWithin(alice.proc, 15_000), 'client exits on HALT').to.equal(true);
    expect(statusSessions(await mgmt!.status3())).to.deep.equal([]);
    expect(await mgmt!.killClient(cid)).to.equal(false);
  });

  it('SIGKILL of openvpn: the supervisor restarts it, management reconnects, and a new client logs in', async () => {
    const exits: SupervisedExit[] = [];
    supervisor!.on('exit', (e) => exits.push(e));
    let reconnects = 0;
    mgmt!.on('connected', () => reconnects++);
    const oldPid = supervisor!.pid!;
    expect(alive(oldPid)).to.equal(true);
    process.kill(oldPid, 'SIGKILL');
    await until(() => exits.length === 1, 'exit reported', 10_000);
    expect(exits[0]).to.include({ signal: 'SIGKILL', requested: false, pid: oldPid });
    await until(() => supervisor!.pid !== undefined && supervisor!.pid !== oldPid, 'restart', 15_000);
    await until(() => reconnects >= 1 && mgmt!.connected, 'management reconnect', 15_000);
    expect(await mgmt!.status3()).to.match(/^TITLE\t/);
    const again = await startClient('alice-2', aliceMaterial, ['alice', 'pw-alice']);
    await until(() => again.connected(), 'tunnel up after restart', 20_000);
    const ping = await clientHost.run(['ping', '-c', '1', '-W', '2', TUN_SERVER_IP], { timeoutMs: 10_000 });
    expect(ping.code).to.equal(0);
    await stopClient(again);
  });

  it('revokeClient: the old certificate is listed in the CRL and refused by the running server; the new one logs in', async () => {
    const oldSerial = /serial=([0-9A-F]+)/i.exec(execFileSync('openssl', ['x509', '-noout', '-serial'], { input: aliceMaterial.certPem }).toString())![1]!.toUpperCase();
    await pki.revokeClient('alice');
    const crl = await pki.crl();
    const crlText = execFileSync('openssl', ['crl', '-noout', '-text'], { input: crl }).toString();
    expect(crlText.replace(/:/g, '').toUpperCase()).to.include(oldSerial);
    const fresh = await materialOf('alice');
    expect(fresh.certPem).to.not.equal(aliceMaterial.certPem);
    // What a plugin does with the pki_crl setting: replace the file crl-verify reads.
    await rootHost.writeFileAtomic(files.crl, crl, 0o644);

    // OpenVPN re-reads crl-verify on each new connection: no restart needed.
    const restarts = supervisor!.restarts;
    const logFrom = serverLog.length;
    const before = requests.length;
    const revoked = await startClient('alice-revoked', aliceMaterial, ['alice', 'pw-alice']);
    await until(() => serverLog.slice(logFrom).some((l) => /revoked/i.test(l)), 'the server refusing the revoked certificate', 20_000);
    expect(revoked.connected()).to.equal(false);
    expect(requests.length, 'a revoked certificate never reaches the auth decider').to.equal(before);
    await stopClient(revoked);
    const renewed = await startClient('alice-new', fresh, ['alice', 'pw-alice']);
    await until(() => renewed.connected(), 'tunnel with the new certificate', 20_000);
    expect(supervisor!.restarts).to.equal(restarts);
    await stopClient(renewed);
  });

  it('the plugin (API v2): two instances (UDP + TCP) via apply, logins via ctx.authorize, pollSessions, disconnect/apply/server death → sessionEnded, a revoked certificate refused after the CRL apply, stop', async () => {
    const authorizeCalls: Array<Parameters<PluginContext<OpenVpnConfig>["authorize"]>[0]> = [];
    const ended: SessionEnded[] = [];
    const ctx: PluginContext<OpenVpnConfig> = {
      host: serverHost,
      config: openVpnConfigSchema.parse({ bytecountIntervalSec: 1, restartInitialMs: 200, keepaliveInterval: 2, keepaliveTimeout: 10 }),
      logger,
      clock: new ManualClock(),
      serverId: 'main',
      stateDir: `${DIR}/plugin`,
      clientPool: '10.8.0.0/16',
      pki,
      authorize: async (r) => {
        authorizeCalls.push(r);
        return r.username === 'dave' ? { allowed: false, reason: 'account expired' } : { allowed: true };
      },
      sessionEnded: async (e) => void ended.push(e),
    };
    expect(openvpnPlugin.apiVersion).to.equal('2.0');
    expect(openvpnPlugin.capabilities).to.equal(OPENVPN_CAPABILITIES);
    expect(OPENVPN_CAPABILITIES).to.deep.include({ gatesLogins: true, reportsEndedSessions: true, poll: 'openvpn-status3', takesListeners: true, settings: ['pki_crl'] });
    vpn = openvpnPlugin.create(ctx) as OpenVpnPlugin;
    expect(await vpn.availability()).to.deep.equal({ available: true });
    const listeners = [
      { port: 1195, protocol: 'udp' as const },
      { port: 1196, protocol: 'tcp' as const },
    ];
    const state = (users: string[], crl?: string): DesiredState => ({
      listeners,
      users: users.map((u) => ({ username: u, password: `pw-${u}`, material: {} })),
      settings: crl === undefined ? {} : { pki_crl: crl },
    });
    await vpn.apply(state(['carol', 'dave'], await pki.crl()));
    expect(await vpn.ports()).to.deep.equal([
      { port: 1195, protocol: 'udp', purpose: 'OpenVPN 1195/udp' },
      { port: 1196, protocol: 'tcp', purpose: 'OpenVPN 1196/tcp' },
    ]);
    const running = vpn.describe();
    expect(running.map((r) => [r.key, r.device, r.subnet, r.managementConnected])).to.deep.equal([
      ['1195udp', 'pgtun0', '10.8.0.0/24', true],
      ['1196tcp', 'pgtun1', '10.8.1.0/24', true],
    ]);
    // The same state again changes nothing: the same processes keep running.
    await vpn.apply(state(['carol', 'dave'], await pki.crl()));
    expect(vpn.describe().map((r) => r.pid)).to.deep.equal(running.map((r) => r.pid));
    // The server certificate is the panel's, issued for this server.
    const serverCert = await fs.readFile(`${DIR}/plugin/pki/server.crt`, 'utf8');
    expect(execFileSync('openssl', ['x509', '-noout', '-subject', '-nameopt', 'RFC2253'], { input: serverCert }).toString()).to.include('CN=openvpn.main');
    expect((await fs.stat(`${DIR}/plugin/pki/server.key`)).mode & 0o777).to.equal(0o600);

    const profile = await vpn.renderClientConfig({ username: 'carol', material: {} }, [{ host: SRV_IP, port: 1196, protocol: 'tcp' }]);
    expect(profile).to.include('remote 10.99.21.1 1196 tcp').and.include('auth-user-pass').and.include('<tls-crypt>').and.include('verify-x509-name openvpn.main name');
    expect(profile).to.include((await pki.clientCertificate('carol')).certificate.trim());
    expect(profile).to.include((await pki.caCertificate()).trim());
    const carol = await startProfile('carol', profile, ['carol', 'pw-carol']);
    await until(() => carol.connected(), 'carol over TCP', 20_000);
    expect(authorizeCalls.at(-1)).to.deep.equal({ username: 'carol', password: 'pw-carol', protocol: 'openvpn', serverId: 'main' });
    expect((await clientHost.run(['ping', '-c', '2', '-i', '0.2', '-W', '2', '10.8.1.1'], { timeoutMs: 10_000 })).code).to.equal(0);

    // One status text per instance, for the accounting parser.
    const poll = await vpn.pollSessions();
    if (poll.kind !== 'status-text') throw new Error(`poll kind ${poll.kind}`);
    expect(poll.format).to.equal('openvpn-status3');
    expect(poll.texts.map((t) => t.scope)).to.deep.equal(['main:1195udp', 'main:1196tcp']);
    expect(statusSessions(poll.texts[0]!.text)).to.deep.equal([]);
    const sessions = statusSessions(poll.texts[1]!.text);
    expect(sessions).to.have.length(1);
    expect(sessions[0]).to.deep.include({ username: 'carol' });
    const carolKey = `main:1196tcp:${sessions[0]!.id}`;

    // core says no: refused even with the right password.
    const daveProfile = await vpn.renderClientConfig({ username: 'dave', material: {} }, [{ host: SRV_IP, port: 1195, protocol: 'udp' }]);
    const dave = await startProfile('dave', daveProfile, ['dave', 'pw-dave']);
    expect(await exitedWithin(dave.proc, 20_000)).to.equal(true);
    expect(dave.lines.join('\n')).to.include('AUTH_FAILED');
    expect(authorizeCalls.map((c) => c.username)).to.include('dave');

    // disconnect: client-kill HALT; the client exits and the final counters are reported.
    await vpn.disconnect({ username: 'carol' });
    await until(() => ended.some((e) => e.session.username === 'carol'), 'sessionEnded for carol', 15_000);
    const end = ended.find((e) => e.session.username === 'carol')!;
    expect(end.reason).to.equal('disconnected');
    expect(end.session.sessionKey).to.equal(carolKey);
    expect(end.session.rxBytes).to.be.at.least(sessions[0]!.rxBytes);
    expect(end.session.txBytes).to.be.at.least(sessions[0]!.txBytes);
    expect(end.session.connectedAt).to.equal(sessions[0]!.connectedAt);
    expect(await exitedWithin(carol.proc, 15_000), 'HALT makes the client exit').to.equal(true);

    // apply without carol cuts her live session.
    const carol2 = await startProfile('carol2', profile, ['carol', 'pw-carol']);
    await until(() => carol2.connected(), 'carol again', 20_000);
    await vpn.apply(state(['dave']));
    await until(() => ended.filter((e) => e.session.username === 'carol').length === 2, 'carol cut by apply', 15_000);
    expect(await exitedWithin(carol2.proc, 15_000)).to.equal(true);

    // openvpn SIGKILLed: no DISCONNECT will come; the session is reported ended with the last
    // counters bytecount gave, and the instance comes back.
    await vpn.apply(state(['carol', 'dave']));
    const carol3 = await startProfile('carol3', profile, ['carol', 'pw-carol']);
    await until(() => carol3.connected(), 'carol a third time', 20_000);
    await clientHost.run(['ping', '-c', '2', '-i', '0.2', '-W', '2', '10.8.1.1'], { timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 1500)); // one bytecount interval
    const tcpPid = vpn.describe().find((r) => r.key === '1196tcp')!.pid!;
    process.kill(tcpPid, 'SIGKILL');
    await until(() => ended.some((e) => e.reason === 'server-exit'), 'sessionEnded after the server died', 10_000);
    const died = ended.find((e) => e.reason === 'server-exit')!;
    expect(died.session.username).to.equal('carol');
    expect(died.session.rxBytes).to.be.greaterThan(168);
    await until(() => vpn!.describe().some((r) => r.key === '1196tcp' && r.pid !== undefined && r.pid !== tcpPid && r.managementConnected), 'tcp instance back', 15_000);
    expect(vpn.describe().find((r) => r.key === '1196tcp')!.restarts).to.equal(1);
    await stopClient(carol3);

    // carol's certificate is revoked in the panel PKI (as core does on delete); once the CRL
    // arrives in apply, the running server refuses the old certificate without a restart,
    // before any password check, and a new profile (new certificate) logs in.
    const restarts = vpn.describe().map((r) => r.restarts);
    await pki.revokeClient('carol');
    await vpn.apply(state(['carol', 'dave'], await pki.crl()));
    expect(await fs.readFile(`${DIR}/plugin/pki/crl.pem`, 'utf8')).to.equal(await pki.crl());
    const authBefore = authorizeCalls.length;
    const revoked = await startProfile('carol-revoked', profile, ['carol', 'pw-carol']);
    await new Promise((r) => setTimeout(r, 4000));
    expect(revoked.connected(), 'a revoked certificate does not connect').to.equal(false);
    expect(authorizeCalls.length, 'a revoked certificate never reaches authorize').to.equal(authBefore);
    await stopClient(revoked);
    const freshProfile = await vpn.renderClientConfig({ username: 'carol', material: {} }, [{ host: SRV_IP, port: 1196, protocol: 'tcp' }]);
    expect(freshProfile).to.not.equal(profile);
    const renewed = await startProfile('carol-new', freshProfile, ['carol', 'pw-carol']);
    await until(() => renewed.connected(), 'carol with a new certificate', 20_000);
    expect(vpn.describe().map((r) => r.restarts)).to.deep.equal(restarts);
    await stopClient(renewed);

    // One listener left: the UDP process stops, the TCP one keeps running.
    const pidUdp = vpn.describe().find((r) => r.key === '1195udp')!.pid;
    const pidTcp = vpn.describe().find((r) => r.key === '1196tcp')!.pid;
    await vpn.apply({ ...state(['carol', 'dave']), listeners: [{ port: 1196, protocol: 'tcp' }] });
    expect(alive(pidUdp)).to.equal(false);
    expect(vpn.describe().map((r) => [r.key, r.pid])).to.deep.equal([['1196tcp', pidTcp]]);
    const single = await vpn.pollSessions();
    expect(single.kind === 'status-text' && single.texts.map((t) => t.scope)).to.deep.equal(['main:1196tcp']);
    await vpn.stop();
    expect(vpn.describe()).to.deep.equal([]);
    expect(alive(pidTcp)).to.equal(false);
  });
});
