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

const list = (name: string, min: number, max: number) =>
  z
    .string()
    .transform((s, ctx) => {
      const out = s.split(',').map((p) => p.trim()).filter(Boolean).map(Number);
      if (out.some((n) => !Number.isInteger(n) || n < min || n > max)) {
        ctx.addIssue({ code: 'custom', message: `${name}: must be a comma-separated list of whole numbers from ${min} to ${max}` });
        return z.NEVER;
      }
      return [...new Set(out)];
    });

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const ENV = {
  usagePercents: ['POLYGATE_WEBHOOK_USAGE_PERCENTS', list('POLYGATE_WEBHOOK_USAGE_PERCENTS', 1, 100), '80,90'],
  expiringDays: ['POLYGATE_WEBHOOK_EXPIRING_DAYS', list('POLYGATE_WEBHOOK_EXPIRING_DAYS', 1, 365), '3,1'],
  maxAttempts: ['POLYGATE_WEBHOOK_MAX_ATTEMPTS', int(1, 100), '10'],
  retryBaseMs: ['POLYGATE_WEBHOOK_RETRY_BASE_MS', int(1, 3_600_000), '10000'],
  retryMaxMs: ['POLYGATE_WEBHOOK_RETRY_MAX_MS', int(1, 86_400_000), '3600000'],
  timeoutMs: ['POLYGATE_WEBHOOK_TIMEOUT_MS', int(100, 120_000), '10000'],
  sweepMs: ['POLYGATE_WEBHOOK_SWEEP_MS', int(1000, 86_400_000), '60000'],
  concurrency: ['POLYGATE_WEBHOOK_CONCURRENCY', int(1, 64), '8'],
  resellerPrivateTargets: ['POLYGATE_WEBHOOK_RESELLER_PRIVATE_TARGETS', z.enum(['on', 'off']).transform((v) => v === 'on'), 'off'],
} as const;

/** The webhook settings from `POLYGATE_WEBHOOK_*`; an error names the variable at fault. */
export function webhookOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): WebhookOptions {
  const out: Record<string, unknown> = {};
  for (const [key, [name, schema, fallback]] of Object.entries(ENV)) {
    const raw = env[name] === undefined || env[name] === '' ? fallback : env[name];
    const parsed = (schema as z.ZodType).safeParse(raw);
    if (!parsed.success) throw new Error(`${name}: ${parsed.error.issues[0]?.message ?? 'invalid value'}`);
    out[key] = parsed.data;
  }
  const options = out as unknown as WebhookOptions;
  options.usagePercents.sort((a, b) => a - b);
  options.expiringDays.sort((a, b) => b - a);
  return options;
}

/** Delay before attempt `attempts + 1`, after `attempts` failed ones (≥ 1). */
export function retryDelayMs(options: Pick<WebhookOptions, 'retryBaseMs' | 'retryMaxMs'>, attempts: number): number {
  return Math.min(options.retryMaxMs, options.retryBaseMs * 2 ** Math.min(attempts - 1, 30));
}
