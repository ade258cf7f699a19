import { z } from 'zod';
import { mainAdminProcedure, router } from '../trpc';
import { strictInput } from '../input-guard';

const tags = ['Sub-admins'];

/** Everything a reseller can be created or edited with; ranges and required fields are checked by the service. */
const editableFields = {
  password: z.string().optional().describe('Required on create; stored as a scrypt hash.'),
  subscription_port: z.number().nullable().optional().describe("TCP port 1024–65535 on the main server serving this reseller's /sub and /download; null for none."),
  panel_port: z.number().nullable().optional().describe("TCP port 1024–65535 on the main server serving the API for this reseller's key only; null for none."),
  max_users_limit: z.number().nullable().optional().describe('Most users the reseller may own; null for no limit.'),
  total_usage_quota_gb: z.number().nullable().optional().describe("Traffic quota over all of the reseller's users, in GiB; null or 0 for none."),
  is_active: z.boolean().optional().describe("false makes the reseller's key invalid and disables its users."),
  notes: z.string().nullable().optional(),
  support_contact: z.string().nullable().optional().describe("Shown on this reseller's customers' subscription pages (a Telegram handle, URL or phone; at most 200 characters, one line); null or empty = the global contact."),
  allowed_servers: z.array(z.string()).nullable().optional().describe('Server ids from GET /public/all_selectable_servers.'),
};

const pathId = { id: z.coerce.number().int() };

const subAdminView = z.object({
  id: z.number(),
  username: z.string(),
  subscription_port: z.number().nullable(),
  panel_port: z.number().nullable(),
  max_users_limit: z.number().nullable(),
  total_usage_quota_gb: z.number().nullable(),
  is_active: z.boolean(),
  notes: z.string().nullable(),
  support_contact: z.string().nullable(),
  allowed_servers: z.array(z.string()),
  users_count: z.number(),
  used_traffic_bytes: z.number(),
});

const messageOnly = z.object({ success: z.literal(true), message: z.string() });

export const subAdminsRouter = router({
  list: mainAdminProcedure
    .meta({ openapi: { method: 'GET', path: '/sub_admins', tags, summary: 'List sub-admins (resellers) with user counts and usage', protect: true } })
    .input(z.void())
    .output(z.object({ success: z.literal(true), sub_admins: z.array(subAdminView) }))
    .query(async ({ ctx }) => ({ success: true as const, sub_admins: await ctx.services.subAdmins.list(ctx.principal) })),

  create: mainAdminProcedure
    .meta({
      openapi: { method: 'POST', path: '/sub_admins', tags, summary: 'Create a sub-admin; its API key is shown only in this answer', protect: true },
    })
    .input(strictInput({ username: z.string().optional(), ...editableFields }))
    .output(
      z.object({
        success: z.literal(true),
        message: z.literal('Sub-admin created successfully and ports configured.'),
        sub_admin: z.object({ id: z.number(), username: z.string(), api_key: z.string() }),
      }),
    )
    .mutation(async ({ ctx, input }) => ({
      success: true as const,
      message: 'Sub-admin created successfully and ports configured.' as const,
      sub_admin: await ctx.services.subAdmins.create(ctx.principal, input),
    })),

  update: mainAdminProcedure
    .meta({ openapi: { method: 'PUT', path: '/sub_admins/{id}', tags, summary: 'Edit a sub-admin (ports move in one transaction)', protect: true } })
    .input(strictInput({ ...pathId, ...editableFields }))
    .output(z.object({ success: z.literal(true), message: z.literal('Sub-admin updated successfully.'), sub_admin: z.object({ id: z.number() }) }))
    .mutation(async ({ ctx, input: { id, ...fields } }) => ({
      success: true as const,
      message: 'Sub-admin updated successfully.' as const,
      sub_admin: await ctx.services.subAdmins.update(ctx.principal, id, fields),
    })),

  resetUsage: mainAdminProcedure
    .meta({
      openapi: { method: 'POST', path: '/sub_admins/{id}/reset_usage', tags, summary: "Zero a sub-admin's total usage and re-enable its users", protect: true },
    })
    .input(strictInput(pathId))
    .output(messageOnly)
    .mutation(async ({ ctx, input }) => {
      const { reEnabled } = await ctx.services.subAdmins.resetUsage(ctx.principal, input.id);
      return { success: true as const, message: `Total data usage reset successfully. ${reEnabled} user(s) were re-enabled.` };
    }),

  delete: mainAdminProcedure
    .meta({ openapi: { method: 'DELETE', path: '/sub_admins/{id}', tags, summary: 'Delete a sub-admin and all of its users', protect: true } })
    .input(strictInput(pathId))
    .output(z.object({ success: z.literal(true), message: z.literal('Sub-admin deleted successfully.') }))
    .mutation(async ({ ctx, input }) => {
      await ctx.services.subAdmins.delete(ctx.principal, input.id);
      return { success: true as const, message: 'Sub-admin deleted successfully.' as const };
    }),
});
