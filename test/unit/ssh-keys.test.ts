import { expect } from 'chai';
import { utils } from 'ssh2';
import { generateSshKeyPair } from '../../core/hosts/ssh/keys';

/**
 * The per-node key provisioning installs must be one ssh2 (and sshd) can read: ssh2's own
 * generator makes an unreadable ed25519 pair about once in 256 (mscdex/ssh2#1390), so 2,000
 * pairs without the check would almost surely include one (P(none) ≈ e^-8).
 */
describe('SSH key pairs', () => {
  it('every generated ed25519 pair parses back, private and public', () => {
    const bad: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const keys = generateSshKeyPair('ed25519', 'polygate@node');
      if (utils.parseKey(keys.privateKey) instanceof Error || utils.parseKey(keys.publicKey) instanceof Error) bad.push(i);
      expect(keys.publicKey).to.match(/^ssh-ed25519 [A-Za-z0-9+/]{68} polygate@node$/);
    }
    expect(bad).to.deep.equal([]);
  });
});
