import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import { createTracker, isNative, memchrLines, nativeLoadError, type AccountingTracker, type SessionSample, type TrackerPoll } from '../../native';
import { bench, median, progress } from './report';

/**
 * Accounting hot path, each figure measured in this one run on a generated poll of 100k live
 * sessions (OpenVPN status 3, `wg show all dump`, `occtl --json show users`, an L2TP sample
 * batch), 20k users, ~14 MB of status text handed over as Buffers:
 *   accounting.native_tick_ms       one native tick in steady state (every key already tracked;
 *                                   parse + deltas + per-user sums), median
 *   accounting.native_vs_memchr     that tick ÷ a bare C memchr('\n') pass over the same text bytes
 *   accounting.naive_vs_native      a typical panel (split lines/tabs, JSON.parse, objects in a Map) ÷ native
 *   accounting.native_vs_fallback   the TypeScript fallback ÷ native
 */
export async function runAccountingNativeBench(): Promise<void> {
  if (!isNative) throw new Error(`the native addon is not loaded (${nativeLoadError ?? 'unknown reason'}); run \`npx node-gyp rebuild\``);
  progress('accounting: generating 100k sessions');
  const gen = new Generator(0x5eed);
  const world = gen.world({ openvpn: 35_000, wireguard: 30_000, ocserv: 2_000, l2tp: 33_000, users: 20_000 });
  // Two polls of the same sessions, the second with more bytes: timed ticks always feed B
  // after an untimed A, so every key exists and every delta is a plain difference.
  const a = gen.render(world, 0);
  const b = gen.render(world, 1);
  const textBytes = a.buffers.reduce((s, x) => s + x.byteLength, 0);
  progress(
    `accounting: ${(textBytes / 1e6).toFixed(1)} MB of text (openvpn ${(a.buffers[0].byteLength / 1e6).toFixed(1)}, ` +
      `wg ${(a.buffers[1].byteLength / 1e6).toFixed(1)}, ocserv ${(a.buffers[2].byteLength / 1e6).toFixed(1)}), ` +
      `${world.l2tp.length} l2tp samples`,
  );

  // memchr baseline over the same bytes.
  settle();
  const memchrMs: number[] = [];
  for (let i = 0; i < 25; i++) {
    const t0 = performance.now();
    let lines = 0;
    for (const buf of b.buffers) lines += memchrLines(buf);
    memchrMs.push(performance.now() - t0);
    if (lines === 0) throw new Error('no lines?');
  }

  const native = createTracker();
  const nativeMs = timeTracker(native, a.polls, b.polls, 5, 25);
  // Where the time goes (informational): the three texts alone, the sample batch alone.
  const textOnlyMs = timeTracker(createTracker(), a.polls.slice(0, 3), b.polls.slice(0, 3), 3, 11, 67_000);
  const samplesOnlyMs = timeTracker(createTracker(), a.polls.slice(3), b.polls.slice(3), 3, 11, 33_000);

  progress('accounting: TypeScript fallback');
  const fallback = createTracker({ forceFallback: true });
  const fallbackMs = timeTracker(fallback, a.polls, b.polls, 2, 7);

  progress('accounting: naive JS (split + JSON.parse + Map of objects)');
  const naive = new NaivePanel(world.peerNames);
  const naiveMs: number[] = [];
  settle();
  for (let i = 0; i < 9; i++) {
    naive.tick(a.strings, world.l2tpSamples(0));
    const samples = world.l2tpSamples(1);
    const t0 = performance.now();
    naive.tick(b.strings, samples);
    if (i >= 2) naiveMs.push(performance.now() - t0);
  }

  // Strings instead of Buffers (informational).
  const stringPollsA = a.polls.map((p, i) => (p.kind === 'status-text' ? { ...p, text: a.strings[i] } : p));
  const stringPollsB = b.polls.map((p, i) => (p.kind === 'status-text' ? { ...p, text: b.strings[i] } : p));
  const nativeStringMs = timeTracker(createTracker(), stringPollsA, stringPollsB, 2, 7);

  if (process.env.POLYGATE_BENCH_VERBOSE) {
    progress(`accounting: native ticks (ms): ${[...nativeMs].sort((x, y) => x - y).map((x) => x.toFixed(2)).join(' ')}`);
  }
  const tick = median(nativeMs);
  progress(
    `accounting: native ${tick.toFixed(2)} ms (texts alone ${median(textOnlyMs).toFixed(2)}, samples alone ` +
      `${median(samplesOnlyMs).toFixed(2)}, texts as strings ${median(nativeStringMs).toFixed(2)}), memchr ` +
      `${median(memchrMs).toFixed(3)} ms, fallback ${median(fallbackMs).toFixed(1)} ms, naive ${median(naiveMs).toFixed(1)} ms`,
  );
  bench('accounting.native_tick_ms', tick, 'ms');
  bench('accounting.native_vs_memchr', tick / median(memchrMs), 'x');
  bench('accounting.naive_vs_native', median(naiveMs) / tick, 'x');
  bench('accounting.native_vs_fallback', median(fallbackMs) / tick, 'x');
}

/**
 * A full GC before each measured phase, so garbage from generating 14 MB of input (and from the
 * previous phase) is not collected in the middle of it. GC caused by the ticks themselves still
 * lands in the measurements.
 */
function settle(): void {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as (() => void) | undefined;
  gc?.();
}

function timeTracker(t: AccountingTracker, a: TrackerPoll[], b: TrackerPoll[], warmup: number, runs: number, rows = 100_000): number[] {
  settle();
  const out: number[] = [];
  for (let i = 0; i < warmup + runs; i++) {
    t.tick(a);
    const t0 = performance.now();
    const r = t.tick(b);
    const ms = performance.now() - t0;
    if (r.vanished.length !== 0 || r.rowCount !== rows || r.flags.some((f) => f !== 0)) {
      throw new Error('benchmark polls are not in steady state');
    }
    if (i >= warmup) out.push(ms);
  }
  return out;
}

// -------------------------------------------------------------------------------------------
// Synthetic but realistic polls (field layouts copied from real daemon output).

interface Session {
  user: string;
  remote: string;
  ip: string;
  id: number;
  connectedAt: number;
  rx: number;
  tx: number;
  pubkey: string;
  iface: string;
  agent: string;
}

interface World {
  openvpn: Session[];
  wireguard: Session[];
  ocserv: Session[];
  l2tp: Session[];
  peerNames: Map<string, string>;
  l2tpSamples(version: number): SessionSample[];
}

export class Generator {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** mulberry32 */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  world(n: { openvpn: number; wireguard: number; ocserv: number; l2tp: number; users: number }): World {
    const users = Array.from({ length: n.users }, (_, i) => `user${String(i).padStart(5, '0')}`);
    const b64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const now = 1795717692;
    let id = 1000;
    const make = (i: number): Session => ({
      user: users[this.int(users.length)],
      remote: `${1 + this.int(223)}.${this.int(256)}.${this.int(256)}.${1 + this.int(254)}:${1024 + this.int(64000)}`,
      ip: `10.${8 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`,
      id: id++,
      connectedAt: now - this.int(86_400 * 3),
      rx: this.int(5e9),
      tx: this.int(5e10),
      pubkey: Array.from({ length: 43 }, () => b64[this.int(64)]).join('') + '=',
      iface: `wg${this.int(4)}`,
      agent: 'AnyConnect AppleSSLVPN_Darwin_ARM (iPhone) 5.1.11.347',
    });
    const w: World = {
      openvpn: Array.from({ length: n.openvpn }, (_, i) => make(i)),
      wireguard: Array.from({ length: n.wireguard }, (_, i) => make(i)),
      ocserv: Array.from({ length: n.ocserv }, (_, i) => make(i)),
      l2tp: Array.from({ length: n.l2tp }, (_, i) => make(i)),
      peerNames: new Map(),
      // Keys built with a template literal, as an engine would (V8 cons strings: flattening them
      // on the way into C++ is a real part of the cost).
      l2tpSamples: (version) =>
        w.l2tp.map((s) => ({
          key: `l2tp@main:ppp${s.id}`,
          user: s.user,
          rx: s.rx + version * 1000,
          tx: s.tx + version * 5000,
          connectedAt: s.connectedAt,
          remoteAddress: s.remote,
        })),
    };
    for (const s of w.wireguard) w.peerNames.set(s.pubkey, s.user);
    return w;
  }

  render(w: World, version: number): { buffers: Buffer[]; strings: string[]; polls: TrackerPoll[] } {
    const add = (s: Session, k: number): [number, number] => [s.rx + version * 1000 * k, s.tx + version * 7000 * k];
    const when = (t: number): string => new Date(t * 1000).toISOString().slice(0, 19).replace('T', ' ');

    const ov: string[] = [
      'TITLE\tOpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)] [LZO] [LZ4] [EPOLL] [PKCS11] [MH/PKTINFO] [AEAD] [DCO]',
      'TIME\t2026-11-26 18:28:12\t1795717692',
      'HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher',
    ];
    for (const s of w.openvpn) {
      const [rx, tx] = add(s, 1);
      ov.push(`CLIENT_LIST\t${s.user}\t${s.remote}\t${s.ip}\t\t${rx}\t${tx}\t${when(s.connectedAt)}\t${s.connectedAt}\t${s.user}\t${s.id}\t${s.id}\tAES-256-GCM`);
    }
    ov.push('HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name\tReal Address\tLast Ref\tLast Ref (time_t)');
    for (const s of w.openvpn) ov.push(`ROUTING_TABLE\t${s.ip}\t${s.user}\t${s.remote}\t2026-11-26 18:28:12\t1795717692`);
    ov.push('GLOBAL_STATS\tMax bcast/mcast queue length\t0', 'GLOBAL_STATS\tdco_enabled\t0', 'END', '');

    const wg: string[] = [];
    for (let i = 0; i < 4; i++) wg.push(`wg${i}\tyAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\tHIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\t${51820 + i}\toff`);
    for (const s of w.wireguard) {
      const [rx, tx] = add(s, 1);
      wg.push(`${s.iface}\t${s.pubkey}\t(none)\t${s.remote}\t${s.ip}/32\t${1795717600 + (s.id % 90)}\t${rx}\t${tx}\t25`);
    }
    wg.push('');

    const oc: string[] = [];
    for (const s of w.ocserv) {
      const [rx, tx] = add(s, 1);
      oc.push(`  {
    "ID":  ${s.id},
    "Username":  "${s.user}",
    "Groupname":  "(none)",
    "State":  "connected",
    "vhost":  "default",
    "Device":  "vpns${s.id % 1000}",
    "MTU":  "1402",
    "Remote IP":  "${s.remote.split(':')[0]}",
    "Location":  "unknown",
    "Local Device IP":  "195.238.126.25",
    "IPv4":  "${s.ip}",
    "P-t-P IPv4":  "10.0.16.1",
    "IPv6":  "fc00::1:8651",
    "P-t-P IPv6":  "fc00::1:8601",
    "User-Agent":  "${s.agent}",
    "RX":  "${rx}",
    "TX":  "${tx}",
    "_RX":  "${(rx / 1e6).toFixed(1)} MB",
    "_TX":  "${(tx / 1e6).toFixed(1)} MB",
    "Average RX":  "1.4 kB/s",
    "Average TX":  "1.9 kB/s",
    "DPD":  "90",
    "KeepAlive":  "32400",
    "Hostname":  "localhost",
    "Connected at":  "${when(s.connectedAt).slice(0, 16)}",
    "_Connected at":  "  3h:02m",
    "raw_connected_at":  ${s.connectedAt},
    "Full session":  "0/zuQ1RjBWv5J/hneJun8+sesWs=",
    "Session":  "0/zuQ1",
    "TLS ciphersuite":  "(TLS1.3)-(ECDHE-SECP256R1)-(RSA-PSS-RSAE-SHA256)-(AES-256-GCM)",
    "DNS":      ["10.0.16.1", "fc00::1:8601"],
    "NBNS":     [],
    "Split-DNS-Domains":        [],
    "Routes":   [],
    "Routes":  "defaultroute",
    "No-routes":        [],
    "iRoutes":  [],
    "Restricted to routes":  "False",
    "Restricted to ports":      []
  }`);
    }
    const strings = [ov.join('\n'), wg.join('\n'), `[\n${oc.join(',\n')}\n]\n`];
    const buffers = strings.map((s) => Buffer.from(s));
    const polls: TrackerPoll[] = [
      { kind: 'status-text', format: 'openvpn-status3', text: buffers[0], scope: 'ovpn@main', protocol: 'openvpn', serverId: 'main' },
      { kind: 'status-text', format: 'wg-dump', text: buffers[1], scope: 'wg@main', protocol: 'wireguard', serverId: 'main', peerNames: w.peerNames },
      { kind: 'status-text', format: 'ocserv-json', text: buffers[2], scope: 'oc@main', protocol: 'cisco', serverId: 'main' },
      { kind: 'samples', scope: 'l2tp@main', protocol: 'l2tp', serverId: 'main', samples: w.l2tpSamples(version) },
    ];
    return { buffers, strings, polls };
  }
}

/** What panels typically do: split everything, build objects, keep them in a Map. */
export class NaivePanel {
  private prev = new Map<string, { user: string; rx: number; tx: number; connectedAt: number }>();
  constructor(private readonly peerNames: ReadonlyMap<string, string>) {}

  tick(texts: string[], samples: SessionSample[]): Map<string, { rx: number; tx: number; live: number }> {
    const sessions: { key: string; user: string; rx: number; tx: number; connectedAt: number; remote: string }[] = [];
    // OpenVPN
    const rows = texts[0].split('\n').map((l) => l.split('\t'));
    const header = rows.find((r) => r[0] === 'HEADER' && r[1] === 'CLIENT_LIST')!.slice(1);
    const col = (name: string): number => header.indexOf(name);
    const [cn, real, brx, btx, since, uname, cid] = ['Common Name', 'Real Address', 'Bytes Received', 'Bytes Sent', 'Connected Since (time_t)', 'Username', 'Client ID'].map(col);
    for (const r of rows) {
      if (r[0] !== 'CLIENT_LIST') continue;
      sessions.push({
        key: `ovpn@main:${r[cid]}`,
        user: r[uname] && r[uname] !== 'UNDEF' ? r[uname] : r[cn],
        rx: Number(r[brx]),
        tx: Number(r[btx]),
        connectedAt: Number(r[since]),
        remote: r[real],
      });
    }
    // WireGuard
    for (const r of texts[1].split('\n').map((l) => l.split('\t'))) {
      if (r.length !== 9 || r[5] === '0') continue;
      sessions.push({ key: `wg@main:${r[0]}:${r[1]}`, user: this.peerNames.get(r[1]) ?? '', rx: Number(r[6]), tx: Number(r[7]), connectedAt: 0, remote: r[3] });
    }
    // ocserv
    for (const u of JSON.parse(texts[2]) as Record<string, unknown>[]) {
      sessions.push({
        key: `oc@main:${String(u.ID)}`,
        user: String(u.Username),
        rx: Number(u.RX),
        tx: Number(u.TX),
        connectedAt: Number(u.raw_connected_at),
        remote: String(u['Remote IP']),
      });
    }
    for (const s of samples) sessions.push({ ...s, remote: s.remoteAddress ?? '' });

    const perUser = new Map<string, { rx: number; tx: number; live: number }>();
    const next = new Map<string, { user: string; rx: number; tx: number; connectedAt: number }>();
    for (const s of sessions) {
      const p = this.prev.get(s.key);
      let drx = s.rx;
      let dtx = s.tx;
      if (p && p.connectedAt === s.connectedAt && s.rx >= p.rx && s.tx >= p.tx) {
        drx = s.rx - p.rx;
        dtx = s.tx - p.tx;
      }
      next.set(s.key, { user: s.user, rx: s.rx, tx: s.tx, connectedAt: s.connectedAt });
      const u = perUser.get(s.user) ?? { rx: 0, tx: 0, live: 0 };
      u.rx += drx;
      u.tx += dtx;
      u.live++;
      perUser.set(s.user, u);
    }
    this.prev = next;
    return perUser;
  }
}

if (require.main === module) {
  runAccountingNativeBench().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
