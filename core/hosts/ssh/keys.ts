import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { utils as sshUtils } from 'ssh2';
import { invalid } from '../../errors';
import { HostError, runChecked, type Host } from '../host';

/** An SSH key pair in OpenSSH format. */
export interface SshKeyPair {
  /** `-----BEGIN OPENSSH PRIVATE KEY-----…`, unencrypted; store it encrypted at rest. */
  privateKey: string;
  /** One `authorized_keys` line: `ssh-ed25519 AAAA… comment`. */
  publicKey: string;
}

/**
 * Generates the key the main server uses to log in to nodes.
 *
 * @example
 * const { privateKey, publicKey } = generateSshKeyPair('ed25519', 'polygate@main');
 */
export function generateSshKeyPair(type: 'ed25519' | 'rsa' = 'ed25519', comment = 'polygate'): SshKeyPair {
  const safeComment = comment.replace(/[^A-Za-z0-9_.@:-]/g, '_').slice(0, 64);
  const generate = () => (type === 'rsa' ? sshUtils.generateKeyPairSync('rsa', { bits: 3072, comment: safeComment }) : sshUtils.generateKeyPairSync('ed25519', { comment: safeComment }));
  // ssh2 strips leading zero bytes from an ed25519 public key, so about 1 pair in 256 is one
  // neither ssh2 nor sshd accepts (mscdex/ssh2#1390, #1513): keep only a pair that parses.
  let keys = generate();
  for (let attempt = 1; attempt < 32 && !parsesBack(keys); attempt++) keys = generate();
  if (!parsesBack(keys)) throw new Error('could not generate an SSH key pair that parses back');
  const publicKey = keys.public.trim();
  return { privateKey: keys.private, publicKey: publicKey.includes(' ', publicKey.indexOf(' ') + 1) ? publicKey : `${publicKey} ${safeComment}` };
}

function parsesBack(keys: { private: string; public: string }): boolean {
  return !(sshUtils.parseKey(keys.private) instanceof Error) && !(sshUtils.parseKey(keys.public) instanceof Error);
}

const PUBLIC_KEY_RE = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) ([A-Za-z0-9+/]+={0,3})(?: ([\x20-\x7e]{0,200}))?$/;

/**
 * Adds `publicKey` to `~/.ssh/authorized_keys` of the user the host runs programs as,
 * unless a line with the same key (type and blob, whatever the comment) is there already.
 * Sets `~/.ssh` to 0700 and the file to 0600 (what sshd's StrictModes demands), writing the
 * file atomically.
 *
 * @example
 * await installAuthorizedKey(new SshHost('node_3', { host, username: 'root', password }), keys.publicKey);
 */
export async function installAuthorizedKey(host: Host, publicKey: string): Promise<{ installed: boolean; path: string }> {
  const line = publicKey.trim();
  const m = PUBLIC_KEY_RE.exec(line);
  if (!m) throw invalid('public key must be one OpenSSH public key line (e.g. "ssh-ed25519 AAAA… comment")');
  const { stdout } = await runChecked(host, ['printenv', 'HOME'], { timeoutMs: 20_000 });
  const home = stdout.trim();
  if (!home.startsWith('/')) throw new HostError(host.id, 'failed', `cannot find the home directory on ${host.id} (HOME=${JSON.stringify(home)})`);
  const dir = path.posix.join(home, '.ssh');
  const file = path.posix.join(dir, 'authorized_keys');
  await host.mkdirp(dir, 0o700);
  let existing = '';
  if (await host.exists(file)) existing = (await host.readFile(file)).toString('utf8');
  if (holdsKey(existing, m)) {
    await runChecked(host, ['chmod', '600', '--', file], { timeoutMs: 20_000 });
    return { installed: false, path: file };
  }
  const prefix = existing === '' || existing.endsWith('\n') ? existing : `${existing}\n`;
  await host.writeFileAtomic(file, `${prefix}${line}\n`, 0o600);
  return { installed: true, path: file };
}

/** Options may precede the key type in authorized_keys: a line holds the key when type + blob appear in it. */
function holdsKey(authorizedKeys: string, key: RegExpExecArray): boolean {
  return authorizedKeys.split('\n').some((l) => {
    const fields = l.trim().split(/\s+/);
    const i = fields.indexOf(key[1]!);
    return i >= 0 && fields[i + 1] === key[2];
  });
}

/**
 * Adds `publicKey` to root's `authorized_keys` through passwordless sudo (`sudo -n`) of the
 * login the host runs programs as, unless it is there already; same modes and atomic write as
 * `installAuthorizedKey`. Lets a node added with a sudo login be driven as root with the
 * panel's key afterwards (sshd's default `PermitRootLogin prohibit-password` allows that).
 */
export async function installRootAuthorizedKeyWithSudo(host: Host, publicKey: string): Promise<{ installed: boolean; path: string }> {
  const line = publicKey.trim();
  const m = PUBLIC_KEY_RE.exec(line);
  if (!m) throw invalid('public key must be one OpenSSH public key line (e.g. "ssh-ed25519 AAAA… comment")');
  const sudo = (argv: readonly string[], stdin?: string) => runChecked(host, ['sudo', '-n', '--', ...argv], { timeoutMs: 20_000, stdin });
  const home = (await sudo(['getent', 'passwd', 'root'])).stdout.trim().split(':')[5] ?? '';
  if (!home.startsWith('/')) throw new HostError(host.id, 'failed', `cannot find root's home directory on ${host.id}`);
  const dir = path.posix.join(home, '.ssh');
  const file = path.posix.join(dir, 'authorized_keys');
  await sudo(['mkdir', '-p', '--', dir]);
  await sudo(['chmod', '700', '--', dir]);
  const current = await host.run(['sudo', '-n', '--', 'cat', '--', file], { timeoutMs: 20_000 });
  const existing = current.code === 0 ? current.stdout : '';
  if (holdsKey(existing, m)) {
    await sudo(['chmod', '600', '--', file]);
    return { installed: false, path: file };
  }
  const prefix = existing === '' || existing.endsWith('\n') ? existing : `${existing}\n`;
  const tmp = `${file}.polygate-${randomBytes(6).toString('hex')}.tmp`;
  await sudo(['tee', '--', tmp], `${prefix}${line}\n`);
  await sudo(['chmod', '600', '--', tmp]);
  await sudo(['mv', '-f', '--', tmp, file]);
  return { installed: true, path: file };
}

/** The `authorized_keys` line of an OpenSSH private key (what `generateSshKeyPair` paired with it). */
export function publicKeyOf(privateKey: string, comment = 'polygate'): string {
  const parsed = sshUtils.parseKey(privateKey);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key instanceof Error) throw invalid('not an OpenSSH private key');
  return `${key.type} ${key.getPublicSSH().toString('base64')} ${comment}`;
}

/**
 * Removes every line carrying `publicKey` (type and blob, whatever the comment or options)
 * from `~/.ssh/authorized_keys` of the user the host runs programs as; other lines are kept
 * byte for byte. Returns whether a line was removed.
 */
export async function removeAuthorizedKey(host: Host, publicKey: string): Promise<{ removed: boolean; path: string }> {
  const m = PUBLIC_KEY_RE.exec(publicKey.trim());
  if (!m) throw invalid('public key must be one OpenSSH public key line (e.g. "ssh-ed25519 AAAA… comment")');
  const { stdout } = await runChecked(host, ['printenv', 'HOME'], { timeoutMs: 20_000 });
  const home = stdout.trim();
  if (!home.startsWith('/')) throw new HostError(host.id, 'failed', `cannot find the home directory on ${host.id} (HOME=${JSON.stringify(home)})`);
  const file = path.posix.join(home, '.ssh', 'authorized_keys');
  if (!(await host.exists(file))) return { removed: false, path: file };
  const lines = (await host.readFile(file)).toString('utf8').split('\n');
  const kept = lines.filter((l) => !holdsKey(l, m));
  if (kept.length === lines.length) return { removed: false, path: file };
  await host.writeFileAtomic(file, kept.join('\n'), 0o600);
  return { removed: true, path: file };
}
