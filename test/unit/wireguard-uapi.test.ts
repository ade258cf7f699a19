import { expect } from 'chai';
import { uapiAddPeers, uapiRemovePeers } from '../../plugins/wireguard/uapi';

/* The UAPI `set=1` bodies the plugin sends wireguard-go (keys in hex, one allowed /32, blank-line end). */
const PUB = 'rHJ5qu8qxdDah1NJwPJ/CjLpOG/f6vIvN5D4RfLqGh8=';
const PSK = 'M0deLLM4Rlxs883CKkbg+78gAy5lllwWrJqREzl1z1E=';
const hex = (k: string) => Buffer.from(k, 'base64').toString('hex');

describe('WireGuard UAPI requests', () => {
  it('adds a peer with its preshared key, replacing its allowed IPs with the one address', () => {
    expect(uapiAddPeers([{ publicKey: PUB, presharedKey: PSK, address: '10.66.0.2/32' }])).to.equal(
      `set=1\npublic_key=${hex(PUB)}\npreshared_key=${hex(PSK)}\nreplace_allowed_ips=true\nallowed_ip=10.66.0.2/32\n\n`,
    );
    expect(hex(PUB)).to.have.length(64);
  });

  it('removes peers in one request', () => {
    expect(uapiRemovePeers([PUB, PSK])).to.equal(`set=1\npublic_key=${hex(PUB)}\nremove=true\npublic_key=${hex(PSK)}\nremove=true\n\n`);
  });

  it('refuses anything that is not a key or an IPv4 host (a newline would add a command)', () => {
    expect(() => uapiRemovePeers([`${PUB}\nlisten_port=1`])).to.throw(/WireGuard key/);
    expect(() => uapiAddPeers([{ publicKey: PUB, presharedKey: PSK, address: '10.66.0.2\nremove=true' }])).to.throw(/IPv4/);
  });
});
