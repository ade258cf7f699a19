import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import type { HostProcess } from '../../core/hosts/host';
import { LocalHost } from '../../core/hosts/local-host';
// netns.ts imports this module too; both only call each other at run time.
import { endNamespaceProcesses } from './netns';

/** Why a VPN end-to-end suite cannot run here, or null. */
export function vpnLabMissing(binaries: string[][]): string | null {
  if (process.getuid?.() !== 0) return 'not root (network namespaces need root)';
  if (!existsSync('/dev/net/tun')) return '/dev/net/tun is missing';
  for (const argv of [['ip', '-V'], ['ping', '-V'], ...binaries]) {
    try {
      execFileSync(argv[0]!, argv.slice(1), { stdio: 'ignore' });
    } catch {
      return `${argv[0]} is not installed (see scripts/ci/install-system-packages.sh)`;
    }
  }
  return null;
}

export async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs: number, stepMs = 100): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

export async function exitedWithin(p: HostProcess, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const done = await Promise.race([p.exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))]);
  clearTimeout(timer);
  return done;
}

/**
 * Network namespaces joined by veth pairs, created by a test and removed by it (by the names
 * it made, never by pattern). Traffic stays inside them.
 */
export class NetLab {
  readonly suffix = randomBytes(3).toString('hex');
  readonly dir = `/tmp/pg-lab-${this.suffix}`;
  private readonly namespaces: string[] = [];
  private readonly processes: HostProcess[] = [];
  private vethCount = 0;
  private readonly rootLinks: string[] = [];

  ns(role: string): string {
    return `pg-${role}-${this.suffix}`;
  }

  private ip(...args: string[]): void {
    execFileSync('ip', args, { stdio: 'pipe' });
  }

  async addNamespace(role: string): Promise<LocalHost> {
    const name = this.ns(role);
    this.ip('netns', 'add', name);
    this.namespaces.push(name);
    this.ip('-n', name, 'link', 'set', 'lo', 'up');
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    return new LocalHost({ id: role, netns: name });
  }

  /** A veth pair between two namespaces with an address on each end (same /24). */
  link(roleA: string, addrA: string, roleB: string, addrB: string): void {
    const n = this.vethCount++;
    const a = `pgva${n}${this.suffix}`;
    const b = `pgvb${n}${this.suffix}`;
    this.ip('link', 'add', a, 'netns', this.ns(roleA), 'type', 'veth', 'peer', 'name', b, 'netns', this.ns(roleB));
    this.ip('-n', this.ns(roleA), 'addr', 'add', `${addrA}/24`, 'dev', a);
    this.ip('-n', this.ns(roleB), 'addr', 'add', `${addrB}/24`, 'dev', b);
    this.ip('-n', this.ns(roleA), 'link', 'set', a, 'up');
    this.ip('-n', this.ns(roleB), 'link', 'set', b, 'up');
  }

  /**
   * A veth pair between the root namespace (where a panel under test runs) and a namespace of
   * the lab, addresses on each end (same /24). Answers the root-side name, whose
   * /sys/class/net/<name>/statistics count every byte between the two; removed at cleanup.
   */
  linkRoot(role: string, rootAddr: string, nsAddr: string): string {
    const n = this.vethCount++;
    const a = `pgvr${n}${this.suffix}`;
    const b = `pgvn${n}${this.suffix}`;
    this.ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', this.ns(role));
    this.rootLinks.push(a);
    this.ip('addr', 'add', `${rootAddr}/24`, 'dev', a);
    this.ip('link', 'set', a, 'up');
    this.ip('-n', this.ns(role), 'addr', 'add', `${nsAddr}/24`, 'dev', b);
    this.ip('-n', this.ns(role), 'link', 'set', b, 'up');
    return a;
  }

  /**
   * Ends whatever still runs in the lab's namespaces (daemons that outlive their panel by
   * design), by PID: SIGTERM, then SIGKILL for those still there after `graceMs`.
   */
  async endProcesses(graceMs = 3000): Promise<void> {
    await endNamespaceProcesses([...this.namespaces], graceMs);
  }

  route(role: string, destination: string, via: string): void {
    this.ip('-n', this.ns(role), 'route', 'add', destination, 'via', via);
  }

  track(p: HostProcess): HostProcess {
    this.processes.push(p);
    return p;
  }

  async cleanup(): Promise<void> {
    for (const p of this.processes) {
      p.kill('SIGKILL');
      await exitedWithin(p, 5000);
    }
    for (const link of this.rootLinks.splice(0)) {
      try {
        this.ip('link', 'del', link);
      } catch {
        /* removed with its namespace */
      }
    }
    for (const ns of this.namespaces.splice(0)) {
      try {
        this.ip('netns', 'del', ns);
      } catch {
        /* already gone */
      }
    }
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}

export interface OpenVpnTestClient {
  proc: HostProcess;
  lines: string[];
  connected(): boolean;
  authFailed(): boolean;
  /** The client's own link counters from its --status file (TCP/UDP read + write bytes). */
  linkBytes(): Promise<{ read: number; write: number }>;
  stop(): Promise<void>;
}

/** A real `openvpn` client in `host`'s namespace, with a 1 s --status file. */
export async function startOpenVpnClient(
  lab: NetLab,
  host: LocalHost,
  name: string,
  profile: string,
  credentials: [string, string],
): Promise<OpenVpnTestClient> {
  const profilePath = `${lab.dir}/${name}.ovpn`;
  const credsPath = `${lab.dir}/${name}.creds`;
  const statusPath = `${lab.dir}/${name}.status`;
  await fs.writeFile(profilePath, profile, { mode: 0o600 });
  await fs.writeFile(credsPath, `${credentials[0]}\n${credentials[1]}\n`, { mode: 0o600 });
  await fs.rm(statusPath, { force: true });
  const lines: string[] = [];
  const argv = ['openvpn', '--config', profilePath, '--auth-user-pass', credsPath, '--status', statusPath, '1', '--disable-dco', '--connect-retry', '1', '1', '--auth-retry', 'none', '--auth-nocache'];
  const proc = lab.track(host.spawn(argv, { onOutput: (chunk) => lines.push(...chunk.split('\n')) }));
  return {
    proc,
    lines,
    connected: () => lines.some((l) => l.includes('Initialization Sequence Completed')),
    authFailed: () => lines.some((l) => l.includes('AUTH_FAILED') || l.includes('auth-failure')),
    async linkBytes() {
      const text = await fs.readFile(statusPath, 'utf8').catch(() => '');
      const num = (label: string) => Number(new RegExp(`^${label},(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
      return { read: num('TCP/UDP read bytes'), write: num('TCP/UDP write bytes') };
    },
    async stop() {
      proc.kill('SIGTERM');
      if (!(await exitedWithin(proc, 5000))) {
        proc.kill('SIGKILL');
        await exitedWithin(proc, 5000);
      }
    },
  };
}

/** `ping` from inside a namespace; resolves with whether any reply came back. */
export async function ping(host: LocalHost, target: string, count = 3, size = 56, intervalS = 0.2): Promise<boolean> {
  const r = await host.run(['ping', '-n', '-q', '-c', String(count), '-i', String(intervalS), '-s', String(size), '-W', '2', target], { timeoutMs: 60_000 });
  return r.code === 0;
}
