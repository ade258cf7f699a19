import { expect } from 'chai';
import { renderClientConfig, renderInterface, renderPeers, hostAddress, assertWgKey } from '../../plugins/wireguard/render';

/* render.ts: the client config the apps import and the peer batches `wg addconf` reads. */
const CLIENT_PRIV = 'mKxh7F3CNntF258/zU+suqJwpwV3Y9iIJMhesHtlmkU=';
const SERVER_PUB = 'RTi/YSKsuUFeUh6GDYwGFJqGZcwoc+wdwzDGUjfLB0U=';
const PEER_PUB = 'rHJ5qu8qxdDah1NJwPJ/CjLpOG/f6vIvN5D4RfLqGh8=';
const PSK = 'M0deLLM4Rlxs883CKkbg+78gAy5lllwWrJqREzl1z1E=';

const base = {
  title: 'alice @ main',
  privateKey: CLIENT_PRIV,
  address: '10.66.0.2/32',
  dns: ['1.1.1.1', '9.9.9.9'],
  serverPublicKey: SERVER_PUB,
  presharedKey: PSK,
  endpointHost: 'vpn.example.com',
  endpointPort: 51820,
  persistentKeepalive: 25,
};

describe('WireGuard config rendering', () => {
  it('a client config holds the interface and one full-tunnel peer, exactly', () => {
    expect(renderClientConfig(base)).to.equal(
      [
        '# alice @ main',
        '[Interface]',
        `PrivateKey = ${CLIENT_PRIV}`,
        'Address = 10.66.0.2/32',
        'DNS = 1.1.1.1, 9.9.9.9',
        '',
        '[Peer]',
        `PublicKey = ${SERVER_PUB}`,
        `PresharedKey = ${PSK}`,
        'Endpoint = vpn.example.com:51820',
        'AllowedIPs = 0.0.0.0/0, ::/0',
        'PersistentKeepalive = 25',
        '',
      ].join('\n'),
    );
  });

  it('brackets an IPv6 endpoint and omits keepalive 0 and an empty DNS list', () => {
    const text = renderClientConfig({ ...base, endpointHost: '2001:db8::1', persistentKeepalive: 0, dns: [] });
    expect(text).to.include('Endpoint = [2001:db8::1]:51820');
    expect(text).to.not.match(/PersistentKeepalive|DNS/);
  });

  it('refuses values that would add lines of their own', () => {
    expect(() => renderClientConfig({ ...base, endpointHost: 'evil\nPostUp = rm -rf /' })).to.throw(/endpoint host/);
    expect(() => renderClientConfig({ ...base, presharedKey: `${PSK}\nX` })).to.throw(/preshared key/);
    expect(() => renderClientConfig({ ...base, address: '10.66.0.2/24' })).to.throw(/IPv4/);
    expect(() => renderClientConfig({ ...base, dns: ['1.1.1.1\n'] })).to.throw(/dns/);
    expect(() => renderClientConfig({ ...base, title: 'a\nb' })).to.throw(/title/);
  });

  it('peer batches: one section per peer with its preshared key and /32', () => {
    const text = renderPeers([
      { publicKey: PEER_PUB, presharedKey: PSK, address: '10.66.0.2' },
      { publicKey: SERVER_PUB, presharedKey: PSK, address: '10.66.0.3/32' },
    ]);
    expect(text.match(/\[Peer\]/g)).to.have.length(2);
    expect(text).to.include(`PublicKey = ${PEER_PUB}\nPresharedKey = ${PSK}\nAllowedIPs = 10.66.0.2/32\n`);
    expect(text).to.include('AllowedIPs = 10.66.0.3/32');
    expect(renderInterface({ privateKey: CLIENT_PRIV, listenPort: 51820, peers: [] })).to.equal(`[Interface]\nPrivateKey = ${CLIENT_PRIV}\nListenPort = 51820\n`);
  });

  it('keys are 32 bytes of base64; addresses single IPv4 hosts', () => {
    expect(assertWgKey(PSK, 'k')).to.equal(PSK);
    expect(() => assertWgKey('A'.repeat(43) + '=', 'k')).to.not.throw();
    expect(() => assertWgKey('B'.repeat(43) + '=', 'k'), 'last character with bits a 32-byte key cannot have').to.throw();
    expect(() => assertWgKey(PSK.slice(1), 'k')).to.throw();
    expect(hostAddress('10.66.0.9')).to.equal('10.66.0.9');
    expect(() => hostAddress('10.66.0.0/16')).to.throw();
  });
});
