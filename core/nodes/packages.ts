import type { Host } from '../hosts/host';
import { runChecked } from '../hosts/host';
import type { ProgramRequirement } from '../plugin/types';

/** A program a node needs and the Debian packages that bring it: the plugins' own lists. */
export type NodeRequirement = ProgramRequirement;

/** Fixed script; the program name arrives as "$1", never inside the script text. */
const HAS_PROGRAM = 'case "$1" in /*) test -x "$1" ;; *) command -v -- "$1" >/dev/null 2>&1 ;; esac';

async function hasProgram(host: Host, need: NodeRequirement): Promise<boolean> {
  if (need.unlessKernelModule && (await host.exists(`/sys/module/${need.unlessKernelModule}`).catch(() => false))) return true;
  for (const program of [need.program, ...(need.alsoAt ?? [])]) {
    const r = await host.run(['sh', '-c', HAS_PROGRAM, 'sh', program], { timeoutMs: 20_000 });
    if (r.code === 0) return true;
  }
  return false;
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
    const into = (await hasProgram(host, need)) ? present : missing;
    for (const pkg of need.debianPackages) into.add(pkg);
  }
  for (const p of missing) present.delete(p);
  if (missing.size === 0) return { present: [...present].sort(), installed: [] };
  const timeoutMs = options.timeoutMs ?? 15 * 60_000;
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  await runChecked(host, ['apt-get', 'update'], { env, timeoutMs });
  await runChecked(host, ['apt-get', 'install', '-y', '--no-install-recommends', ...[...missing].sort()], { env, timeoutMs });
  return { present: [...present].sort(), installed: [...missing].sort() };
}
