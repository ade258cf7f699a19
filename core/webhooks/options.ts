import { z } from 'zod';

/** Every event a webhook endpoint can receive. */
export const WEBHOOK_EVENT_TYPES = [
  'user.created',
  'user.deleted',
  'user.limited',
  'user.expired',
  'user.usage_reached',
  'user.expiring',
  'reseller.quota_reached',
  'node.offline',
  'node.online',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** Events only global endpoints receive: nodes belong to the operator, not to a reseller. */
export const GLOBAL_ONLY_EVENTS: ReadonlySet<WebhookEventType> = new Set(['node.offline', 'node.online']);

export interface WebhookOptions {
  /** `user.usage_reached` thresholds in percent of the data limit, ascending. */
  usagePercents: number[];
  /** `user.expiring` thresholds in days before expiry, descending. */
  expiringDays: number[];
  /** Attempts per delivery before it is given up (marked failed). */
  maxAttempts: number;
  /** Delay after the first failed attempt; doubled after each further one, up to `retryMaxMs`. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** Per-request limit for connect + response headers. */
  timeoutMs: number;
  /** How often every user is re-examined for time-based events (expiring, expired). */
  sweepMs: number;
  /** Deliveries in flight at once (each to a different user or endpoint). */
  concurrency: number;
  /** Whether resellers' webhooks may point at loopback, private or link-local addresses (default no). */
  resellerPrivateTargets: boolean;
}

const list = (name: string, min: number, max: number, fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((s, ctx) => {
      const out = s.split(',').map((p) => p.trim()).filter(Boolean).map(Number);
      if (out.some((n) => !Number.isInteger(n) || n < min || n > max)) {
        ctx.addIssue({ code: 'custom', message: `must be a comma-separated list of whole numbers from ${min} to ${max}` });
        return z.NEVER;
      }
      return [...new Set(out)];
    });

const int = (min: number, max: number, fallback: number) => z.coerce.number().int().min(min).max(max).default(fallback);

/** The webhook settings in the daemon's one configuration (core/config), each with its variable. */
export const WEBHOOK_SETTINGS = {
  webhookUsagePercents: list('POLYGATE_WEBHOOK_USAGE_PERCENTS', 1, 100, '80,90'),
  webhookExpiringDays: list('POLYGATE_WEBHOOK_EXPIRING_DAYS', 1, 365, '3,1'),
  webhookMaxAttempts: int(1, 100, 10),
  webhookRetryBaseMs: int(1, 3_600_000, 10_000),
  webhookRetryMaxMs: int(1, 86_400_000, 3_600_000),
  webhookTimeoutMs: int(100, 120_000, 10_000),
  webhookSweepMs: int(1000, 86_400_000, 60_000),
  webhookConcurrency: int(1, 64, 8),
  webhookResellerPrivateTargets: z.enum(['on', 'off']).default('off').transform((v) => v === 'on'),
};

export const WEBHOOK_ENV_NAMES: Record<keyof typeof WEBHOOK_SETTINGS, string> = {
  webhookUsagePercents: 'POLYGATE_WEBHOOK_USAGE_PERCENTS',
  webhookExpiringDays: 'POLYGATE_WEBHOOK_EXPIRING_DAYS',
  webhookMaxAttempts: 'POLYGATE_WEBHOOK_MAX_ATTEMPTS',
  webhookRetryBaseMs: 'POLYGATE_WEBHOOK_RETRY_BASE_MS',
  webhookRetryMaxMs: 'POLYGATE_WEBHOOK_RETRY_MAX_MS',
  webhookTimeoutMs: 'POLYGATE_WEBHOOK_TIMEOUT_MS',
  webhookSweepMs: 'POLYGATE_WEBHOOK_SWEEP_MS',
  webhookConcurrency: 'POLYGATE_WEBHOOK_CONCURRENCY',
  webhookResellerPrivateTargets: 'POLYGATE_WEBHOOK_RESELLER_PRIVATE_TARGETS',
};

type WebhookSettings = { readonly [K in keyof typeof WEBHOOK_SETTINGS]: z.output<(typeof WEBHOOK_SETTINGS)[K]> };

/** The webhook engine's options from the loaded configuration. */
export function webhookOptionsOf(config: WebhookSettings): WebhookOptions {
  return {
    usagePercents: [...config.webhookUsagePercents].sort((a, b) => a - b),
    expiringDays: [...config.webhookExpiringDays].sort((a, b) => b - a),
    maxAttempts: config.webhookMaxAttempts,
    retryBaseMs: config.webhookRetryBaseMs,
    retryMaxMs: config.webhookRetryMaxMs,
    timeoutMs: config.webhookTimeoutMs,
    sweepMs: config.webhookSweepMs,
    concurrency: config.webhookConcurrency,
    resellerPrivateTargets: config.webhookResellerPrivateTargets,
  };
}

/** Delay before attempt `attempts + 1`, after `attempts` failed ones (≥ 1). */
export function retryDelayMs(options: Pick<WebhookOptions, 'retryBaseMs' | 'retryMaxMs'>, attempts: number): number {
  return Math.min(options.retryMaxMs, options.retryBaseMs * 2 ** Math.min(attempts - 1, 30));
}
