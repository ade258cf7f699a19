import { z } from 'zod';
import { authedProcedure, mainAdminStrictProcedure, router } from '../trpc';
import { MAX_TRAFFIC_DAYS } from '../../core/services/stats';
import { wholeNumber } from '../../core/services/users/fields';
import { strictInput } from '../input-guard';

const figures = {
  upload_bytes: z.number(),
  download_bytes: z.number(),
  total_bytes: z.number(),
};

/** Query strings carry numbers as text; tRPC clients send numbers. Anything else names the field. */
const days = z
  .preprocess((v) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v), wholeNumber(1, MAX_TRAFFIC_DAYS, `Field 'days' must be a whole number from 1 to ${MAX_TRAFFIC_DAYS}.`))
  .optional()
  .describe('Window in days, counted back from today (UTC) inclusive; default 30.');

export const statsRouter = router({
  traffic: authedProcedure
    .meta({
      openapi: {
        method: 'GET',
        path: '/stats/traffic',
        tags: ['Monitoring'],
        summary: 'Traffic per protocol, server and user over a window, and live connections (resellers: own users only)',
        protect: true,
      },
      example: { query: { days: 7 } },
      answers: {
        400: {
          message: `Field 'days' must be a whole number from 1 to ${MAX_TRAFFIC_DAYS}.`,
          description: 'days is not a whole number from 1 to 3650, or a parameter is unknown.',
          request: { query: { days: 0 } },
        },
      },
    })
    .input(strictInput({ days }))
    .output(
      z.object({
        success: z.literal(true),
        days: z.number().int(),
        from: z.string(),
        to: z.string(),
        live_connections: z.number().int(),
        totals: z.object(figures),
        by_protocol: z.array(z.object({ protocol: z.string(), ...figures })),
        by_server: z.array(z.object({ server_id: z.string(), ...figures })),
        by_user: z.array(z.object({ username: z.string(), ...figures, active_connections: z.number().int() })),
      }),
    )
    .query(async ({ ctx, input }) => ({ success: true as const, ...(await ctx.services.stats.traffic(ctx.principal, { days: input.days })) })),

  system: mainAdminStrictProcedure
    .meta({
      openapi: { method: 'GET', path: '/stats/system', tags: ['Monitoring'], summary: 'Host CPU, memory, disks, network rates and uptime', protect: true },
      example: {},
    })
    .input(z.void())
    .output(
      z.object({
        success: z.literal(true),
        cpu: z.object({ load_percent: z.number().nullable(), cores: z.number().int() }),
        memory: z.object({ total_bytes: z.number(), used_bytes: z.number(), available_bytes: z.number(), used_percent: z.number() }),
        disks: z.array(z.object({ mount: z.string(), filesystem: z.string(), size_bytes: z.number(), used_bytes: z.number(), used_percent: z.number() })),
        network: z.object({
          rx_bytes_per_sec: z.number().nullable(),
          tx_bytes_per_sec: z.number().nullable(),
          interfaces: z.array(z.object({ name: z.string(), rx_bytes_per_sec: z.number().nullable(), tx_bytes_per_sec: z.number().nullable() })),
        }),
        uptime_seconds: z.number(),
        process_uptime_seconds: z.number(),
        sampled_at: z.string(),
      }),
    )
    .query(async ({ ctx }) => ({ success: true as const, ...(await ctx.services.stats.system(ctx.principal)) })),
});
