import { randomBytes } from 'node:crypto';
import { fn, col, Op } from 'sequelize';
import type { CoreContext } from '../context';
import { invalid, notFound } from '../errors';
import type { Principal } from '../principal';
import { randomKey } from '../secrets';
import { defineWebhookModels, WebhookDelivery, WebhookEndpoint, WebhookEvent, type DeliveryStatus } from './models';
import { WEBHOOK_EVENT_TYPES, GLOBAL_ONLY_EVENTS, type WebhookEventType, type WebhookOptions } from './options';
import { refusedLiteral } from './targets';
import { TEST_SUBJECT_PREFIX } from './deliverer';

/** Per owner (the main admin, or one reseller): a bound on what every detection pass fans out to. */
export const MAX_ENDPOINTS_PER_OWNER = 20;

export interface WebhookInput {
  url?: string;
  secret?: string | null;
  events?: string[] | null;
  enabled?: boolean;
  description?: string | null;
}

export interface WebhookView {
  id: number;
  url: string;
  events: WebhookEventType[];
  enabled: boolean;
  description: string | null;
  /** null: a global endpoint (the main admin's). */
  sub_admin_id: number | null;
  created_at: Date;
  updated_at: Date;
  deliveries: Record<DeliveryStatus, number>;
}

export interface DeliveryView {
  id: number;
  event_id: string;
  type: string;
  occurred_at: Date;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: Date | null;
  last_attempt_at: Date | null;
  last_status_code: number | null;
  last_error: string | null;
  delivered_at: Date | null;
}

/**
 * Webhook endpoints, scoped by the caller: the main admin manages global endpoints and sees
 * every reseller's; a reseller sees and changes only its own (another's answers 404, as if it
 * did not exist).
 */
export class WebhooksService {
  /** Called after a change that may leave enabled endpoints (the engine starts detecting). */
  private activation: (() => Promise<void>) | null = null;
  /** Tells the deliverer something was queued. */
  private queued: () => void = () => undefined;
  /** The engine's options (shared, so a change applies to both). */
  private options: Pick<WebhookOptions, 'resellerPrivateTargets'> = { resellerPrivateTargets: false };

  constructor(private readonly ctx: CoreContext) {
    defineWebhookModels(ctx.db.sequelize);
  }

  onEndpointsChanged(fn: () => Promise<void>): void {
    this.activation = fn;
  }

  useOptions(options: Pick<WebhookOptions, 'resellerPrivateTargets'>, queued: () => void): void {
    this.options = options;
    this.queued = queued;
  }

  /**
   * Queues a `webhook.test` event to this one endpoint (enabled or not: it is how an operator
   * checks the URL and the secret before enabling it), delivered, signed and retried like any.
   */
  async test(principal: Principal, id: number): Promise<{ event_id: string; delivery_id: number }> {
    const now = this.ctx.clock.now();
    const queued = await this.ctx.db.transaction(async (transaction) => {
      const endpoint = await this.owned(principal, id, transaction);
      const eventId = `evt_${randomBytes(12).toString('hex')}`;
      const subject = `${TEST_SUBJECT_PREFIX}${endpoint.id}`;
      const body = JSON.stringify({ id: eventId, type: 'webhook.test', occurred_at: now.toISOString(), data: { webhook_id: endpoint.id, sub_admin_id: endpoint.sub_admin_id } });
      await WebhookEvent.create({ id: eventId, occurrence_key: `webhook.test:${eventId}`, type: 'webhook.test', subject, owner_id: endpoint.sub_admin_id, occurred_at: now, body }, { transaction });
      const at = new Date();
      const delivery = await WebhookDelivery.create(
        { event_id: eventId, endpoint_id: endpoint.id, subject, next_attempt_at: at, created_at: at, last_attempt_at: null, last_status_code: null, last_error: null, delivered_at: null },
        { transaction },
      );
      return { event_id: eventId, delivery_id: delivery.id };
    });
    this.queued();
    return queued;
  }

  async list(principal: Principal): Promise<WebhookView[]> {
    const where = principal.kind === 'main' ? {} : { sub_admin_id: principal.subAdminId };
    const rows = await WebhookEndpoint.findAll({ where, order: [['id', 'ASC']] });
    return this.views(rows);
  }

  async create(principal: Principal, input: WebhookInput): Promise<{ webhook: WebhookView; secret: string }> {
    if (input.url == null) throw invalid("Field 'url' is required.");
    const url = this.checkTarget(checkUrl(input.url), principal);
    const events = checkEvents(input.events, principal);
    const secret = input.secret == null || input.secret === '' ? `whsec_${randomKey(32)}` : checkSecret(input.secret);
    const description = checkDescription(input.description);
    const owner = principal.kind === 'main' ? null : principal.subAdminId;
    const row = await this.ctx.db.transaction(async (transaction) => {
      const count = await WebhookEndpoint.count({ where: { sub_admin_id: owner ?? { [Op.is]: null } }, transaction });
      if (count >= MAX_ENDPOINTS_PER_OWNER) throw invalid(`At most ${MAX_ENDPOINTS_PER_OWNER} webhooks per owner; delete one first.`);
      return WebhookEndpoint.create({ sub_admin_id: owner, url, secret: this.ctx.secrets.seal(secret), events: JSON.stringify(events), enabled: input.enabled ?? true, description }, { transaction });
    });
    await this.activation?.();
    this.ctx.logger.info({ webhook: row.id, sub_admin_id: owner }, 'webhook created');
    return { webhook: (await this.views([row]))[0]!, secret };
  }

  async update(principal: Principal, id: number, input: WebhookInput & { rotate_secret?: boolean }): Promise<{ webhook: WebhookView; secret?: string }> {
    const changes: Partial<WebhookEndpoint> = {};
    if (input.url !== undefined) {
      if (input.url === null) throw invalid("Field 'url' cannot be null.");
      changes.url = this.checkTarget(checkUrl(input.url), principal);
    }
    if (input.events !== undefined) changes.events = JSON.stringify(checkEvents(input.events, principal));
    if (input.enabled !== undefined) changes.enabled = input.enabled;
    if (input.description !== undefined) changes.description = checkDescription(input.description);
    let secret: string | undefined;
    if (input.secret != null && input.secret !== '') secret = checkSecret(input.secret);
    else if (input.rotate_secret) secret = `whsec_${randomKey(32)}`;
    if (secret) changes.secret = this.ctx.secrets.seal(secret);
    const row = await this.ctx.db.transaction(async (transaction) => {
      const found = await this.owned(principal, id, transaction);
      if (Object.keys(changes).length) await found.update(changes, { transaction });
      return found;
    });
    await this.activation?.();
    return { webhook: (await this.views([row]))[0]!, ...(secret ? { secret } : {}) };
  }

  async remove(principal: Principal, id: number): Promise<void> {
    await this.ctx.db.transaction(async (transaction) => {
      const found = await this.owned(principal, id, transaction);
      await WebhookDelivery.destroy({ where: { endpoint_id: found.id }, transaction });
      await found.destroy({ transaction });
    });
    await this.activation?.();
  }

  /** A reseller that is deleted takes its endpoints (and their queued deliveries) with it. */
  async removeOwnedBy(subAdminId: number): Promise<void> {
    await this.ctx.db.transaction(async (transaction) => {
      const ids = (await WebhookEndpoint.findAll({ where: { sub_admin_id: subAdminId }, attributes: ['id'], raw: true, transaction })).map((r) => r.id);
      if (ids.length === 0) return;
      await WebhookDelivery.destroy({ where: { endpoint_id: ids }, transaction });
      await WebhookEndpoint.destroy({ where: { id: ids }, transaction });
    });
  }

  async deliveries(principal: Principal, id: number, filter: { status?: DeliveryStatus; limit?: number } = {}): Promise<DeliveryView[]> {
    await this.owned(principal, id);
    const limit = filter.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw invalid("Field 'limit' must be an integer between 1 and 1000.");
    const rows = await this.ctx.db.sequelize.query<Record<string, unknown>>(
      'SELECT d.id, d.event_id, e.type, e.occurred_at, d.status, d.attempts, d.next_attempt_at, d.last_attempt_at, d.last_status_code, d.last_error, d.delivered_at ' +
        `FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id WHERE d.endpoint_id = $id${filter.status ? ' AND d.status = $status' : ''} ORDER BY d.id DESC LIMIT ${limit}`,
      { type: 'SELECT' as never, bind: { id, ...(filter.status ? { status: filter.status } : {}) } },
    );
    const date = (v: unknown) => (v == null ? null : new Date(v as string));
    return rows.map((r) => ({
      id: Number(r.id),
      event_id: String(r.event_id),
      type: String(r.type),
      occurred_at: date(r.occurred_at)!,
      status: r.status as DeliveryStatus,
      attempts: Number(r.attempts),
      next_attempt_at: r.status === 'pending' ? date(r.next_attempt_at) : null,
      last_attempt_at: date(r.last_attempt_at),
      last_status_code: r.last_status_code == null ? null : Number(r.last_status_code),
      last_error: (r.last_error as string | null) ?? null,
      delivered_at: date(r.delivered_at),
    }));
  }

  /** Whether any endpoint is enabled (detection runs only then). */
  async anyEnabled(): Promise<boolean> {
    return (await WebhookEndpoint.count({ where: { enabled: true } })) > 0;
  }

  /** Names the deliverer would refuse for a reseller are refused here already (names resolving to one are refused at delivery). */
  private checkTarget(url: string, principal: Principal): string {
    if (principal.kind === 'sub_admin' && !this.options.resellerPrivateTargets && refusedLiteral(new URL(url).hostname)) {
      throw invalid("Field 'url' must point at a public address: a reseller's webhook may not reach this server or its private network.");
    }
    return url;
  }

  private async owned(principal: Principal, id: number, transaction?: import('sequelize').Transaction): Promise<WebhookEndpoint> {
    const row = await WebhookEndpoint.findByPk(id, { transaction });
    if (!row || (principal.kind === 'sub_admin' && row.sub_admin_id !== principal.subAdminId)) throw notFound('Webhook not found');
    return row;
  }

  private async views(rows: WebhookEndpoint[]): Promise<WebhookView[]> {
    if (rows.length === 0) return [];
    const counts = (await WebhookDelivery.findAll({
      attributes: ['endpoint_id', 'status', [fn('COUNT', col('id')), 'n']],
      where: { endpoint_id: rows.map((r) => r.id) },
      group: ['endpoint_id', 'status'],
      raw: true,
    })) as unknown as Array<{ endpoint_id: number; status: DeliveryStatus; n: number | string }>;
    return rows.map((r) => {
      const deliveries = { pending: 0, delivered: 0, failed: 0 };
      for (const c of counts) if (c.endpoint_id === r.id) deliveries[c.status] = Number(c.n);
      return {
        id: r.id,
        url: r.url,
        events: JSON.parse(r.events) as WebhookEventType[],
        enabled: Boolean(r.enabled),
        description: r.description,
        sub_admin_id: r.sub_admin_id,
        created_at: r.created_at,
        updated_at: r.updated_at,
        deliveries,
      };
    });
  }
}

function checkUrl(value: string): string {
  const message = "Field 'url' must be an absolute http:// or https:// URL (at most 2048 characters).";
  if (typeof value !== 'string' || value.length > 2048) throw invalid(message);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalid(message);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname) throw invalid(message);
  return url.toString();
}

function checkEvents(value: string[] | null | undefined, principal: Principal): WebhookEventType[] {
  if (value == null) return [];
  const unknown = value.filter((v) => !(WEBHOOK_EVENT_TYPES as readonly string[]).includes(v));
  if (unknown.length) throw invalid(`Unknown event '${unknown[0]!.slice(0, 64)}' in 'events'; known: ${WEBHOOK_EVENT_TYPES.join(', ')}.`);
  const events = [...new Set(value)] as WebhookEventType[];
  const global = events.filter((e) => GLOBAL_ONLY_EVENTS.has(e));
  if (principal.kind === 'sub_admin' && global.length) throw invalid(`Event '${global[0]}' is sent to global webhooks only (the main admin's).`);
  return events;
}

function checkSecret(value: string): string {
  if (value.length < 16 || value.length > 200 || /\s/.test(value)) throw invalid("Field 'secret' must be 16 to 200 characters without spaces (leave it out to have one generated).");
  return value;
}

function checkDescription(value: string | null | undefined): string | null {
  if (value == null || value === '') return null;
  if (value.length > 200) throw invalid("Field 'description' must be at most 200 characters.");
  return value;
}
