import { Op } from 'sequelize';
import type { CoreContext } from '../context';
import { WebhookDeliverer } from './deliverer';
import { WebhookDetector } from './detector';
import { WebhookDelivery, WebhookEvent } from './models';
import { webhookOptionsOf, type WebhookOptions } from './options';
import type { WebhooksService } from './service';

export { WebhooksService } from './service';
export { signatureHeader, verifySignature } from './signature';
export { WEBHOOK_EVENT_TYPES, type WebhookEventType, type WebhookOptions, webhookOptionsOf } from './options';

/** Finished deliveries and their events are kept this long for the deliveries listing. */
const RETENTION_MS = 30 * 86_400_000;

/**
 * Detection and delivery, driven by domain events, a periodic sweep (for time-based events:
 * expiring, expired) and the endpoints themselves. Detection runs only while at least one
 * endpoint is enabled: the first one enabled takes the present as the baseline, so an endpoint
 * gets what happens after it exists, not a replay of the panel's history.
 */
export class WebhookEngine {
  readonly options: WebhookOptions;
  readonly detector: WebhookDetector;
  readonly deliverer: WebhookDeliverer;
  private active = false;
  private chain: Promise<unknown> = Promise.resolve();
  private pendingNames = new Set<string>();
  private pendingAll = false;
  private scheduled = false;
  private sweepTimer: NodeJS.Timeout | null = null;
  private readonly unsubscribe: Array<() => void> = [];
  private stopped = false;

  constructor(
    private readonly ctx: CoreContext,
    private readonly service: WebhooksService,
    options: Partial<WebhookOptions> = {},
  ) {
    this.options = { ...webhookOptionsOf(ctx.config), ...options };
    this.detector = new WebhookDetector(ctx, this.options);
    this.deliverer = new WebhookDeliverer(ctx, this.options);
    service.useOptions(this.options, () => this.deliverer.wake());
  }

  /** Subscribes to domain events; if endpoints exist, a full pass finds what a crash left undetected. */
  async start(): Promise<void> {
    const { events } = this.ctx;
    this.unsubscribe.push(
      events.on('users.changed', ({ usernames }) => this.look(usernames)),
      events.on('users.deleted', ({ usernames }) => this.look(usernames)),
      events.on('usage.committed', ({ usernames, statusChanged }) => this.look([...usernames, ...statusChanged], true)),
      events.on('sub_admins.changed', () => this.look([], true)),
      events.on('sub_admins.deleted', ({ subAdminId }) => {
        this.serially(() => this.service.removeOwnedBy(subAdminId));
        this.look([], true);
      }),
      events.on('nodes.changed', () => this.look([], true)),
    );
    this.service.onEndpointsChanged(() => this.refreshActive());
    this.active = await this.service.anyEnabled();
    this.deliverer.start();
    if (this.active) {
      this.pendingAll = true;
      this.schedule();
    }
    this.sweepTimer = setInterval(() => {
      if (!this.active) return;
      this.pendingAll = true;
      this.schedule();
      this.serially(() => this.prune());
    }, this.options.sweepMs);
    this.sweepTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe.splice(0).forEach((off) => off());
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await this.chain;
    await this.deliverer.stop();
  }

  /** Every user looked at now (the daemon does this every `sweepMs`); resolves when queued and sent off. */
  async sweep(): Promise<void> {
    this.pendingAll = true;
    this.schedule();
    await this.settle();
  }

  /** Resolves once every pass asked for so far has run and the deliverer finished its round. */
  async settle(): Promise<void> {
    let seen: Promise<unknown>;
    do {
      seen = this.chain;
      await seen;
    } while (seen !== this.chain);
    await this.deliverer.idle();
  }

  private look(usernames: readonly string[], always = false): void {
    if (!this.active || this.stopped) return;
    for (const u of usernames) this.pendingNames.add(u);
    if (usernames.length || always) this.schedule();
  }

  /** Coalesces everything asked for while a pass runs into the next one. */
  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.serially(async () => {
      this.scheduled = false;
      if (!this.active) return;
      // Past a few thousand names one full read is cheaper than IN lists (and stays under bind limits).
      const scope = this.pendingAll || this.pendingNames.size > 5000 ? ('all' as const) : { usernames: this.pendingNames };
      this.pendingAll = false;
      this.pendingNames = new Set();
      const queued = await this.detector.pass(scope);
      if (queued > 0) this.deliverer.wake();
    });
  }

  private serially(fn: () => Promise<void>): void {
    this.chain = this.chain.then(fn).catch((err) => this.ctx.logger.error({ err }, 'webhook detection failed; the next pass or sweep retries'));
  }

  /** After an endpoint change: the first enabled endpoint takes the present as the baseline. */
  private async refreshActive(): Promise<void> {
    const done = new Promise<void>((resolve) =>
      this.serially(async () => {
        try {
          const active = await this.service.anyEnabled();
          if (active && !this.active) await this.detector.pass('all', true);
          this.active = active;
        } finally {
          resolve();
        }
      }),
    );
    await done;
    this.deliverer.wake();
  }

  private async prune(): Promise<void> {
    const cutoff = new Date(Date.now() - RETENTION_MS);
    await WebhookDelivery.destroy({ where: { status: { [Op.ne]: 'pending' }, created_at: { [Op.lt]: cutoff } } });
    const orphans = await this.ctx.db.sequelize.query<{ id: string }>(
      'SELECT e.id FROM webhook_events e WHERE e.occurred_at < $cutoff AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id) LIMIT 5000',
      { type: 'SELECT' as never, bind: { cutoff } },
    );
    if (orphans.length) await WebhookEvent.destroy({ where: { id: orphans.map((o) => o.id) } });
  }
}

export function createWebhookEngine(ctx: CoreContext, service: WebhooksService, options?: Partial<WebhookOptions>): WebhookEngine {
  return new WebhookEngine(ctx, service, options);
}
