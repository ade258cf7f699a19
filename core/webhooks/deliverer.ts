import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Op, QueryTypes } from 'sequelize';
import type { CoreContext } from '../context';
import { WebhookDelivery, WebhookEndpoint, WebhookEvent } from './models';
import { retryDelayMs, type WebhookOptions } from './options';
import { signatureHeader } from './signature';
import { PrivateTargetError, publicOnlyLookup, refusedLiteral } from './targets';

/** Subject of `webhook.test` events (see WebhooksService.test). */
export const TEST_SUBJECT_PREFIX = 'webhook:';

/** Heads (one per endpoint and subject) looked at per round; the rest wait for the next round. */
const BATCH = 1000;

/** Only scheme, host and port are logged: bots often carry a token in the path or query. */
export function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid url)';
  }
}

/**
 * Sends queued deliveries. At most one delivery per (endpoint, subject) is in flight, and it is
 * always that pair's oldest pending one, so a user's events reach an endpoint in the order they
 * happened (a later one waits while an earlier one is retried, until it is delivered or given
 * up). State lives only in `webhook_deliveries`: after a restart pending rows are sent again
 * (a request cut by the crash too, so receivers dedupe on the event id), delivered ones never.
 */
export class WebhookDeliverer {
  private running = false;
  private looping: Promise<void> | null = null;
  private again = false;
  private timer: NodeJS.Timeout | null = null;
  private readonly inFlight = new Set<AbortController>();

  constructor(
    private readonly ctx: CoreContext,
    private readonly options: WebhookOptions,
    /** Wall time for retry schedules: the domain clock of tests stands still. */
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    this.running = true;
    this.wake();
  }

  /** Stops after the requests in flight are cut; pending rows stay for the next start. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const c of this.inFlight) c.abort(new Error('deliverer stopping'));
    await this.looping;
  }

  /** Something was queued (or an endpoint came back): look now. */
  wake(): void {
    if (!this.running) return;
    if (this.looping) {
      this.again = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.looping = this.loop().finally(() => {
      this.looping = null;
      if (this.again && this.running) this.wake();
    });
  }

  /** Resolves once no round is running (tests: after a wake, the round it started is done). */
  async idle(): Promise<void> {
    while (this.looping) await this.looping;
  }

  private async loop(): Promise<void> {
    for (;;) {
      this.again = false;
      let next: number | null;
      try {
        next = await this.round();
      } catch (err) {
        this.ctx.logger.error({ err }, 'webhook delivery round failed; retrying shortly');
        next = this.now() + 1000;
      }
      if (!this.running) return;
      if (next === 0 || this.again) continue;
      if (next != null) {
        this.timer = setTimeout(() => this.wake(), Math.max(0, next - this.now()));
        this.timer.unref();
      }
      return;
    }
  }

  /** Sends every due head once. Returns 0 to go again at once, a time to come back, or null (nothing pending). */
  private async round(): Promise<number | null> {
    // Each (endpoint, subject)'s oldest pending delivery: many queued for one user cannot hide the others'.
    const headIds = await this.ctx.db.sequelize.query<{ id: number }>(
      `SELECT MIN(id) AS id FROM webhook_deliveries WHERE status = 'pending' GROUP BY endpoint_id, subject ORDER BY MIN(id) LIMIT ${BATCH}`,
      { type: QueryTypes.SELECT },
    );
    if (headIds.length === 0) return null;
    const heads = await WebhookDelivery.findAll({ where: { id: { [Op.in]: headIds.map((r) => Number(r.id)) } }, order: [['id', 'ASC']], raw: true });
    const endpoints = new Map((await WebhookEndpoint.findAll({ where: { id: { [Op.in]: [...new Set(heads.map((r) => r.endpoint_id))] } }, raw: true })).map((e) => [e.id, e]));
    const now = this.now();
    const due: WebhookDelivery[] = [];
    let next: number | null = null;
    for (const head of heads) {
      // A disabled endpoint's deliveries wait (in order) until it is enabled again; a test
      // event (its own subject) goes out anyway, to check an endpoint before enabling it.
      const endpoint = endpoints.get(head.endpoint_id);
      if (!endpoint || (!endpoint.enabled && !head.subject.startsWith(TEST_SUBJECT_PREFIX))) continue;
      const at = new Date(head.next_attempt_at).getTime();
      if (at <= now) due.push(head);
      else next = next == null ? at : Math.min(next, at);
    }
    if (due.length === 0) return next;
    const events = new Map((await WebhookEvent.findAll({ where: { id: { [Op.in]: due.map((d) => d.event_id) } }, raw: true })).map((e) => [e.id, e]));
    let index = 0;
    const worker = async () => {
      while (index < due.length && this.running) {
        const d = due[index++]!;
        const event = events.get(d.event_id);
        const endpoint = endpoints.get(d.endpoint_id);
        if (event && endpoint) await this.attempt(d, event, endpoint);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.options.concurrency, due.length) }, worker));
    return 0;
  }

  private async attempt(d: WebhookDelivery, event: WebhookEvent, endpoint: WebhookEndpoint): Promise<void> {
    const attempt = d.attempts + 1;
    const log = { delivery: d.id, event: event.id, type: event.type, endpoint: endpoint.id, origin: originOf(endpoint.url), attempt };
    let secret: string;
    try {
      secret = this.ctx.secrets.open(endpoint.secret);
    } catch {
      await this.record(d, attempt, null, 'the endpoint secret cannot be opened with this data dir\'s secret.key (restored without it?)', log);
      return;
    }
    const controller = new AbortController();
    this.inFlight.add(controller);
    const timer = setTimeout(() => controller.abort(new Error(`no answer within ${this.options.timeoutMs} ms`)), this.options.timeoutMs);
    let status: number | null = null;
    let error: string | null = null;
    try {
      const url = new URL(endpoint.url);
      // A reseller's webhook reaches public addresses only (see targets.ts); checked on the address connected to.
      const guard = endpoint.sub_admin_id != null && !this.options.resellerPrivateTargets;
      const literal = guard ? refusedLiteral(url.hostname) : null;
      if (literal) throw new PrivateTargetError(`${literal} is not a public address`);
      status = await post(url, event.body, controller.signal, guard, {
        'content-type': 'application/json',
        'user-agent': 'polygate-webhooks/1',
        'x-polygate-event': event.type,
        'x-polygate-delivery': String(d.id),
        'x-polygate-signature': signatureHeader(secret, event.body, Math.floor(this.now() / 1000)),
      });
      if (status >= 300 && status < 400) error = `redirect (${status}) not followed`;
      else if (status < 200 || status >= 300) error = `HTTP ${status}`;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (controller.signal.aborted) error = String((controller.signal.reason as Error)?.message ?? 'aborted');
      else if (e instanceof PrivateTargetError) error = `refused: ${e.message} (a reseller's webhook may reach public addresses only)`;
      else error = e.code ?? e.message;
    } finally {
      clearTimeout(timer);
      this.inFlight.delete(controller);
    }
    // Cut by a shutdown: not the endpoint's fault, and the row stays due for the next start.
    if (!this.running && error) return;
    await this.record(d, attempt, status, error, log);
  }

  private async record(d: WebhookDelivery, attempt: number, status: number | null, error: string | null, log: Record<string, unknown>): Promise<void> {
    const now = new Date(this.now());
    if (!error) {
      await WebhookDelivery.update({ status: 'delivered', attempts: attempt, last_attempt_at: now, last_status_code: status, last_error: null, delivered_at: now }, { where: { id: d.id, status: 'pending' } });
      this.ctx.logger.info({ ...log, status }, 'webhook delivered');
      return;
    }
    const giveUp = attempt >= this.options.maxAttempts;
    const next = new Date(now.getTime() + retryDelayMs(this.options, attempt));
    await WebhookDelivery.update(
      { status: giveUp ? 'failed' : 'pending', attempts: attempt, last_attempt_at: now, last_status_code: status, last_error: error.slice(0, 300), next_attempt_at: giveUp ? now : next },
      { where: { id: d.id, status: 'pending' } },
    );
    if (giveUp) this.ctx.logger.warn({ ...log, status, error }, 'webhook delivery given up');
    else this.ctx.logger.warn({ ...log, status, error, retry_at: next.toISOString() }, 'webhook delivery failed; will retry');
  }
}

/**
 * One POST; resolves with the status once the answer's headers arrive (the body is drained and
 * dropped). Never follows a redirect: node's http client does not.
 */
function post(url: URL, body: string, signal: AbortSignal, publicOnly: boolean, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(
      url,
      { method: 'POST', signal, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, ...(publicOnly ? { lookup: publicOnlyLookup as never } : {}) },
      (res: IncomingMessage) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
