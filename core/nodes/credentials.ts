import type { NodeRecord } from '../db';
import type { SshConnectionOptions } from '../hosts/ssh-host';
import type { SecretBox } from '../secrets';

type NodeLogin = Pick<NodeRecord, 'ip_address' | 'ssh_port' | 'ssh_username' | 'ssh_secret' | 'ssh_private_key' | 'ssh_host_key'> & Partial<Pick<NodeRecord, 'ssh_key_username'>>;

/**
 * How the panel logs in to a node: its own key once provisioning installed it (the password
 * is gone by then; the key may log in as root for a sudo login), the sealed password before; always against the pinned host key when one
 * is recorded. Throws when nothing usable is stored.
 */
export function nodeSshOptions(secrets: Pick<SecretBox, 'open'>, node: NodeLogin, extra: Partial<SshConnectionOptions> = {}): SshConnectionOptions {
  const base = { host: node.ip_address, port: node.ssh_port, username: node.ssh_username, hostKeySha256: node.ssh_host_key ?? undefined, ...extra };
  if (node.ssh_private_key) {
    let privateKey: string;
    try {
      privateKey = secrets.open(node.ssh_private_key);
    } catch {
      throw new Error("the node's stored SSH key cannot be decrypted (was the data directory key replaced?)");
    }
    return { ...base, username: node.ssh_key_username ?? node.ssh_username, privateKey };
  }
  if (node.ssh_secret) {
    try {
      return { ...base, password: secrets.open(node.ssh_secret) };
    } catch {
      throw new Error('the stored SSH password cannot be decrypted (was the data directory key replaced?)');
    }
  }
  throw new Error('no SSH credentials are stored for this node');
}
