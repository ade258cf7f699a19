import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { UserStatus } from '../services/user-status';

export interface MetricsSources {
  /** Live connections per (protocol, server). */
  sessions(): Iterable<{ protocol: string; serverId: string; count: number }>;
  /** Users per status, computed with the one status definition. */
  usersByStatus(): Promise<Record<UserStatus, number>>;
  /** Every plugin instance and whether it is available. */
  plugins(): Iterable<{ protocol: string; serverId: string; available: boolean }>;
}

/**
 * polygate's Prometheus metrics, in a registry of their own (never prom-client's global one, so
 * several daemons in one process, as in tests, do not collide).
 */
export class AccountingMetrics {
  readonly registry = new Registry();
  readonly bytes: Counter<'protocol' | 'server' | 'direction'>;
  readonly tickDuration: Histogram<never>;
  readonly writeDuration: Histogram<never>;
  readonly tickFailures: Counter<never>;
  readonly pollFailures: Counter<'protocol' | 'server'>;
  readonly disconnects: Counter<'reason'>;
  readonly persistingCuts: Counter<never>;
  readonly endedEvents: Counter<never>;

  constructor(
    sources: MetricsSources,
    implementation: 'native' | 'fallback',
    options: { defaultMetrics?: boolean } = {},
  ) {
    const registers = [this.registry];
    this.bytes = new Counter({
      name: 'polygate_traffic_bytes_total',
      help: 'Bytes counted by accounting since the daemon started (rx = user upload, tx = user download).',
      labelNames: ['protocol', 'server', 'direction'],
      registers,
    });
    new Gauge({
      name: 'polygate_sessions',
      help: 'Live VPN sessions per protocol and server, as of the last poll.',
      labelNames: ['protocol', 'server'],
      registers,
      collect() {
        this.reset();
        for (const s of sources.sessions()) this.set({ protocol: s.protocol, server: s.serverId }, s.count);
      },
    });
    new Gauge({
      name: 'polygate_users',
      help: 'Users by status (active, disabled, limited, expired, on_hold).',
      labelNames: ['status'],
      registers,
      async collect() {
        const counts = await sources.usersByStatus();
        for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
      },
    });
    new Gauge({
      name: 'polygate_plugin_available',
      help: '1 when the protocol plugin on that server is available, else 0.',
      labelNames: ['protocol', 'server'],
      registers,
      collect() {
        this.reset();
        for (const p of sources.plugins()) this.set({ protocol: p.protocol, server: p.serverId }, p.available ? 1 : 0);
      },
    });
    const native = new Gauge({
      name: 'polygate_accounting_native',
      help: '1 when accounting runs on the native addon, 0 when on the TypeScript fallback.',
      registers,
    });
    native.set(implementation === 'native' ? 1 : 0);
    this.tickDuration = new Histogram({
      name: 'polygate_accounting_tick_duration_seconds',
      help: 'Duration of one accounting tick: poll every plugin, compute deltas, commit, enforce.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.writeDuration = new Histogram({
      name: 'polygate_accounting_write_duration_seconds',
      help: 'Duration of the transaction that persists one tick.',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers,
    });
    this.tickFailures = new Counter({ name: 'polygate_accounting_tick_failures_total', help: 'Ticks whose commit failed (retried by the next tick).', registers });
    this.pollFailures = new Counter({
      name: 'polygate_accounting_poll_failures_total',
      help: 'Plugin polls that failed or returned malformed data.',
      labelNames: ['protocol', 'server'],
      registers,
    });
    this.disconnects = new Counter({
      name: 'polygate_enforcement_disconnects_total',
      help: 'Disconnects requested by enforcement, by reason.',
      labelNames: ['reason'],
      registers,
    });
    this.persistingCuts = new Counter({
      name: 'polygate_enforcement_persisting_total',
      help: 'Cut sessions still present on the next poll (the cut is retried).',
      registers,
    });
    this.endedEvents = new Counter({ name: 'polygate_accounting_ended_events_total', help: 'Disconnect events received from plugins.', registers });
    if (options.defaultMetrics) {
      // prom-client's names already start with process_/nodejs_: one prefix, not polygate_process_process_….
      collectDefaultMetrics({ register: this.registry, prefix: 'polygate_' });
      // Gauges named *_total break Prometheus' naming rule (promtool lint), and each is the sum of
      // its per-type sibling (nodejs_active_handles{type}), which stays.
      for (const name of ['active_handles_total', 'active_requests_total', 'active_resources_total']) this.registry.removeSingleMetric(`polygate_nodejs_${name}`);
    }
  }
}
