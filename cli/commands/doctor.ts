import { constants as fsConstants, accessSync, existsSync, readFileSync, statSync } from 'node:fs';
import dgram from 'node:dgram';
import net from 'node:net';
import path from 'node:path';
import type { Config } from '../../core/config';
import { defaultPortsOf } from '../../core/config';
import { findPgTool } from '../../core/backup/database';
import { daemonRunning } from '../../core/control';
import type { ProgramRequirement } from '../../core/plugin/types';
import { PROTOCOLS } from '../../core/protocols/table';
import { allPluginRequirements, FIREWALL_REQUIREMENTS, PANEL_REQUIREMENTS } from '../../core/requirements';
import { cliConfig, type GlobalOptions } from '../config';
import { EXIT } from '../exit-codes';

export type CheckState = 'ok' | 'missing' | 'warn' | 'info';

export interface Check {
  group: 'binaries' | 'kernel' | 'ports' | 'permissions' | 'firewall';
  name: string;
  state: CheckState;
  detail: string;
  /** What to do about it (the Debian package to install, the setting to change). */
  fix?: string;
}

interface Program {
  name: string;
  /** Debian/Ubuntu package that ships it. */
  pkg: string;
  /** Plugin that needs it; `core` when the panel itself does. */
  neededBy: string;
  /** Places outside PATH where Debian installs it. */
  alsoAt?: string[];
  /** Needed only when this is false (wireguard-go: only without the kernel module). */
  unlessKernelModule?: string;
}

/** The panel's own programs, then each plugin's as it declares them (one list per plugin, in the plugin). */
function programs(): Program[] {
  const of = (neededBy: string, list: readonly ProgramRequirement[]): Program[] =>
    list.map((r) => ({ name: r.program, pkg: r.debianPackages.join(' '), neededBy, ...(r.alsoAt ? { alsoAt: [...r.alsoAt] } : {}), ...(r.unlessKernelModule ? { unlessKernelModule: r.unlessKernelModule } : {}) }));
  return [...of('core', PANEL_REQUIREMENTS), ...of('firewall', FIREWALL_REQUIREMENTS), ...allPluginRequirements().flatMap((p) => of(p.plugin, p.requirements))];
}

/** Where `name` is on PATH (plus the usual sbin directories, which a non-root PATH may lack). */
export function findProgram(name: string, alsoAt: string[] = [], dirs: readonly string[] = defaultProgramDirs()): string | null {
  for (const candidate of [...dirs.map((d) => path.join(d, name)), ...alsoAt]) {
    try {
      accessSync(candidate, fsConstants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

const defaultProgramDirs = (): string[] => [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/local/sbin', '/usr/sbin', '/sbin'];

function tryBind(port: number, protocol: 'tcp' | 'udp', host: string): Promise<NodeJS.ErrnoException | null> {
  return new Promise((resolve) => {
    if (protocol === 'tcp') {
      const s = net.createServer();
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e));
      s.listen(port, host, () => s.close(() => resolve(null)));
    } else {
      const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
      s.once('error', (e: NodeJS.ErrnoException) => {
        s.close();
        resolve(e);
      });
      s.bind(port, host, () => s.close(() => resolve(null)));
    }
  });
}

const readText = (file: string): string | null => {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
};

/** Everything the daemon and its enabled plugins need on this machine, and what to install for each missing part. */
export async function runChecks(config: Config, options: { programDirs?: string[] } = {}): Promise<Check[]> {
  const checks: Check[] = [];
  const enabled = new Set(config.plugins);
  const isRoot = process.getuid?.() === 0;
  const needed = (p: Program) => p.neededBy === 'core' || (p.neededBy === 'firewall' ? config.firewall === 'auto' : enabled.has(p.neededBy));

  for (const p of programs()) {
    if (p.unlessKernelModule && existsSync(`/sys/module/${p.unlessKernelModule}`)) {
      checks.push({ group: 'binaries', name: p.name, state: 'info', detail: `not needed: the ${p.unlessKernelModule} kernel module is loaded` });
      continue;
    }
    // Given directories (tests) replace every default place, the fixed ones included.
    const found = options.programDirs ? findProgram(p.name, [], options.programDirs) : findProgram(p.name, p.alsoAt);
    const why = p.neededBy === 'core' ? 'the panel' : p.neededBy === 'firewall' ? 'POLYGATE_FIREWALL=auto' : `plugin ${p.neededBy}`;
    if (found) checks.push({ group: 'binaries', name: p.name, state: 'ok', detail: found });
    else if (needed(p)) checks.push({ group: 'binaries', name: p.name, state: 'missing', detail: `needed by ${why}`, fix: `apt-get install --no-install-recommends ${p.pkg}` });
    else checks.push({ group: 'binaries', name: p.name, state: 'info', detail: `not installed; needed only by ${why}, which is not enabled`, fix: `apt-get install --no-install-recommends ${p.pkg}` });
  }
  if (config.databaseUrlResolved.startsWith('postgres')) {
    for (const name of ['pg_dump', 'pg_restore'] as const) {
      let found: string | null;
      try {
        found = findPgTool(name);
      } catch {
        found = null;
      }
      checks.push(found ? { group: 'binaries', name, state: 'ok', detail: found } : { group: 'binaries', name, state: 'missing', detail: 'needed by polygate backup/restore on PostgreSQL', fix: 'apt-get install postgresql-client (at least the server major version)' });
    }
  }

  const vpnEnabled = config.plugins.length > 0;
  const tun = existsSync('/dev/net/tun') && statSync('/dev/net/tun').isCharacterDevice();
  checks.push(tun ? { group: 'kernel', name: '/dev/net/tun', state: 'ok', detail: 'TUN device present' } : { group: 'kernel', name: '/dev/net/tun', state: vpnEnabled ? 'missing' : 'info', detail: 'no TUN device (OpenVPN, ocserv, wireguard-go need it)', fix: 'modprobe tun; in a container start it with --device /dev/net/tun (LXC: lxc.cgroup2.devices.allow = c 10:200 rwm)' });
  const netns = existsSync('/proc/self/ns/net');
  checks.push(netns ? { group: 'kernel', name: 'network namespaces', state: 'ok', detail: '/proc/self/ns/net present' } : { group: 'kernel', name: 'network namespaces', state: 'warn', detail: 'kernel without network namespaces (only the integration tests need them)', fix: 'a kernel built with CONFIG_NET_NS' });
  const nftModule = existsSync('/sys/module/nf_tables') || existsSync('/proc/net/netfilter');
  checks.push(nftModule ? { group: 'kernel', name: 'nftables', state: 'ok', detail: 'nf_tables available' } : { group: 'kernel', name: 'nftables', state: config.firewall === 'auto' ? 'warn' : 'info', detail: 'nf_tables module not loaded (it usually loads on first use)', fix: 'modprobe nf_tables' });
  const forward = readText('/proc/sys/net/ipv4/ip_forward');
  checks.push(forward === '1' ? { group: 'kernel', name: 'ip_forward', state: 'ok', detail: 'net.ipv4.ip_forward = 1' } : { group: 'kernel', name: 'ip_forward', state: vpnEnabled ? 'warn' : 'info', detail: `net.ipv4.ip_forward = ${forward ?? 'unknown'}: clients connect but reach nothing past the server`, fix: "echo 'net.ipv4.ip_forward=1' > /etc/sysctl.d/99-polygate.conf && sysctl --system" });

  const running = await daemonRunning(config.dataDir);
  const ports: { port: number; protocol: 'tcp' | 'udp'; owner: string; setting: string }[] = [{ port: config.port, protocol: 'tcp', owner: 'panel', setting: 'POLYGATE_PORT' }];
  for (const spec of PROTOCOLS) {
    if (!enabled.has(spec.pluginName)) continue;
    for (const d of defaultPortsOf(config, spec)) ports.push({ port: d.port, protocol: d.protocol, owner: spec.pluginName, setting: `POLYGATE_${spec.id.toUpperCase()}_PORT` });
  }
  for (const p of ports) {
    const name = `${p.port}/${p.protocol} (${p.owner})`;
    if (p.port === 0) continue;
    const err = await tryBind(p.port, p.protocol, p.owner === 'panel' ? config.host : '0.0.0.0');
    if (!err) checks.push({ group: 'ports', name, state: 'ok', detail: 'free' });
    else if (err.code === 'EADDRINUSE' && running.running) checks.push({ group: 'ports', name, state: 'ok', detail: `in use (the daemon is running${running.pid ? `, pid ${running.pid}` : ''})` });
    else if (err.code === 'EADDRINUSE') checks.push({ group: 'ports', name, state: 'missing', detail: 'in use by another program', fix: `stop it (ss -lntup | grep :${p.port}) or set ${p.setting}` });
    else if (err.code === 'EACCES') checks.push({ group: 'ports', name, state: 'missing', detail: 'needs root (port below 1024)', fix: `run the daemon as root (the systemd unit does) or set ${p.setting} above 1023` });
    else checks.push({ group: 'ports', name, state: 'warn', detail: `cannot bind: ${err.message}` });
  }

  checks.push(isRoot ? { group: 'permissions', name: 'user', state: 'ok', detail: 'root (TUN devices, nftables, ports below 1024)' } : { group: 'permissions', name: 'user', state: vpnEnabled ? 'warn' : 'info', detail: `uid ${process.getuid?.()}: VPN daemons and the firewall need root`, fix: 'run the daemon as root (the systemd unit does)' });
  if (existsSync(config.dataDir)) {
    const st = statSync(config.dataDir);
    const loose = (st.mode & 0o077) !== 0;
    checks.push(loose ? { group: 'permissions', name: 'data dir', state: 'warn', detail: `${config.dataDir} is mode ${(st.mode & 0o777).toString(8)}`, fix: `chmod 700 ${config.dataDir} (the daemon also does at start)` } : { group: 'permissions', name: 'data dir', state: 'ok', detail: `${config.dataDir} (0700)` });
    const secretKey = path.join(config.dataDir, 'secret.key');
    if (existsSync(secretKey)) {
      const m = statSync(secretKey).mode & 0o777;
      checks.push(m & 0o077 ? { group: 'permissions', name: 'secret.key', state: 'warn', detail: `mode ${m.toString(8)}`, fix: `chmod 600 ${secretKey}` } : { group: 'permissions', name: 'secret.key', state: 'ok', detail: 'mode 600' });
    }
  } else {
    checks.push({ group: 'permissions', name: 'data dir', state: 'info', detail: `${config.dataDir} does not exist yet (the first start creates it)` });
  }
  if (config.tlsCert && config.tlsKey) {
    for (const [name, file] of [['POLYGATE_TLS_CERT', config.tlsCert], ['POLYGATE_TLS_KEY', config.tlsKey]] as const) {
      let ok = true;
      try {
        accessSync(file, fsConstants.R_OK);
      } catch {
        ok = false;
      }
      checks.push(ok ? { group: 'permissions', name, state: 'ok', detail: file } : { group: 'permissions', name, state: 'missing', detail: `${file} is not readable`, fix: `point ${name} at a readable PEM file` });
    }
  }
  checks.push(
    config.firewall === 'off'
      ? { group: 'firewall', name: 'nftables table inet polygate', state: 'info', detail: 'POLYGATE_FIREWALL=off: open the VPN ports in your own firewall' }
      : isRoot && (options.programDirs ? findProgram('nft', [], options.programDirs) : findProgram('nft'))
        ? { group: 'firewall', name: 'nftables table inet polygate', state: 'ok', detail: 'managed by the daemon (root and nft present)' }
        : { group: 'firewall', name: 'nftables table inet polygate', state: 'warn', detail: 'POLYGATE_FIREWALL=auto but the daemon will not be root with nft, so it leaves the firewall alone', fix: 'run as root with nftables installed, or set POLYGATE_FIREWALL=off and open the ports yourself' },
  );
  return checks;
}

const MARK: Record<CheckState, string> = { ok: 'ok  ', missing: 'MISS', warn: 'warn', info: '  - ' };

export async function doctorCommand(options: { json?: boolean }, global: GlobalOptions): Promise<number> {
  const config = cliConfig(global);
  const checks = await runChecks(config);
  const problems = checks.filter((c) => c.state === 'missing');
  if (options.json) {
    process.stdout.write(`${JSON.stringify({ plugins: config.plugins, checks, problems: problems.length }, null, 2)}\n`);
  } else {
    let group = '';
    for (const c of checks) {
      if (c.group !== group) {
        group = c.group;
        process.stdout.write(`\n${group}\n`);
      }
      process.stdout.write(`  [${MARK[c.state]}] ${c.name}: ${c.detail}${c.fix && c.state !== 'ok' ? `\n          fix: ${c.fix}` : ''}\n`);
    }
    const packages = [...new Set(checks.filter((c) => c.state === 'missing' && c.fix?.startsWith('apt-get install --no-install-recommends ')).flatMap((c) => c.fix!.slice('apt-get install --no-install-recommends '.length).split(' ')))];
    process.stdout.write(`\nenabled plugins: ${config.plugins.join(', ') || 'none'}\n`);
    if (packages.length) process.stdout.write(`install what is missing: apt-get install --no-install-recommends ${packages.join(' ')}\n`);
    process.stdout.write(problems.length ? `${problems.length} problem(s) found.\n` : 'nothing required is missing.\n');
  }
  return problems.length ? EXIT.problems : EXIT.ok;
}
