import { expect } from 'chai';
import { DomainError } from '../../core/errors';
import { renderClientProfile, renderServerConfig, type ClientProfileInput, type ServerConfigInput } from '../../plugins/openvpn/render';
import { nthSubnet, parseIpv4Subnet } from '../../core';

/*
 * The pure OpenVPN renderers. Proves: the exact server config and client profile we ship
 * (fixtures inline, so a change shows up in review), the design switches (password auth,
 * hold, UDP-only options, pushes), and that every value that could break out of its line
 * or block is refused instead of written.
 */

function expectInvalid(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(DomainError);
    expect((e as DomainError).kind).to.equal('invalid');
    expect((e as DomainError).message).to.match(pattern);
    return;
  }
  expect.fail(`expected an invalid DomainError matching ${pattern}`);
}

const server: ServerConfigInput = {
  port: 1194,
  proto: 'udp',
  device: 'pgtun0',
  subnet: '10.8.0.0/24',
  managementSocket: '/var/lib/polygate/plugins/openvpn/run/1194udp.sock',
  caPath: '/var/lib/polygate/plugins/openvpn/pki/ca.crt',
  certPath: '/var/lib/polygate/plugins/openvpn/pki/server.crt',
  keyPath: '/var/lib/polygate/plugins/openvpn/pki/server.key',
  crlPath: '/var/lib/polygate/plugins/openvpn/pki/crl.pem',
  tlsCryptPath: '/var/lib/polygate/plugins/openvpn/pki/tls-crypt.key',
};

const CA = '-----BEGIN CERTIFICATE-----\nMIIBeDCCAR6gAwIBAgIUL/ca==\nAbCd+/09\n-----END CERTIFICATE-----\n';
const CERT = '-----BEGIN CERTIFICATE-----\nMIIBmjCCAUCgAwIBAgIUCCOA\n-----END CERTIFICATE-----';
const KEY = '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEG\n-----END PRIVATE KEY-----\n';
const TLS_CRYPT = '#\n# 2048 bit OpenVPN static key\n#\n-----BEGIN OpenVPN Static key V1-----\n0123456789abcdef0123456789abcdef\n-----END OpenVPN Static key V1-----\n';

const profile: ClientProfileInput = {
  remotes: [{ host: 'vpn.example.com', port: 1194, proto: 'udp' }],
  caPem: CA,
  certPem: CERT,
  keyPem: KEY,
  tlsCryptKey: TLS_CRYPT,
  serverCommonName: 'polygate-server',
};

describe('OpenVPN render (pure)', () => {
  describe('renderServerConfig', () => {
    it('renders the UDP server config exactly (fixture)', () => {
      expect(renderServerConfig(server)).to.equal(
        [
          '# Managed by polygate: rewritten as a whole on every change. Edits here are lost.',
          'port 1194',
          'proto udp',
          'dev pgtun0',
          'dev-type tun',
          'topology subnet',
          'server 10.8.0.0 255.255.255.0',
          'ca /var/lib/polygate/plugins/openvpn/pki/ca.crt',
          'cert /var/lib/polygate/plugins/openvpn/pki/server.crt',
          'key /var/lib/polygate/plugins/openvpn/pki/server.key',
          'dh none',
          'crl-verify /var/lib/polygate/plugins/openvpn/pki/crl.pem',
          'tls-crypt /var/lib/polygate/plugins/openvpn/pki/tls-crypt.key',
          'verify-client-cert require',
          'remote-cert-tls client',
          'duplicate-cn',
          'management /var/lib/polygate/plugins/openvpn/run/1194udp.sock unix',
          'management-client-auth',
          'management-hold',
          'keepalive 10 60',
          'explicit-exit-notify 1',
          'multihome',
          'script-security 1',
          'status-version 3',
          'persist-key',
          'persist-tun',
          'disable-dco',
          'verb 3',
          'mute 20',
          '',
        ].join('\n'),
      );
    });

    it('TCP: tcp-server, no explicit-exit-notify; options: bind, pushes, limits, status file, cert-only', () => {
      const text = renderServerConfig({
        ...server,
        port: 443,
        proto: 'tcp',
        device: 'pgtun12',
        subnet: '10.8.4.0/22',
        local: '192.0.2.10',
        passwordAuth: false,
        managementHold: false,
        maxClients: 250,
        keepalive: { interval: 5, timeout: 30 },
        redirectGateway: true,
        dns: ['1.1.1.1', '2606:4700:4700::1111'],
        statusFile: '/run/pg/status-443tcp.txt',
        statusIntervalSec: 5,
        dco: true,
        verb: 4,
      });
      const lines = text.split('\n');
      expect(lines).to.include.members([
        'port 443',
        'proto tcp-server',
        'local 192.0.2.10',
        'dev pgtun12',
        'server 10.8.4.0 255.255.252.0',
        'auth-user-pass-optional',
        'max-clients 250',
        'keepalive 5 30',
        'status /run/pg/status-443tcp.txt 5',
        'push "redirect-gateway def1 bypass-dhcp"',
        'push "dhcp-option DNS 1.1.1.1"',
        'push "dhcp-option DNS 2606:4700:4700::1111"',
        'verb 4',
      ]);
      expect(lines).to.not.include('explicit-exit-notify 1');
      expect(lines).to.not.include('multihome');
      expect(lines).to.not.include('management-hold');
      expect(lines).to.not.include('disable-dco');
      // Decided by the management client, never by OpenVPN's own name mapping.
      expect(text).to.not.match(/username-as-common-name|auth-user-pass-verify|client-connect|up |down /);
      expect(lines).to.include.members(['verify-client-cert require', 'management-client-auth', 'script-security 1', 'duplicate-cn']);
    });

    it('never pushes redirect-gateway unless asked', () => {
      expect(renderServerConfig(server)).to.not.include('redirect-gateway');
      expect(renderServerConfig({ ...server, redirectGateway: false })).to.not.include('redirect-gateway');
    });

    it('refuses values that could break out of their line', () => {
      expectInvalid(() => renderServerConfig({ ...server, port: 0 }), /port/);
      expectInvalid(() => renderServerConfig({ ...server, port: 1194.5 }), /port/);
      expectInvalid(() => renderServerConfig({ ...server, port: '1194' as unknown as number }), /port/);
      expectInvalid(() => renderServerConfig({ ...server, proto: 'udp6' as 'udp' }), /proto/);
      expectInvalid(() => renderServerConfig({ ...server, device: 'tun0' }), /device/);
      expectInvalid(() => renderServerConfig({ ...server, device: 'pgtun0\nscript-security 3' }), /device/);
      expectInvalid(() => renderServerConfig({ ...server, subnet: '10.8.0.1/24' }), /host bits/);
      expectInvalid(() => renderServerConfig({ ...server, subnet: '10.8.0.0/8' }), /prefix/);
      expectInvalid(() => renderServerConfig({ ...server, subnet: '10.8.0.0 255.255.255.0' }), /CIDR/);
      expectInvalid(() => renderServerConfig({ ...server, local: 'eth0' }), /local/);
      expectInvalid(() => renderServerConfig({ ...server, dns: ['1.1.1.1"\npush "route 0.0.0.0'] }), /dns/);
      for (const bad of ['relative/ca.crt', '/a b/ca.crt', '/a\nb', '/a"b', "/a'b", '/a;b', '/a#b', '/a$b', '/a\\b', '/a/../etc/shadow', '']) {
        expectInvalid(() => renderServerConfig({ ...server, caPath: bad }), /caPath/);
      }
      expectInvalid(() => renderServerConfig({ ...server, managementSocket: '/run/x.sock unix\nmanagement-client-auth' }), /managementSocket/);
      expectInvalid(() => renderServerConfig({ ...server, keepalive: { interval: 10, timeout: 15 } }), /keepalive timeout/);
      expectInvalid(() => renderServerConfig({ ...server, maxClients: 0 }), /maxClients/);
    });
  });

  describe('renderClientProfile', () => {
    it('renders a self-contained UDP profile exactly (fixture)', () => {
      expect(renderClientProfile({ ...profile, title: 'alice @ main_udp' })).to.equal(
        [
          '# alice @ main_udp',
          'client',
          'dev tun',
          'nobind',
          'remote vpn.example.com 1194 udp',
          'resolv-retry infinite',
          'persist-key',
          'persist-tun',
          'remote-cert-tls server',
          'verify-x509-name polygate-server name',
          'auth-user-pass',
          'explicit-exit-notify 1',
          'verb 3',
          '<ca>',
          '-----BEGIN CERTIFICATE-----',
          'MIIBeDCCAR6gAwIBAgIUL/ca==',
          'AbCd+/09',
          '-----END CERTIFICATE-----',
          '</ca>',
          '<cert>',
          '-----BEGIN CERTIFICATE-----',
          'MIIBmjCCAUCgAwIBAgIUCCOA',
          '-----END CERTIFICATE-----',
          '</cert>',
          '<key>',
          '-----BEGIN PRIVATE KEY-----',
          'MIGHAgEAMBMGByqGSM49AgEG',
          '-----END PRIVATE KEY-----',
          '</key>',
          '<tls-crypt>',
          '#',
          '# 2048 bit OpenVPN static key',
          '#',
          '-----BEGIN OpenVPN Static key V1-----',
          '0123456789abcdef0123456789abcdef',
          '-----END OpenVPN Static key V1-----',
          '</tls-crypt>',
          '',
        ].join('\n'),
      );
    });

    it('several remotes in order; TCP drops explicit-exit-notify; cert-only drops auth-user-pass; CRLF PEMs are normalized', () => {
      const text = renderClientProfile({
        ...profile,
        caPem: CA.replace(/\n/g, '\r\n'),
        passwordAuth: false,
        remotes: [
          { host: '203.0.113.7', port: 443, proto: 'tcp' },
          { host: '2001:db8::1', port: 1194, proto: 'udp' },
        ],
      });
      const lines = text.split('\n');
      expect(lines.filter((l) => l.startsWith('remote '))).to.deep.equal(['remote 203.0.113.7 443 tcp', 'remote 2001:db8::1 1194 udp']);
      expect(lines).to.not.include('explicit-exit-notify 1');
      expect(lines).to.not.include('auth-user-pass');
      expect(text).to.not.include('\r');
    });

    it('refuses hosts, ports and PEM contents that could inject options or close a block', () => {
      const remote = profile.remotes[0]!;
      for (const host of ['vpn.example.com 443\nup /bin/sh', 'a_b.example', '-vpn.example', '.vpn', 'a..b', '', 'x'.repeat(254), 'vpn"x']) {
        expectInvalid(() => renderClientProfile({ ...profile, remotes: [{ ...remote, host }] }), /host/);
      }
      expectInvalid(() => renderClientProfile({ ...profile, remotes: [{ ...remote, port: 70000 }] }), /port/);
      expectInvalid(() => renderClientProfile({ ...profile, remotes: [] }), /at least one remote/);
      expectInvalid(() => renderClientProfile({ ...profile, certPem: `${CERT}\n</cert>\nscript-security 3\nup /bin/sh\n<cert>\n${CERT}` }), /<cert>/);
      expectInvalid(() => renderClientProfile({ ...profile, keyPem: CERT }), /<key> must hold PEM blocks of type PRIVATE KEY/);
      expectInvalid(() => renderClientProfile({ ...profile, caPem: '' }), /<ca>/);
      expectInvalid(() => renderClientProfile({ ...profile, caPem: CA.replace('AbCd+/09', 'AbCd </ca>') }), /malformed/);
      expectInvalid(() => renderClientProfile({ ...profile, tlsCryptKey: `# </tls-crypt>\n${TLS_CRYPT}` }), /<tls-crypt>/);
      expectInvalid(() => renderClientProfile({ ...profile, serverCommonName: 'server name' }), /serverCommonName/);
      expectInvalid(() => renderClientProfile({ ...profile, title: 'x\nup /bin/sh' }), /title/);
    });
  });

  describe('subnets', () => {
    it('parses CIDRs to network + mask and carves per-instance networks from a pool', () => {
      expect(parseIpv4Subnet('10.8.0.0/24')).to.deep.equal({ network: '10.8.0.0', netmask: '255.255.255.0', prefix: 24 });
      expect(parseIpv4Subnet('172.16.0.0/16').netmask).to.equal('255.255.0.0');
      expect(parseIpv4Subnet('10.9.0.8/29').netmask).to.equal('255.255.255.248');
      expect(nthSubnet('10.8.0.0/16', 24, 0)).to.equal('10.8.0.0/24');
      expect(nthSubnet('10.8.0.0/16', 24, 255)).to.equal('10.8.255.0/24');
      expectInvalid(() => nthSubnet('10.8.0.0/16', 24, 256), /only 256/);
      expectInvalid(() => parseIpv4Subnet('300.1.1.0/24'), /CIDR/);
    });
  });
});
