import { z } from 'zod';
import { WEBHOOK_EVENT_TYPES } from '../../core/webhooks/options';
import type { DeliveryView, WebhookView } from '../../core/webhooks/service';
import { authedProcedure, router } from '../trpc';
import { strictInput } from '../input-guard';

const tags = ['Webhooks'];
const WEBHOOK_NOT_FOUND = 'Webhook not found';

const counts = z.object({ pending: z.number().int(), delivered: z.number().int(), failed: z.number().int() });

const webhookView = z.object({
  id: z.number().int(),
  url: z.string(),
  events: z.array(z.enum(WEBHOOK_EVENT_TYPES)).describe('Event types sent; empty = every event this key may receive.'),
  enabled: z.boolean(),
  description: z.string().nullable(),
  sub_admin_id: z.number().int().nullable().describe("null: a global webhook (main admin); else the reseller's own."),
  created_at: z.string(),
  updated_at: z.string(),
  deliveries: counts.describe('Deliveries kept (30 days) by state: pending (queued or retrying), delivered, failed (given up).'),
});

const deliveryView = z.object({
  id: z.number().int().describe('Sent as X-Polygate-Delivery.'),
  event_id: z.string().describe('The body\'s `id`: the same for every attempt and every endpoint; dedupe on it.'),
  type: z.string(),
  occurred_at: z.string(),
  status: z.enum(['pending', 'delivered', 'failed']),
  attempts: z.number().int(),
  next_attempt_at: z.string().nullable(),
  last_attempt_at: z.string().nullable(),
  last_status_code: z.number().int().nullable(),
  last_error: z.string().nullable(),
  delivered_at: z.string().nullable(),
});

const iso = (d: Date | null) => (d ? d.toISOString() : null);
const toView = (w: WebhookView) => ({ ...w, created_at: w.created_at.toISOString(), updated_at: w.updated_at.toISOString() });
const toDelivery = (d: DeliveryView) => ({
  ...d,
  occurred_at: d.occurred_at.toISOString(),
  next_attempt_at: iso(d.next_attempt_at),
  last_attempt_at: iso(d.last_attempt_at),
  delivered_at: iso(d.delivered_at),
});

const fields = {
  url: z.string().describe('Where events are POSTed: http:// or https:// (redirects are not followed).'),
  secret: z.string().nullable().optional().describe('HMAC key for X-Polygate-Signature, 16–200 characters; left out: one is generated and shown once.'),
  events: z.array(z.string()).nullable().optional().describe(`Event types to send (${WEBHOOK_EVENT_TYPES.join(', ')}); empty or left out = all.`),
  enabled: z.boolean().optional(),
  description: z.string().nullable().optional(),
};

const webhookId = z.coerce.number().int();
const exampleUrl = 'https://bot.example.test/hooks/polygate';
const notFound = { 404: { message: WEBHOOK_NOT_FOUND, description: "No webhook has this id, or it is another reseller's.", request: { params: { id: 999999 } } } };

export const webhooksRouter = router({
  list: authedProcedure
    .meta({
      openapi: { method: 'GET', path: '/webhooks', tags, summary: "Webhooks: the main admin sees every one (global and resellers'), a reseller its own", protect: true },
      example: {},
    })
    .input(z.void())
    .output(z.object({ success: z.literal(true), webhooks: z.array(webhookView) }))
    .query(async ({ ctx }) => ({ success: true as const, webhooks: (await ctx.services.webhooks.list(ctx.principal)).map(toView) })),

  create: authedProcedure
    .meta({
      openapi: {
        method: 'POST',
        path: '/webhooks',
        tags,
        summary: "Add a webhook: global with the main admin key, else the reseller's own (its users' events and its quota event); the secret is shown once",
        protect: true,
      },
      example: { body: { url: exampleUrl, events: ['user.limited', 'user.expired'], description: 'Support bot' } },
      answers: {
        400: {
          message: "Field 'url' must be an absolute http:// or https:// URL (at most 2048 characters).",
          description: 'The url is not http(s), an event is unknown (or node.* with a reseller key), the secret is too short, or a field is unknown.',
          request: { body: { url: 'ftp://bot.example.test/hook' } },
        },
      },
    })
    .input(strictInput(fields))
    .output(z.object({ success: z.literal(true), message: z.literal('Webhook created.'), webhook: webhookView, secret: z.string().describe('Shown only now.') }))
    .mutation(async ({ ctx, input }) => {
      const { webhook, secret } = await ctx.services.webhooks.create(ctx.principal, input);
      return { success: true as const, message: 'Webhook created.' as const, webhook: toView(webhook), secret };
    }),

  update: authedProcedure
    .meta({
      openapi: { method: 'PUT', path: '/webhooks/{id}', tags, summary: 'Edit a webhook (url, events, enabled, description; a new or rotated secret is shown once)', protect: true },
      example: { params: { id: 1 }, body: { enabled: true, events: ['user.limited', 'user.expired', 'user.usage_reached'] } },
      answers: notFound,
    })
    .input(strictInput({ id: webhookId, ...fields, url: fields.url.optional(), rotate_secret: z.boolean().optional().describe('Generate a new secret (shown in the answer).') }))
    .output(z.object({ success: z.literal(true), message: z.literal('Webhook updated.'), webhook: webhookView, secret: z.string().optional() }))
    .mutation(async ({ ctx, input }) => {
      const { id, ...changes } = input;
      const { webhook, secret } = await ctx.services.webhooks.update(ctx.principal, id, changes);
      return { success: true as const, message: 'Webhook updated.' as const, webhook: toView(webhook), ...(secret ? { secret } : {}) };
    }),

  deliveries: authedProcedure
    .meta({
      openapi: { method: 'GET', path: '/webhooks/{id}/deliveries', tags, summary: 'Recent deliveries of a webhook, newest first: state, attempts, last answer', protect: true },
      example: { params: { id: 1 }, query: { limit: 20 } },
      answers: notFound,
    })
    .input(strictInput({ id: webhookId, status: z.enum(['pending', 'delivered', 'failed']).optional(), limit: z.coerce.number().int().min(1).max(1000).optional() }))
    .output(z.object({ success: z.literal(true), deliveries: z.array(deliveryView) }))
    .query(async ({ ctx, input }) => ({
      success: true as const,
      deliveries: (await ctx.services.webhooks.deliveries(ctx.principal, input.id, { status: input.status, limit: input.limit })).map(toDelivery),
    })),

  test: authedProcedure
    .meta({
      openapi: {
        method: 'POST',
        path: '/webhooks/{id}/test',
        tags,
        summary: 'Send a signed webhook.test event to this webhook now (also while disabled), to check the URL and the secret',
        protect: true,
      },
      example: { params: { id: 1 } },
      answers: notFound,
    })
    .input(strictInput({ id: webhookId }))
    .output(z.object({ success: z.literal(true), message: z.literal('Test event queued.'), event_id: z.string(), delivery_id: z.number().int().describe('See GET /webhooks/{id}/deliveries for how it went.') }))
    .mutation(async ({ ctx, input }) => ({ success: true as const, message: 'Test event queued.' as const, ...(await ctx.services.webhooks.test(ctx.principal, input.id)) })),

  delete: authedProcedure
    .meta({
      openapi: { method: 'DELETE', path: '/webhooks/{id}', tags, summary: 'Delete a webhook and its queued deliveries', protect: true },
      example: { params: { id: 1 } },
      answers: notFound,
    })
    .input(strictInput({ id: webhookId }))
    .output(z.object({ success: z.literal(true), message: z.literal('Webhook deleted.') }))
    .mutation(async ({ ctx, input }) => {
      await ctx.services.webhooks.remove(ctx.principal, input.id);
      return { success: true as const, message: 'Webhook deleted.' as const };
    }),
});
