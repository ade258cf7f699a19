import { expect } from 'chai';
import { freeSubnet, ipv4Range, nthSubnet, parseIpv4Subnet, subnetsOverlap } from '../../core';

/*
 * IPv4 pool carving. Proves: CIDRs are parsed to network/netmask and refused with host bits
 * set, outside the prefix limits or malformed; the n-th sub-network is computed and bounded;
 * overlap is detected at the edges (containment and adjacency); freeSubnet skips taken ranges
 * and says when the pool is exhausted.
 */

describe('kit: IPv4 subnets', () => {
  it('parses a CIDR into network and netmask, refusing host bits, bad prefixes and junk', () => {
    expect(parseIpv4Subnet('10.8.0.0/24')).to.deep.equal({ network: '10.8.0.0', netmask: '255.255.255.0', prefix: 24 });
    expect(parseIpv4Subnet('10.8.0.0/16')).to.deep.equal({ network: '10.8.0.0', netmask: '255.255.0.0', prefix: 16 });
    expect(() => parseIpv4Subnet('10.8.0.1/24', 'pool')).to.throw(/pool 10\.8\.0\.1\/24 has host bits set; the network is 10\.8\.0\.0\/24/);
    expect(() => parseIpv4Subnet('10.0.0.0/8')).to.throw(/prefix must be 16\.\.29/);
    expect(() => parseIpv4Subnet('10.0.0.0/30')).to.throw(/prefix must be 16\.\.29/);
    expect(parseIpv4Subnet('10.0.0.0/8', 'x', { minPrefix: 8 }).prefix).to.equal(8);
    for (const bad of ['10.8.0.0', '10.8.0.256/24', 'a.b.c.d/24', 24, null, '10.8.0.0/24 ']) {
      expect(() => parseIpv4Subnet(bad), String(bad)).to.throw(/IPv4 CIDR/);
    }
  });

  it('carves the n-th sub-network and refuses indexes outside the pool', () => {
    expect(nthSubnet('10.8.0.0/16', 24, 0)).to.equal('10.8.0.0/24');
    expect(nthSubnet('10.8.0.0/16', 24, 255)).to.equal('10.8.255.0/24');
    expect(nthSubnet('10.8.0.0/22', 26, 5)).to.equal('10.8.1.64/26');
    expect(() => nthSubnet('10.8.0.0/16', 24, 256)).to.throw(/only 256 \/24 networks/);
    expect(() => nthSubnet('10.8.0.0/24', 16, 0)).to.throw(/does not fit/);
  });

  it('detects overlap by containment and shared edges, and not for adjacent networks', () => {
    expect(subnetsOverlap('10.8.0.0/16', '10.8.3.0/24')).to.equal(true);
    expect(subnetsOverlap('10.8.3.0/24', '10.8.0.0/16')).to.equal(true);
    expect(subnetsOverlap('10.8.0.0/24', '10.8.1.0/24')).to.equal(false);
    expect(subnetsOverlap('10.8.0.0/23', '10.8.1.0/24')).to.equal(true);
    expect(ipv4Range('10.8.1.0/24')).to.deep.equal([168296704, 168296959]);
  });

  it('finds the first free sub-network around taken ones and reports exhaustion', () => {
    expect(freeSubnet('10.8.0.0/16', 24, [])).to.equal('10.8.0.0/24');
    expect(freeSubnet('10.8.0.0/16', 24, ['10.8.0.0/23', '10.8.2.128/25'])).to.equal('10.8.3.0/24');
    expect(freeSubnet('10.8.0.0/16', 24, [], 7)).to.equal('10.8.7.0/24');
    expect(() => freeSubnet('10.8.0.0/23', 24, ['10.8.0.0/24', '10.8.1.0/24'])).to.throw(/no free \/24/);
  });
});
