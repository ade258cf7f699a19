import { z } from 'zod';
import { authedProcedure, mainAdminStrictProcedure, router } from '../trpc';
import { strictInput } from '../input-guard';

const tags = ['Server settings'];

const supportContactView = z.object({
  success: z.literal(true),
  support_contact: z.string().nullable().describe("Main admin: the global contact; sub-admin: its own (null = it uses the global one)."),
  effective_support_contact: z.string().nullable().describe("What this key's customers see."),
});

export const settingsRouter = router({
  get: mainAdminStrictProcedure
    .meta({ openapi: { method: 'GET', path: '/server_settings', tags, summary: 'Server-wide VPN settings (the IPsec PSK)', protect: true }, example: {} })
    .input(z.void())
    .output(z.object({ success: z.literal(true), settings: z.object({ ipsec_psk: z.string() }) }))
    .query(async ({ ctx }) => ({ success: true as const, settings: await ctx.services.settings.get(ctx.principal) })),

  updateIpsecPsk: mainAdminStrictProcedure
    .meta({
      openapi: { method: 'POST', path: '/update_ipsec_psk', tags, summary: 'Replace the IPsec PSK on the main server and every node', protect: true },
      example: { body: { new_psk: 'MyNewSecurePSK_2026' } },
      answers: {
        400: {
          message: 'Invalid PSK. Cannot be empty or contain double quotes.',
          description: 'Empty, or holding a double quote, a control character or a line break.',
          request: { body: { new_psk: '' } },
        },
      },
    })
    .input(strictInput({ new_psk: z.string().nullable().optional() }))
    .output(z.object({ success: z.literal(true), message: z.string() }))
    .mutation(async ({ ctx, input }) => {
      const { nodesUpdated } = await ctx.services.settings.updateIpsecPsk(ctx.principal, input.new_psk);
      return { success: true as const, message: `IPsec PSK updated locally and on ${nodesUpdated} nodes.` };
    }),

  supportContact: authedProcedure
    .meta({
      openapi: {
        method: 'GET',
        path: '/support_contact',
        tags: ['Support contact'],
        summary: "The key's support contact shown on subscription pages: the global one (main admin) or the reseller's own",
        protect: true,
      },
      example: {},
    })
    .input(z.void())
    .output(supportContactView)
    .query(async ({ ctx }) => ({ success: true as const, ...(await ctx.services.settings.supportContact(ctx.principal)) })),

  updateSupportContact: authedProcedure
    .meta({
      openapi: {
        method: 'PUT',
        path: '/support_contact',
        tags: ['Support contact'],
        summary: "Set the global support contact (main admin) or the reseller's own (sub-admin key); null or empty clears it",
        protect: true,
      },
      example: { body: { support_contact: '@polygate_support' } },
    })
    .input(strictInput({ support_contact: z.string().nullable().optional().describe('A Telegram handle, URL or phone; at most 200 characters, one line.') }))
    .output(supportContactView.extend({ message: z.literal('Support contact updated.') }))
    .mutation(async ({ ctx, input }) => ({
      success: true as const,
      message: 'Support contact updated.' as const,
      ...(await ctx.services.settings.updateSupportContact(ctx.principal, input.support_contact)),
    })),
});
