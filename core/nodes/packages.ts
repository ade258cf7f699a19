import type { Host } from '../hosts/host';
import { runChecked } from '../hosts/host';
import type { ProtocolId } from '../protocols/table';

/** A program a node needs and the Debian package that brings it. */
export interface NodeRequirement {
  program: string;
  debianPackage: string;
}

/**
 * What each protocol's plugin runs on a node (the programs its default configuration
 * starts), plus nft for the node's firewall. Absolute paths are checked as files, bare names
 * on the login PATH.
 */
export const NODE_REQUIREMENTS: Readonly<Record<ProtocolId | 'firewall', readonly NodeRequirement[]>> = {
  openvpn: [{ program: 'openvpn', debianPackage: 'openvpn' }],
  l2tp: [
    { program: '/usr/lib/ipsec/charon', debianPackage: 'charon-systemd' },
    { program: 'swanctl', debianPackage: 'strongswan-swanctl' },
    { program: 'xl2tpd', debianPackage: 'xl2tpd' },
    { program: '/usr/sbin/pppd', debianPackage: 'ppp' },
  ],
  cisco: [
    { program: 'ocserv', debianPackage: 'ocserv' },
    { program: 'occtl', debianPackage: 'ocserv' },
  ],
  // wireguard-go only matters without the kernel module; the plugin checks which one it can use.
  wireguard: [{ program: 'wg', debianPackage: 'wireguard-tools' }],
  firewall: [{ program: 'nft', debianPackage: 'nftables' }],
};

/** Fixed script; the program name arrives as "$1", never inside the script text. */
const HAS_PROGRAM = 'case "$1" in /*) test -x "$1" ;; *) command -v -- "$1" >/dev/null 2>&1 ;; esac';

async function hasProgram(host: Host, program: string): Promise<boolean> {
  const r = await host.run(['sh', '-c', HAS_PROGRAM, 'sh', program], { timeoutMs: 20_000 });
  return r.code === 0;
}

export interface PackagesOutcome {
  /** Packages that were already present (every program they bring found). */
  present: string[];
  /** Packages this call installed. */
  installed: string[];
}

/**
 * Installs the Debian packages whose programs are missing, and only those: a node that has
 * everything is not touched (no apt-get runs). Idempotent.
 */
export async function ensurePackages(host: Host, needs: readonly NodeRequirement[], options: { timeoutMs?: number } = {}): Promise<PackagesOutcome> {
  const missing = new Set<string>();
  const present = new Set<string>();
  for (const need of needs) {
    if (await hasProgram(host, need.program)) present.add(need.debianPackage);
    else missing.add(need.debianPackage);
  }
  for (const p of missing) present.delete(p);
  if (missing.size === 0) return { present: [...present].sort(), installed: [] };
  const timeoutMs = options.timeoutMs ?? 15 * 60_000;
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  await runChecked(host, ['apt-get', 'update'], { env, timeoutMs });
  await runChecked(host, ['apt-get', 'install', '-y', '--no-install-recommends', ...[...missing].sort()], { env, timeoutMs });
  return { present: [...present].sort(), installed: [...missing].sort() };
}
