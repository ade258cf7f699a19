import si from 'systeminformation';
import { QueryTypes } from 'sequelize';
import type { CoreContext } from '../context';
import { forbidden, invalid } from '../errors';
import type { Principal } from '../principal';
import type { Services } from './index';

export interface TrafficFigures {
  upload_bytes: number;
  download_bytes: number;
  total_bytes: number;
}

export interface TrafficStats {
  days: number;
  /** First and last UTC day of the window, inclusive. */
  from: string;
  to: string;
  live_connections: number;
  totals: TrafficFigures;
  by_protocol: Array<TrafficFigures & { protocol: string }>;
  by_server: Array<TrafficFigures & { server_id: string }>;
  by_user: Array<TrafficFigures & { username: string; active_connections: number }>;
}

export interface SystemStats {
  cpu: { load_percent: number | null; cores: number };
  memory: { total_bytes: number; used_bytes: number; available_bytes: number; used_percent: number };
  disks: Array<{ mount: string; filesystem: string; size_bytes: number; used_bytes: number; used_percent: number }>;
  network: {
    rx_bytes_per_sec: number | null;
    tx_bytes_per_sec: number | null;
    interfaces: Array<{ name: string; rx_bytes_per_sec: number | null; tx_bytes_per_sec: number | null }>;
  };
  uptime_seconds: number;
  process_uptime_seconds: number;
  /** When the figures were measured (ISO-8601). */
  sampled_at: string;
}

export const DEFAULT_TRAFFIC_DAYS = 30;
export const MAX_TRAFFIC_DAYS = 3650;

const figures = (rx: number, tx: number): TrafficFigures => ({ upload_bytes: rx, download_bytes: tx, total_bytes: rx + tx });

/**
 * Monitoring: traffic totals from the per-day usage history (a reseller sees its own users
 * only) plus live connections, and host figures sampled in the background.
 */
export class StatsService {
  private readonly sampler = new SystemSampler();

  constructor(
    private readonly ctx: CoreContext,
    protected readonly services: Services,
  ) {}

  async traffic(principal: Principal, input: { days?: number } = {}): Promise<TrafficStats> {
    const days = input.days ?? DEFAULT_TRAFFIC_DAYS;
    if (!Number.isInteger(days) || days < 1 || days > MAX_TRAFFIC_DAYS) {
      throw invalid(`Field 'days' must be a whole number from 1 to ${MAX_TRAFFIC_DAYS}.`);
    }
    const now = this.ctx.clock.now();
    const to = now.toISOString().slice(0, 10);
    const from = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) - (days - 1) * 86_400_000).toISOString().slice(0, 10);
    const scoped = principal.kind === 'sub_admin';
    const rows = await this.ctx.db.sequelize.query<{ protocol: string; server_id: string; username: string; rx: number | string; tx: number | string }>(
      'SELECT d.protocol AS protocol, d.server_id AS server_id, u.username AS username, SUM(d.rx) AS rx, SUM(d.tx) AS tx ' +
        'FROM usage_daily d JOIN users u ON u.id = d.user_id ' +
        `WHERE d.day >= $from AND d.day <= $to${scoped ? ' AND u.sub_admin_id = $subAdminId' : ''} ` +
        'GROUP BY d.protocol, d.server_id, u.username',
      {
        type: QueryTypes.SELECT,
        bind: scoped ? { from, to, subAdminId: principal.subAdminId } : { from, to },
      },
    );
    const byProtocol = new Map<string, [number, number]>();
    const byServer = new Map<string, [number, number]>();
    const byUser = new Map<string, [number, number]>();
    let totalRx = 0;
    let totalTx = 0;
    const add = (m: Map<string, [number, number]>, k: string, rx: number, tx: number) => {
      const cur = m.get(k);
      if (cur) {
        cur[0] += rx;
        cur[1] += tx;
      } else {
        m.set(k, [rx, tx]);
      }
    };
    for (const r of rows) {
      const rx = Number(r.rx);
      const tx = Number(r.tx);
      add(byProtocol, r.protocol, rx, tx);
      add(byServer, r.server_id, rx, tx);
      add(byUser, r.username, rx, tx);
      totalRx += rx;
      totalTx += tx;
    }
    const live = this.ctx.live;
    let liveConnections: number;
    if (scoped) {
      const names = await this.ctx.db.sequelize.query<{ username: string }>('SELECT username FROM users WHERE sub_admin_id = $id', {
        type: QueryTypes.SELECT,
        bind: { id: principal.subAdminId },
      });
      liveConnections = names.reduce((n, r) => n + live.connectionsOf(r.username), 0);
    } else {
      liveConnections = live.totalConnections();
    }
    const byTotal = <T extends TrafficFigures>(a: T, b: T) => b.total_bytes - a.total_bytes;
    return {
      days,
      from,
      to,
      live_connections: liveConnections,
      totals: figures(totalRx, totalTx),
      by_protocol: [...byProtocol].map(([protocol, [rx, tx]]) => ({ protocol, ...figures(rx, tx) })).sort((a, b) => byTotal(a, b) || a.protocol.localeCompare(b.protocol)),
      by_server: [...byServer].map(([server_id, [rx, tx]]) => ({ server_id, ...figures(rx, tx) })).sort((a, b) => byTotal(a, b) || a.server_id.localeCompare(b.server_id)),
      by_user: [...byUser]
        .map(([username, [rx, tx]]) => ({ username, ...figures(rx, tx), active_connections: live.connectionsOf(username) }))
        .sort((a, b) => byTotal(a, b) || a.username.localeCompare(b.username)),
    };
  }

  async system(principal: Principal): Promise<SystemStats> {
    if (principal.kind !== 'main') throw forbidden('Permission denied: Main admin API key required.');
    return this.sampler.latest();
  }

  /** Stops background sampling (it also stops by itself when nobody has asked for a while). */
  stop(): void {
    this.sampler.stop();
  }
}

/**
 * Samples CPU load, memory, disks and network rates every few seconds while someone is
 * watching, so a request never waits for the second network reading that rates need.
 * The first request after a quiet period gets a fresh sample without rates (null) and
 * restarts sampling.
 */
export class SystemSampler {
  private last: SystemStats | null = null;
  private timer: NodeJS.Timeout | null = null;
  private lastAskedMs = 0;
  private running: Promise<SystemStats> | null = null;

  constructor(
    private readonly intervalMs = 5000,
    private readonly idleStopMs = 10 * 60_000,
  ) {}

  async latest(): Promise<SystemStats> {
    this.lastAskedMs = Date.now();
    if (!this.timer) {
      this.timer = setInterval(() => {
        if (Date.now() - this.lastAskedMs > this.idleStopMs) {
          this.stop();
          return;
        }
        this.sample().catch(() => undefined);
      }, this.intervalMs);
      this.timer.unref?.();
    }
    return this.last ?? this.sample();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private sample(): Promise<SystemStats> {
    this.running ??= this.measure().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async measure(): Promise<SystemStats> {
    const [load, mem, disks, net, time] = await Promise.all([
      si.currentLoad().catch(() => null),
      si.mem(),
      si.fsSize().catch(() => []),
      si.networkStats('*').catch(() => []),
      Promise.resolve(si.time()),
    ]);
    const rate = (v: number | null | undefined) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : null);
    const interfaces = net
      .filter((n) => n.iface !== 'lo')
      .map((n) => ({ name: n.iface, rx_bytes_per_sec: rate(n.rx_sec), tx_bytes_per_sec: rate(n.tx_sec) }));
    const sum = (k: 'rx_bytes_per_sec' | 'tx_bytes_per_sec') =>
      interfaces.length && interfaces.every((i) => i[k] !== null) ? interfaces.reduce((n, i) => n + (i[k] ?? 0), 0) : null;
    const used = mem.total - mem.available;
    const stats: SystemStats = {
      cpu: { load_percent: load && Number.isFinite(load.currentLoad) ? Math.round(load.currentLoad * 100) / 100 : null, cores: load?.cpus.length ?? 0 },
      memory: { total_bytes: mem.total, used_bytes: used, available_bytes: mem.available, used_percent: mem.total ? Math.round((used / mem.total) * 10000) / 100 : 0 },
      disks: disks.map((d) => ({ mount: d.mount, filesystem: d.fs, size_bytes: d.size, used_bytes: d.used, used_percent: Number.isFinite(d.use) ? d.use : 0 })),
      network: { rx_bytes_per_sec: sum('rx_bytes_per_sec'), tx_bytes_per_sec: sum('tx_bytes_per_sec'), interfaces },
      uptime_seconds: Math.round(Number(time.uptime) || 0),
      process_uptime_seconds: Math.round(process.uptime()),
      sampled_at: new Date().toISOString(),
    };
    this.last = stats;
    return stats;
  }
}
