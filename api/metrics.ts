import { timingSafeEqual } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import { Counter, Gauge, type Registry } from 'prom-client';
import { NODE_STATUSES, readNodeFigures, readResellerFigures, readUserTrafficFigures } from '../core/db/metrics-reads';
import { forbidden } from '../core/errors';
import type { Services } from '../core/services';
import { GiB } from '../core/services/user-status';
import { nodeServerId } from '../core/services/servers';
import { sendRestError, toRestError } from './errors';

/**
 * `GET /metrics` in Prometheus text format. Scrapers authenticate with
 * `Authorization: Bearer <POLYGATE_METRICS_TOKEN>`; people with the main admin's X-API-KEY.
 * A reseller's key is refused: the figures span every reseller.
 */
export function metricsHandler(services: Services): RequestHandler {
  registerPanelSeries(services);
  return async (req: Request, res: Response) => {
    try {
      if (!bearerMatches(req.get('authorization'), services.ctx.config.metricsToken)) {
        const principal = await services.auth.authenticate(req.get('x-api-key'));
        if (principal.kind !== 'main') throw forbidden('Permission denied: Main admin API key required.');
      }
      const registry = services.metricsRegistry;
      const body = await registry.metrics();
      res.status(200).set('Content-Type', registry.contentType).set('Cache-Control', 'no-store').send(body);
    } catch (err) {
      sendRestError(res, toRestError(err, 'GET /metrics'));
    }
  };
}

// One registration per registry: every main-kind app built on the same services shares it.
const registered = new WeakSet<Registry>();

/**
 * Series per reseller and per node, read from the database at scrape time (the counters
 * accounting commits). Their label sets grow with resellers and nodes, which an operator
 * creates by hand. Per-user series grow with customers, so they exist only when
 * POLYGATE_METRICS_PER_USER=on.
 */
function registerPanelSeries(services: Services): void {
  const registers = [services.metricsRegistry];
  if (registered.has(services.metricsRegistry)) return;
  registered.add(services.metricsRegistry);
  const sequelize = () => services.ctx.db.sequelize;

  const resellerFigures = perScrape(() => readResellerFigures(sequelize()));
  new Gauge({
    name: 'polygate_reseller_users',
    help: 'Users owned by each reseller (sub-admin).',
    labelNames: ['reseller'],
    registers,
    async collect() {
      this.reset();
      for (const r of await resellerFigures()) this.set({ reseller: r.username }, r.users);
    },
  });
  new Gauge({
    name: 'polygate_reseller_users_limit',
    help: "A reseller's maximum number of users (resellers without a limit are absent).",
    labelNames: ['reseller'],
    registers,
    async collect() {
      this.reset();
      for (const r of await resellerFigures()) if (r.maxUsers !== null) this.set({ reseller: r.username }, r.maxUsers);
    },
  });
  new Counter({
    name: 'polygate_reseller_traffic_bytes_total',
    help: "Bytes (upload + download) counted against each reseller's quota; resetting the reseller's usage resets it.",
    labelNames: ['reseller'],
    registers,
    async collect() {
      this.reset();
      for (const r of await resellerFigures()) this.inc({ reseller: r.username }, r.usedTrafficBytes);
    },
  });
  new Gauge({
    name: 'polygate_reseller_traffic_quota_bytes',
    help: "A reseller's traffic quota in bytes (resellers without a quota are absent).",
    labelNames: ['reseller'],
    registers,
    async collect() {
      this.reset();
      for (const r of await resellerFigures()) if (r.quotaGb !== null) this.set({ reseller: r.username }, r.quotaGb * GiB);
    },
  });

  const nodeFigures = perScrape(() => readNodeFigures(sequelize()));
  new Gauge({
    name: 'polygate_node_status',
    help: "1 for a node's current status, 0 for the others (installing, active, error, deleting, offline).",
    labelNames: ['server', 'node', 'status'],
    registers,
    async collect() {
      this.reset();
      for (const n of await nodeFigures()) {
        for (const status of NODE_STATUSES) this.set({ server: nodeServerId(n.id), node: n.name, status }, n.status === status ? 1 : 0);
      }
    },
  });
  new Counter({
    name: 'polygate_node_traffic_bytes_total',
    help: 'Bytes (upload + download) counted on each node since it was added.',
    labelNames: ['server', 'node'],
    registers,
    async collect() {
      this.reset();
      for (const n of await nodeFigures()) this.inc({ server: nodeServerId(n.id), node: n.name }, n.totalTrafficBytes);
    },
  });

  if (services.ctx.config.metricsPerUser === 'on') {
    new Counter({
      name: 'polygate_user_traffic_bytes_total',
      help: "Each user's usage counters (rx = upload, tx = download); a data-limit reset resets them. Only with POLYGATE_METRICS_PER_USER=on.",
      labelNames: ['username', 'direction'],
      registers,
      async collect() {
        this.reset();
        for (const u of await readUserTrafficFigures(sequelize())) {
          this.inc({ username: u.username, direction: 'rx' }, u.uploadBytes);
          this.inc({ username: u.username, direction: 'tx' }, u.downloadBytes);
        }
      },
    });
  }
}

/**
 * One read shared by every family collecting from it in the same scrape (prom-client starts
 * all collects together), so four reseller families cost one query.
 */
function perScrape<T>(read: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | null = null;
  return () => (pending ??= read().finally(() => setImmediate(() => (pending = null))));
}

function bearerMatches(header: string | undefined, token: string | undefined): boolean {
  if (!header || !token) return false;
  const m = /^Bearer\s+(.+)$/i.exec(header.trim());
  if (!m) return false;
  const given = Buffer.from(m[1]!, 'utf8');
  const expected = Buffer.from(token, 'utf8');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
