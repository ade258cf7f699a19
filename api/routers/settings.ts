import { z } from 'zod';
import { mainAdminStrictProcedure, router } from '../trpc';

const tags = ['Server settings'];

export const settingsRouter = router({
  get: mainAdminStrictProcedure
    .meta({ openapi: { method: 'GET', path: '/server_settings', tags, summary: 'Server-wide VPN settings (the IPsec PSK)', protect: true } })
    .input(z.void())
    .output(z.object({ success: z.literal(true), settings: z.object({ ipsec_psk: z.string() }) }))
    .query(async ({ ctx }) => ({ success: true as const, settings: await ctx.services.settings.get(ctx.principal) })),

  updateIpsecPsk: mainAdminStrictProcedure
    .meta({
      openapi: { method: 'POST', path: '/update_ipsec_psk', tags, summary: 'Replace the IPsec PSK on the main server and every node', protect: true },
    })
    .input(z.object({ new_psk: z.string().nullable().optional() }))
    .output(z.object({ success: z.literal(true), message: z.string() }))
    .mutation(async ({ ctx, input }) => {
      const { nodesUpdated } = await ctx.services.settings.updateIpsecPsk(ctx.principal, input.new_psk);
      return { success: true as const, message: `IPsec PSK updated locally and on ${nodesUpdated} nodes.` };
    }),
});
