import { expect } from 'chai';
import { DomainError } from '../../core/errors';
import {
  parseCidr,
  parseTableJson,
  renderRemoval,
  renderRuleset,
  sanitizeOwner,
  validateDesired,
  type FirewallDesired,
} from '../../core/firewall/nft-render';

function expectDomainError(fn: () => unknown, kind: string, pattern: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(DomainError);
    expect((e as DomainError).kind).to.equal(kind);
    expect((e as DomainError).message).to.match(pattern);
    return;
  }
  expect.fail(`expected DomainError(${kind}) matching ${pattern}`);
}

describe('nft-render (pure firewall renderer)', () => {
  it('renders the whole table as one atomic replace script touching only inet polygate', () => {
    const script = renderRuleset({
      openPorts: [
        { port: 1194, protocol: 'udp', owner: 'openvpn' },
        { port: 443, protocol: 'tcp', owner: 'ocserv' },
      ],
      nat: [{ sourceCidr: '10.8.0.0/24', outInterface: 'eth0' }, { sourceCidr: 'fd00:8::/64' }],
    });
    expect(script).to.equal(
      [
        '#!/usr/sbin/nft -f',
        '# Managed by polygate: rewritten as a whole on every change. Edits here are lost.',
        'table inet polygate {}',
        'delete table inet polygate',
        'table inet polygate {',
        '  comment "managed by polygate"',
        '  chain input {',
        '    type filter hook input priority 0; policy accept;',
        '    tcp dport 443 counter accept comment "ocserv"',
        '    udp dport 1194 counter accept comment "openvpn"',
        '  }',
        '  chain postrouting {',
        '    type nat hook postrouting priority 100; policy accept;',
        '    ip saddr 10.8.0.0/24 ip daddr != 10.8.0.0/24 oifname "eth0" counter masquerade comment "nat"',
        '    ip6 saddr fd00:8::/64 ip6 daddr != fd00:8::/64 counter masquerade comment "nat"',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
    // No statement in the script names any table but ours.
    for (const line of script.split('\n').filter((l) => /\btable\b/.test(l) && !l.startsWith('#'))) {
      expect(line).to.match(/table inet polygate\b/);
    }
  });

  it('never drops traffic: the only verdicts are accept and masquerade, policy accept', () => {
    const script = renderRuleset({ openPorts: [{ port: 22, protocol: 'tcp', owner: 'ssh' }], nat: [{ sourceCidr: '10.0.0.0/8' }] });
    expect(script).to.not.match(/\b(drop|reject)\b/);
    expect(script.match(/policy accept;/g)).to.have.length(2);
  });

  it('omits the nat chain when there is no NAT (hosts without nat support still work)', () => {
    expect(renderRuleset({ openPorts: [] })).to.not.include('postrouting');
    expect(renderRuleset({ openPorts: [], nat: [] })).to.not.include('postrouting');
  });

  it('sorts ports, merges exact duplicates, and refuses one port claimed by two owners', () => {
    const d = validateDesired({
      openPorts: [
        { port: 500, protocol: 'udp', owner: 'l2tp' },
        { port: 53, protocol: 'udp', owner: 'dns' },
        { port: 53, protocol: 'tcp', owner: 'dns' },
        { port: 500, protocol: 'udp', owner: 'l2tp' },
      ],
    });
    expect(d.openPorts.map((p) => `${p.port}/${p.protocol}`)).to.deep.equal(['53/tcp', '53/udp', '500/udp']);
    expectDomainError(
      () => validateDesired({ openPorts: [{ port: 443, protocol: 'tcp', owner: 'openvpn' }, { port: 443, protocol: 'tcp', owner: 'ocserv' }] }),
      'conflict',
      /443\/tcp is claimed by both openvpn and ocserv/,
    );
  });

  it('reduces owner comments to [A-Za-z0-9_.:-] so nothing can escape the quoted comment', () => {
    expect(sanitizeOwner('evil"; flush ruleset; #')).to.equal('evil___flush_ruleset___');
    expect(sanitizeOwner('wireguard:node_2')).to.equal('wireguard:node_2');
    expect(sanitizeOwner('x'.repeat(200))).to.have.length(64);
    const script = renderRuleset({ openPorts: [{ port: 80, protocol: 'tcp', owner: 'a"b\n}c' }] });
    expect(script).to.include('tcp dport 80 counter accept comment "a_b__c"');
  });

  it('rejects ports that are not integers in 1..65535, naming the field', () => {
    for (const port of [0, 65536, -1, 1.5, Number.NaN, '80', null]) {
      expectDomainError(
        () => renderRuleset({ openPorts: [{ port, protocol: 'tcp', owner: 'x' }] } as unknown as FirewallDesired),
        'invalid',
        /openPorts\[0\]\.port must be an integer 1\.\.65535/,
      );
    }
  });

  it('rejects protocols other than tcp/udp and empty owners', () => {
    expectDomainError(
      () => validateDesired({ openPorts: [{ port: 1, protocol: 'icmp', owner: 'x' }] }),
      'invalid',
      /openPorts\[0\]\.protocol must be "tcp" or "udp"/,
    );
    expectDomainError(
      () => validateDesired({ openPorts: [{ port: 1, protocol: 'TCP', owner: 'x' }] }),
      'invalid',
      /protocol/,
    );
    expectDomainError(() => validateDesired({ openPorts: [{ port: 1, protocol: 'tcp', owner: '  ' }] }), 'invalid', /owner must be a non-empty string/);
    expectDomainError(() => validateDesired({ openPorts: 'all' }), 'invalid', /openPorts must be an array/);
    expectDomainError(() => validateDesired(null), 'invalid', /must be an object/);
  });

  it('rejects anything that is not a strict CIDR', () => {
    const bad = [
      '10.8.0.0',
      '10.8.0.0/33',
      '10.8.0.256/24',
      '10.8.0.0/24; flush ruleset',
      '10.8.0.0/24 ',
      '010.8.0.0/24',
      '10.8.0.0/024',
      'fd00::/129',
      'fd00:::1/64',
      'example.com/24',
      '',
    ];
    for (const sourceCidr of bad) {
      expectDomainError(() => validateDesired({ openPorts: [], nat: [{ sourceCidr }] }), 'invalid', /nat\[0\]\.sourceCidr/);
    }
    expectDomainError(() => validateDesired({ openPorts: [], nat: [{ sourceCidr: 42 }] }), 'invalid', /sourceCidr must be a CIDR string/);
  });

  it('canonicalizes CIDRs to their network address, as nft stores them', () => {
    expect(parseCidr('10.8.0.77/24', 'x')).to.deep.equal({ family: 4, text: '10.8.0.0/24' });
    expect(parseCidr('192.168.255.255/17', 'x').text).to.equal('192.168.128.0/17');
    expect(parseCidr('0.0.0.0/0', 'x').text).to.equal('0.0.0.0/0');
    expect(parseCidr('10.1.2.3/32', 'x').text).to.equal('10.1.2.3/32');
    expect(parseCidr('FD00:0:0:0:0:0:0:1/64', 'x')).to.deep.equal({ family: 6, text: 'fd00::/64' });
    expect(parseCidr('2001:db8:aaaa:bbbb:cccc::1/56', 'x').text).to.equal('2001:db8:aaaa:bb00::/56');
    expect(parseCidr('::ffff:10.0.0.1/120', 'x').text).to.equal('::ffff:a00:0/120');
    expect(parseCidr('2001:db8::1/128', 'x').text).to.equal('2001:db8::1/128');
  });

  it('rejects interface names that are not ^[a-zA-Z0-9_.-]{1,15}$', () => {
    for (const outInterface of ['eth0"; flush ruleset', 'a'.repeat(16), '', 'eth 0', 'wg*']) {
      expectDomainError(
        () => validateDesired({ openPorts: [], nat: [{ sourceCidr: '10.0.0.0/8', outInterface }] }),
        'invalid',
        /nat\[0\]\.outInterface must match/,
      );
    }
    expect(validateDesired({ openPorts: [], nat: [{ sourceCidr: '10.0.0.0/8', outInterface: 'ens3.100' }] }).nat).to.deep.equal([
      { sourceCidr: '10.0.0.0/8', outInterface: 'ens3.100' },
    ]);
  });

  it('refuses table names that could inject statements', () => {
    expectDomainError(() => renderRuleset({ openPorts: [] }, { table: 'x; flush ruleset' }), 'invalid', /table name/);
    expect(renderRemoval({ table: 'pg_test' })).to.equal('table inet pg_test {}\ndelete table inet pg_test\n');
  });

  it('reads back ports, owners, counters and NAT from `nft -j list table` output (captured from nft 1.0.6)', () => {
    const captured = JSON.stringify({
      nftables: [
        { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } },
        { table: { family: 'inet', name: 'polygate', handle: 2 } },
        { chain: { family: 'inet', table: 'polygate', name: 'input', handle: 1, type: 'filter', hook: 'input', prio: 0, policy: 'accept' } },
        { chain: { family: 'inet', table: 'polygate', name: 'postrouting', handle: 2, type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' } },
        {
          rule: {
            family: 'inet', table: 'polygate', chain: 'input', handle: 3, comment: 'openvpn',
            expr: [
              { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: 443 } },
              { counter: { packets: 7, bytes: 420 } },
              { accept: null },
            ],
          },
        },
        {
          rule: {
            family: 'inet', table: 'polygate', chain: 'input', handle: 4, comment: 'wg:node_1',
            expr: [
              { match: { op: '==', left: { payload: { protocol: 'udp', field: 'dport' } }, right: 1194 } },
              { counter: { packets: 0, bytes: 0 } },
              { accept: null },
            ],
          },
        },
        {
          rule: {
            family: 'inet', table: 'polygate', chain: 'postrouting', handle: 5, comment: 'nat',
            expr: [
              { match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: { prefix: { addr: '10.8.0.0', len: 24 } } } },
              { match: { op: '!=', left: { payload: { protocol: 'ip', field: 'daddr' } }, right: { prefix: { addr: '10.8.0.0', len: 24 } } } },
              { match: { op: '==', left: { meta: { key: 'oifname' } }, right: 'eth0' } },
              { counter: { packets: 3, bytes: 180 } },
              { masquerade: null },
            ],
          },
        },
      ],
    });
    expect(parseTableJson(captured)).to.deep.equal({
      openPorts: [
        { port: 443, protocol: 'tcp', owner: 'openvpn', packets: 7, bytes: 420 },
        { port: 1194, protocol: 'udp', owner: 'wg:node_1', packets: 0, bytes: 0 },
      ],
      nat: [{ sourceCidr: '10.8.0.0/24', outInterface: 'eth0', packets: 3, bytes: 180 }],
    });
  });
});
