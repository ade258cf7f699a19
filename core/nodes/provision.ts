import type { CoreContext } from '../context';
import { NodeRecord } from '../db';
import { generateSshKeyPair, installAuthorizedKey, installRootAuthorizedKeyWithSudo, SshHost } from '../hosts/ssh-host';
import { runChecked, type Host } from '../hosts/host';
import { nodeServerId } from '../services/servers';
import { nodeMarkerFile } from './layout';
import { ensurePackages, type NodeRequirement } from './packages';
import type { NodeRuntime } from './runtime';

export interface ProvisionInput {
  ctx: CoreContext;
  nodeId: number;
  /** Host key the create-time preflight saw: the only one ever accepted for this node. */
  hostKeySha256: string;
  /** Directory on the node for everything polygate installs there. */
  root: string;
  /** Null when no plugins run (nothing is started on the node then). */
  runtime: NodeRuntime | null;
  connectTimeoutMs: number;
  /** Progress for the job record and the node's status message. */
  report(percent: number, message: string): Promise<void>;
}

/** Why provisioning stopped, worded for the node's status message. */
export class ProvisionError extends Error {}

/**
 * Installs a node from its stored password, step by step: host key pinned, root (or
 * passwordless sudo) checked, the panel's own ed25519 key installed (for root) and proven, the password dropped, the node's root
 * laid out, missing packages installed, the plugins started there, ports claimed and the
 * firewall applied. Returns the summary for the job record.
 */
export async function provisionNode(input: ProvisionInput): Promise<string> {
  const { ctx, nodeId, runtime, report } = input;
  const serverId = nodeServerId(nodeId);
  const node = await NodeRecord.findByPk(nodeId, { raw: true });
  if (!node) throw new ProvisionError('the node was deleted');
  if (!input.hostKeySha256.startsWith('SHA256:')) throw new ProvisionError('no host key was recorded by the preflight');
  // Pinned before anything else: every connection from here on must see this key.
  await NodeRecord.update({ ssh_host_key: input.hostKeySha256 }, { where: { id: nodeId } });

  let keyHost: SshHost | undefined;
  let handedOver = false;
  try {
    if (!node.ssh_private_key) {
      if (!node.ssh_secret) throw new ProvisionError('no SSH password is stored for this node');
      let password: string;
      try {
        password = ctx.secrets.open(node.ssh_secret);
      } catch {
        throw new ProvisionError('the stored SSH password cannot be decrypted (was the data directory key replaced?)');
      }
      await report(10, 'Connecting with the password (host key pinned at preflight)');
      const passwordHost = new SshHost(serverId, { host: node.ip_address, port: node.ssh_port, username: node.ssh_username, password, hostKeySha256: input.hostKeySha256, timeoutMs: input.connectTimeoutMs, keepaliveIntervalMs: 0 });
      const keys = generateSshKeyPair('ed25519', `polygate@${serverId}`);
      let keyUsername = node.ssh_username;
      try {
        const access = await requireRoot(passwordHost, node.ssh_username);
        if (access === 'sudo') {
          // The login is only a way in: the panel's key is installed for root and drives the node as root.
          await report(20, `Installing the panel's SSH key for root (through ${node.ssh_username}'s sudo)`);
          await installRootAuthorizedKeyWithSudo(passwordHost, keys.publicKey);
          keyUsername = 'root';
        } else {
          await report(20, "Installing the panel's SSH key");
          await installAuthorizedKey(passwordHost, keys.publicKey);
        }
      } finally {
        await passwordHost.close().catch(() => undefined);
      }
      keyHost = new SshHost(serverId, { host: node.ip_address, port: node.ssh_port, username: keyUsername, privateKey: keys.privateKey, hostKeySha256: input.hostKeySha256, timeoutMs: input.connectTimeoutMs });
      await report(30, "Checking the panel's SSH key");
      const proof = await keyHost.run(['id', '-u'], { timeoutMs: input.connectTimeoutMs }).catch((err: Error) => {
        const hint = keyUsername !== node.ssh_username ? " (the node's sshd must let root log in with a key: PermitRootLogin prohibit-password, Debian's default)" : '';
        throw new ProvisionError(`the installed key does not log in as ${keyUsername}${hint}: ${err.message}`);
      });
      if (proof.stdout.trim() !== '0') throw new ProvisionError(`the installed key logs in as uid ${proof.stdout.trim()}, not root`);
      // The key works: the password is not kept.
      await NodeRecord.update(
        { ssh_private_key: ctx.secrets.seal(keys.privateKey), ssh_secret: null, ssh_key_username: keyUsername === node.ssh_username ? null : keyUsername },
        { where: { id: nodeId } },
      );
    } else {
      // A re-run after a failure past this point: the key is already the credential.
      keyHost = runtime?.hostFor({ ...node, ssh_host_key: input.hostKeySha256 }) ?? new SshHost(serverId, { host: node.ip_address, port: node.ssh_port, username: node.ssh_username, privateKey: ctx.secrets.open(node.ssh_private_key), hostKeySha256: input.hostKeySha256, timeoutMs: input.connectTimeoutMs });
      await requireRoot(keyHost, node.ssh_key_username ?? node.ssh_username);
    }

    await report(40, `Laying out ${input.root}`);
    await keyHost.mkdirp(input.root, 0o700);
    await keyHost.writeFileAtomic(nodeMarkerFile(input.root), `${JSON.stringify({ managed_by: 'polygate', server: serverId, installed_at: ctx.clock.now().toISOString() })}\n`, 0o600);
    await NodeRecord.update({ install_root: input.root }, { where: { id: nodeId } });

    const needs: NodeRequirement[] = runtime?.requirements() ?? [];
    await report(50, 'Checking packages');
    const packages = await ensurePackages(keyHost, needs);
    const packagesNote = packages.installed.length > 0 ? `installed ${packages.installed.join(', ')}` : `packages already present${packages.present.length ? ` (${packages.present.join(', ')})` : ''}`;
    await report(60, `Packages: ${packagesNote}`);

    if (!runtime || runtime.protocols().length === 0) {
      await keyHost.close();
      return `Node provisioned: no protocol plugins run on the main server; ${packagesNote}`;
    }
    await report(70, `Starting ${runtime.protocols().join(', ')} on the node`);
    const fresh = (await NodeRecord.findByPk(nodeId, { raw: true }))!;
    handedOver = true;
    await runtime.attach(fresh, keyHost);
    await report(85, 'Applying users, ports and the firewall');
    const failures = await runtime.syncNode(nodeId);
    if (failures.length > 0) throw new ProvisionError(failures.join('; '));
    return `Node provisioned: ${runtime.protocols().join(', ')} running; ${packagesNote}${runtime.firewallEnabled ? '; firewall applied' : ''}`;
  } catch (err) {
    if (!handedOver) await keyHost?.close().catch(() => undefined);
    throw err;
  }
}

/**
 * Root, or a login with passwordless sudo (the panel's key is then installed for root), or stop
 * with the reason: every step writes system files and binds privileged ports.
 */
async function requireRoot(host: Host, username: string): Promise<'root' | 'sudo'> {
  const { stdout } = await runChecked(host, ['id', '-u'], { timeoutMs: 20_000 });
  if (stdout.trim() === '0') return 'root';
  const sudo = await host.run(['sudo', '-n', 'true'], { timeoutMs: 20_000 }).catch(() => ({ code: 127 }));
  if (sudo.code === 0) return 'sudo';
  throw new ProvisionError(`${username} is not root and has no passwordless sudo; polygate needs root on the node`);
}
