import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import type { HostProcess } from '../../core/hosts/host';
import type { LocalHost } from '../../core/hosts/local-host';
import { exitedWithin, until } from './vpn-lab';

/** Pids of every process in a network namespace (none when it does not exist). */
export function namespacePids(ns: string): number[] {
  try {
    return execFileSync('ip', ['netns', 'pids', ns], { stdio: 'pipe' }).toString().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** A process's program name (`/proc/<pid>/comm`), or null when it is gone. */
export const commOf = (pid: number): string | null => {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return null;
  }
};

/**
 * The VPN daemons running in a namespace, by program name (`/proc/<pid>/comm`), pids sorted:
 * what "the same daemons are still running" is compared on, whatever plugin started them.
 */
export function daemonPids(ns: string, programs: RegExp = /^(openvpn|wireguard-go|ocserv.*|charon|xl2tpd|pppd)$/): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const pid of namespacePids(ns)) {
    const comm = commOf(pid);
    if (comm && programs.test(comm)) (out[comm] ??= []).push(pid);
  }
  // Sorted by program and pid, so two readings compare equal when the same processes run.
  return Object.fromEntries(
    Object.keys(out)
      .sort()
      .map((comm) => [comm, out[comm]!.sort((a, b) => a - b)]),
  );
}

/**
 * Ends whatever still runs in namespaces a test made (a detached daemon a failed test left, a
 * client), by pid: TERM first (wireguard-go removes its UAPI socket in the shared
 * /var/run/wireguard on the way out), KILL what is left after `graceMs`.
 */
export async function endNamespaceProcesses(namespaces: string[], graceMs = 3000): Promise<void> {
  const pids = namespaces.flatMap(namespacePids);
  const signal = (sig: NodeJS.Signals) =>
    pids.forEach((pid) => {
      try {
        process.kill(pid, sig);
      } catch {
        /* gone */
      }
    });
  signal('SIGTERM');
  await until(() => pids.every((pid) => !existsSync(`/proc/${pid}`)), 'namespace processes to exit', graceMs).catch(() => signal('SIGKILL'));
}

/**
 * A veth pair with one end in the root namespace (where the panel runs, as a panel reaches
 * its nodes) and the other in `ns`: `<net>.<index>.1` on the root side, `.2` in the namespace.
 * Returns the root side's name (take it down to cut the panel off). The caller deletes it.
 */
export function linkRoot(ns: string, net: string, index: number, suffix: string): string {
  const a = `pgr${index}${suffix}`;
  const b = `pgn${index}${suffix}`;
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
  ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', ns);
  ip('addr', 'add', `${net}.${index}.1/24`, 'dev', a);
  ip('link', 'set', a, 'up');
  ip('-n', ns, 'addr', 'add', `${net}.${index}.2/24`, 'dev', b);
  ip('-n', ns, 'link', 'set', b, 'up');
  return a;
}

/** Removes links made by `linkRoot` (gone already when their namespace was deleted first). */
export function deleteLinks(links: string[]): void {
  for (const link of links.splice(0)) {
    try {
      execFileSync('ip', ['link', 'del', link], { stdio: 'pipe' });
    } catch {
      /* removed with its namespace */
    }
  }
}

/** A ping left running across an event (a panel restart, an outage); `stop()` says how many answers came back. */
export interface PingRun {
  stop(): Promise<{ sent: number; received: number; output: string }>;
}

/** Pings `target` from `host` every `intervalS` until stopped (SIGINT, so ping prints its summary). */
export function startPing(host: LocalHost, target: string, intervalS = 0.2, size = 56): PingRun {
  let output = '';
  const proc: HostProcess = host.spawn(['ping', '-n', '-q', '-i', String(intervalS), '-s', String(size), '-W', '2', target], { onOutput: (c) => (output += c) });
  return {
    async stop() {
      proc.kill('SIGINT');
      if (!(await exitedWithin(proc, 5000))) {
        proc.kill('SIGKILL');
        await exitedWithin(proc, 5000);
      }
      const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(output);
      return { sent: Number(m?.[1] ?? 0), received: Number(m?.[2] ?? 0), output };
    },
  };
}
