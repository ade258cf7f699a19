import net from 'node:net';
import { DomainError, invalid } from '../errors';

/*
 * Pure part of the firewall: validate the desired state and render it as one nftables
 * script. Nothing reaches the script without passing a check here; the only free-form text
 * (the owner comment) is reduced to [A-Za-z0-9_.:-].
 */

export type PortProtocol = 'tcp' | 'udp';

/** One port the daemon opens, and who asked for it (shown as the rule's comment). */
export interface OpenPort {
  port: number;
  protocol: PortProtocol;
  /** e.g. `openvpn`, `wireguard:node_2`; sanitized to [A-Za-z0-9_.:-] in the rule comment. */
  owner: string;
}

/** Masquerade traffic from a VPN client subnet (optionally only out of one interface). */
export interface NatRule {
  sourceCidr: string;
  outInterface?: string;
}

/** Everything polygate wants in its table; `apply()` makes the table exactly this. */
export interface FirewallDesired {
  openPorts: OpenPort[];
  nat?: NatRule[];
}

export const DEFAULT_TABLE = 'polygate';
const TABLE_RE = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;
const IFNAME_RE = /^[a-zA-Z0-9_.-]{1,15}$/;
const CIDR_RE = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/;
const MAX_COMMENT = 64;

/** Reduces an owner name to what can sit in an nft comment: [A-Za-z0-9_.:-], at most 64 chars. */
export function sanitizeOwner(owner: string): string {
  return owner.replace(/[^A-Za-z0-9_.:-]/g, '_').slice(0, MAX_COMMENT);
}

function checkTable(table: string): string {
  if (!TABLE_RE.test(table)) throw invalid(`firewall table name must match ${TABLE_RE.source} (got ${JSON.stringify(table)})`);
  return table;
}

/**
 * Parses and checks a CIDR; returns the family and the canonical network text (host bits
 * cleared, as nft itself would store it: `10.8.0.1/24` → `10.8.0.0/24`).
 */
export function parseCidr(value: unknown, where: string): { family: 4 | 6; text: string } {
  if (typeof value !== 'string') throw invalid(`${where} must be a CIDR string like 10.8.0.0/24`);
  const m = CIDR_RE.exec(value);
  if (!m) throw invalid(`${where} must be a CIDR like 10.8.0.0/24 or fd00::/64 (got ${JSON.stringify(value)})`);
  const addr = m[1]!;
  const family = net.isIPv4(addr) ? 4 : net.isIPv6(addr) ? 6 : 0;
  if (family === 0) throw invalid(`${where} has an invalid address (got ${JSON.stringify(value)})`);
  const max = family === 4 ? 32 : 128;
  const len = Number(m[2]);
  if (/^0\d/.test(m[2]!) || len > max) throw invalid(`${where} prefix length must be 0..${max} (got ${JSON.stringify(value)})`);
  return { family, text: `${family === 4 ? maskV4(addr, len) : maskV6(addr, len)}/${len}` };
}

function maskV4(addr: string, len: number): string {
  const n = addr.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
  const masked = len === 0 ? 0 : n - (n % 2 ** (32 - len));
  return [24, 16, 8, 0].map((s) => Math.floor(masked / 2 ** s) % 256).join('.');
}

function maskV6(addr: string, len: number): string {
  // Expand (including an embedded IPv4 tail) to 8 groups, clear host bits, print compressed.
  let text = addr.toLowerCase();
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const o = v4[1]!.split('.').map(Number);
    text = text.slice(0, -v4[1]!.length) + `${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const nums = groups.map((g, i) => {
    const v = parseInt(g, 16);
    const keep = Math.max(0, Math.min(16, len - i * 16));
    return keep === 16 ? v : keep === 0 ? 0 : v & (0xffff << (16 - keep)) & 0xffff;
  });
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (nums[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && nums[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = nums.map((v) => v.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/**
 * Checks every field and returns a normalized copy: ports sorted, exact duplicates merged.
 * The same port and protocol claimed by two owners is a `conflict` (ports are owned
 * centrally; two owners means the registry let a collision through).
 */
export function validateDesired(input: unknown): FirewallDesired {
  if (typeof input !== 'object' || input === null) throw invalid('firewall state must be an object');
  const raw = input as { openPorts?: unknown; nat?: unknown };
  if (!Array.isArray(raw.openPorts)) throw invalid('openPorts must be an array');
  const byKey = new Map<string, OpenPort>();
  raw.openPorts.forEach((p: unknown, i: number) => {
    const where = `openPorts[${i}]`;
    if (typeof p !== 'object' || p === null) throw invalid(`${where} must be an object`);
    const { port, protocol, owner } = p as Record<string, unknown>;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw invalid(`${where}.port must be an integer 1..65535 (got ${JSON.stringify(port)})`);
    }
    if (protocol !== 'tcp' && protocol !== 'udp') throw invalid(`${where}.protocol must be "tcp" or "udp" (got ${JSON.stringify(protocol)})`);
    if (typeof owner !== 'string' || owner.trim() === '') throw invalid(`${where}.owner must be a non-empty string`);
    const clean = sanitizeOwner(owner.trim());
    const key = `${protocol}/${port}`;
    const prior = byKey.get(key);
    if (prior && prior.owner !== clean) {
      throw new DomainError('conflict', `port ${port}/${protocol} is claimed by both ${prior.owner} and ${clean}`);
    }
    byKey.set(key, { port, protocol, owner: clean });
  });
  const openPorts = [...byKey.values()].sort((a, b) => a.port - b.port || a.protocol.localeCompare(b.protocol));

  let nat: NatRule[] | undefined;
  if (raw.nat !== undefined) {
    if (!Array.isArray(raw.nat)) throw invalid('nat must be an array');
    const seen = new Set<string>();
    nat = [];
    raw.nat.forEach((r: unknown, i: number) => {
      const where = `nat[${i}]`;
      if (typeof r !== 'object' || r === null) throw invalid(`${where} must be an object`);
      const { sourceCidr, outInterface } = r as Record<string, unknown>;
      const cidr = parseCidr(sourceCidr, `${where}.sourceCidr`);
      if (outInterface !== undefined && (typeof outInterface !== 'string' || !IFNAME_RE.test(outInterface))) {
        throw invalid(`${where}.outInterface must match ${IFNAME_RE.source} (got ${JSON.stringify(outInterface)})`);
      }
      const rule: NatRule = outInterface === undefined ? { sourceCidr: cidr.text } : { sourceCidr: cidr.text, outInterface };
      const key = `${rule.sourceCidr}|${rule.outInterface ?? ''}`;
      if (seen.has(key)) return;
      seen.add(key);
      nat!.push(rule);
    });
  }
  return nat === undefined ? { openPorts } : { openPorts, nat };
}

/**
 * Renders the whole table as one `nft -f` script that replaces it atomically: declaring the
 * table first makes the `delete` succeed whether or not it existed, and nft applies the file
 * as one transaction, so there is never a moment without our rules or with half of them.
 * Only `inet <table>` is touched.
 *
 * The input chain has `policy accept`: we add accept rules (each with a counter and the
 * owner as comment) and never drop anyone's traffic.
 */
export function renderRuleset(desired: FirewallDesired, options: { table?: string } = {}): string {
  const table = checkTable(options.table ?? DEFAULT_TABLE);
  const d = validateDesired(desired);
  const lines: string[] = [
    '#!/usr/sbin/nft -f',
    `# Managed by polygate: rewritten as a whole on every change. Edits here are lost.`,
    `table inet ${table} {}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    `  comment "managed by polygate"`,
    `  chain input {`,
    `    type filter hook input priority 0; policy accept;`,
  ];
  for (const p of d.openPorts) {
    lines.push(`    ${p.protocol} dport ${p.port} counter accept comment "${p.owner}"`);
  }
  lines.push('  }');
  if (d.nat && d.nat.length > 0) {
    lines.push('  chain postrouting {', '    type nat hook postrouting priority 100; policy accept;');
    for (const r of d.nat) {
      const fam = parseCidr(r.sourceCidr, 'sourceCidr').family === 4 ? 'ip' : 'ip6';
      // Traffic between clients of the same subnet is left alone.
      const out = r.outInterface ? ` oifname "${r.outInterface}"` : '';
      lines.push(`    ${fam} saddr ${r.sourceCidr} ${fam} daddr != ${r.sourceCidr}${out} counter masquerade comment "nat"`);
    }
    lines.push('  }');
  }
  lines.push('}', '');
  return lines.join('\n');
}

/** Script that removes our table whether or not it exists, and nothing else. */
export function renderRemoval(options: { table?: string } = {}): string {
  const table = checkTable(options.table ?? DEFAULT_TABLE);
  return `table inet ${table} {}\ndelete table inet ${table}\n`;
}

/** One accept rule as it is live in the kernel, with its counters. */
export interface LiveOpenPort extends OpenPort {
  packets: number;
  bytes: number;
}

export interface LiveNatRule extends NatRule {
  packets: number;
  bytes: number;
}

/** What `nft -j list table inet <table>` says our table holds. */
export interface LiveTable {
  openPorts: LiveOpenPort[];
  nat: LiveNatRule[];
}

/**
 * Reads back the rules this module renders from `nft -j list table inet <table>` output.
 * Rules of other shapes (someone edited our table by hand) are ignored.
 */
export function parseTableJson(json: string): LiveTable {
  const doc = JSON.parse(json) as { nftables?: unknown[] };
  const live: LiveTable = { openPorts: [], nat: [] };
  for (const item of doc.nftables ?? []) {
    const rule = (item as { rule?: { chain?: string; comment?: string; expr?: unknown[] } }).rule;
    if (!rule || !Array.isArray(rule.expr)) continue;
    let port: number | undefined;
    let protocol: PortProtocol | undefined;
    let saddr: string | undefined;
    let oif: string | undefined;
    let packets = 0;
    let bytes = 0;
    let verdict: 'accept' | 'masquerade' | undefined;
    for (const e of rule.expr as Record<string, unknown>[]) {
      const match = e.match as { op?: string; left?: Record<string, Record<string, string>>; right?: unknown } | undefined;
      if (match && match.op === '==') {
        const payload = match.left?.payload;
        const meta = match.left?.meta;
        if (payload && (payload.protocol === 'tcp' || payload.protocol === 'udp') && payload.field === 'dport' && typeof match.right === 'number') {
          protocol = payload.protocol;
          port = match.right;
        } else if (payload && (payload.protocol === 'ip' || payload.protocol === 'ip6') && payload.field === 'saddr') {
          const prefix = (match.right as { prefix?: { addr: string; len: number } }).prefix;
          if (prefix) saddr = `${prefix.addr}/${prefix.len}`;
        } else if (meta && meta.key === 'oifname' && typeof match.right === 'string') {
          oif = match.right;
        }
      }
      if (e.counter) {
        const c = e.counter as { packets?: number; bytes?: number };
        packets = c.packets ?? 0;
        bytes = c.bytes ?? 0;
      }
      if ('accept' in e) verdict = 'accept';
      if ('masquerade' in e) verdict = 'masquerade';
    }
    if (verdict === 'accept' && port !== undefined && protocol) {
      live.openPorts.push({ port, protocol, owner: rule.comment ?? '', packets, bytes });
    } else if (verdict === 'masquerade' && saddr) {
      live.nat.push(oif === undefined ? { sourceCidr: saddr, packets, bytes } : { sourceCidr: saddr, outInterface: oif, packets, bytes });
    }
  }
  return live;
}
