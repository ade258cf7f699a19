import { expect } from 'chai';
import { assertHost, assertIntRange, assertIp, assertPort, assertSafePath, assertTransport, assertUsername, isDomainError, USERNAME_PATTERN } from '../../core';

/*
 * The validators plugins run on every value that reaches a config, an argv or a path. Proves:
 * each accepts what the formats can hold and refuses with a DomainError of kind `invalid`
 * (which the API maps to 400) everything else, including the tricks a shell or a config
 * parser would interpret (`..`, spaces, newlines, quotes, leading dashes in host names).
 */

function refuses(fn: () => unknown, message: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(isDomainError(e), String(e)).to.equal(true);
    expect((e as { kind: string }).kind).to.equal('invalid');
    expect((e as Error).message).to.match(message);
    return;
  }
  expect.fail('accepted');
}

describe('kit: validators', () => {
  it('usernames: 3..32 of letters, digits, _ . -', () => {
    for (const ok of ['bob', 'alice_01', 'a.b-c', '-days', 'x'.repeat(32)]) expect(assertUsername(ok)).to.equal(ok);
    for (const bad of ['ab', 'x'.repeat(33), 'a b', 'al/ice', '../etc', 'a\nb', 'ünï', '', 5, undefined]) refuses(() => assertUsername(bad), /username must match/);
    expect(USERNAME_PATTERN.test('ok_name')).to.equal(true);
  });

  it('hosts: DNS names or IPs, not option-like or with empty labels', () => {
    for (const ok of ['vpn.example.com', '10.0.0.1', '2001:db8::1', 'localhost']) expect(assertHost(ok)).to.equal(ok);
    for (const bad of ['-oProxyCommand', '.example', 'a..b', 'a b', 'x;y', '', 7]) refuses(() => assertHost(bad, 'publicHost'), /publicHost must be a hostname/);
  });

  it('IPs, ports, transports and integer ranges', () => {
    expect(assertIp('192.0.2.1', 'dns')).to.equal('192.0.2.1');
    refuses(() => assertIp('example.com', 'dns'), /dns must be an IP address/);
    expect(assertPort(1194)).to.equal(1194);
    for (const bad of [0, 65536, 1.5, '1194']) refuses(() => assertPort(bad), /port must be an integer 1\.\.65535/);
    expect(assertTransport('udp')).to.equal('udp');
    refuses(() => assertTransport('sctp'), /'udp' or 'tcp'/);
    expect(assertIntRange(5, 1, 10, 'n')).to.equal(5);
    refuses(() => assertIntRange(11, 1, 10, 'n'), /n must be an integer 1\.\.10/);
  });

  it('safe paths: absolute, no .., no characters a config format would interpret', () => {
    expect(assertSafePath('/var/lib/polygate/plugins/openvpn', 'dir')).to.equal('/var/lib/polygate/plugins/openvpn');
    for (const bad of ['relative/path', '/a/../b', '/a b', '/a"b', '/a$b', '/a#b', '/a;b', '/a\\b', '/a\nb']) refuses(() => assertSafePath(bad, 'dir'), /dir must be an absolute path/);
  });
});
