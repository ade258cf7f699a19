import { z } from 'zod';
import { authedProcedure, router } from '../trpc';

/** `2026-01-01T12:00:00.123000+00:00`: microseconds and an explicit UTC offset, which every
 * ISO-8601 parser (Python's `fromisoformat` before 3.11 included) reads. */
export function isoTimestampMicro(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000+00:00');
}

const componentStatus = z.object({ state: z.enum(['ok', 'unmanaged', 'unavailable', 'degraded']), reason: z.string().optional() });

export const healthRouter = router({
  check: authedProcedure
    .meta({ openapi: { method: 'GET', path: '/health', tags: ['Health'], summary: 'Panel health', protect: true }, example: {} })
    .input(z.void())
    .output(
      z.object({
        success: z.literal(true),
        message: z.literal('Panel is online'),
        timestamp: z.string(),
        components: z.record(z.string(), componentStatus),
      }),
    )
    .query(({ ctx }) => ({
      success: true as const,
      message: 'Panel is online' as const,
      timestamp: isoTimestampMicro(ctx.services.ctx.clock.now()),
      components: ctx.services.ctx.status.snapshot(),
    })),
});
