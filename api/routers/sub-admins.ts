import { z } from 'zod';
import { mainAdminProcedure, router } from '../trpc';
import { numberAtLeast, wholeNumber } from '../../core/services/users/fields';
import { strictInput } from '../input-guard';

const tags = ['Sub-admins'];

/** The sub-admin service's rule for reseller ports (above the privileged range), with its sentence. */
const resellerPort = (field: string) => wholeNumber(1024, 65535, `Field '${field}' must be an integer between 1024 and 65535.`);

/** Everything a reseller can be created or edited with; bounds are refused here with the service's sentences, required fields by the service. */
const editableFields = {
  password: z.string().optional().describe('Required on create; stored as a scrypt hash.'),
  subscription_port: resellerPort('subscription_port').nullable().optional().describe("TCP port 1024–65535 on the main server serving this reseller's /sub and /download; null for none."),
  panel_port: resellerPort('panel_port').nullable().optional().describe("TCP port 1024–65535 on the main server serving the API for this reseller's key only; null for none."),
  max_users_limit: wholeNumber(0, Number.MAX_SAFE_INTEGER, "Field 'max_users_limit' must be a whole number of users, 0 or more.").nullable().optional().describe('Most users the reseller may own; null for no limit.'),
  total_usage_quota_gb: numberAtLeast(0, "Field 'total_usage_quota_gb' must be a number of GB, 0 or more.").nullable().optional().describe("Traffic quota over all of the reseller's users, in GiB; null or 0 for none."),
  is_active: z.boolean().optional().describe("false makes the reseller's key invalid and disables its users."),
  notes: z.string().nullable().optional(),
  support_contact: z.string().nullable().optional().describe("Shown on this reseller's customers' subscription pages (a Telegram handle, URL or phone; at most 200 characters, one line); null or empty = the global contact."),
  allowed_servers: z.array(z.string()).nullable().optional().describe('Server ids from GET /public/all_selectable_servers.'),
};

const pathId = { id: z.coerce.number().int() };

const subAdminView = z.object({
  id: z.number(),
  username: z.string(),
  subscription_port: resellerPort('subscription_port').nullable(),
  panel_port: resellerPort('panel_port').nullable(),
  max_users_limit: wholeNumber(0, Number.MAX_SAFE_INTEGER, "Field 'max_users_limit' must be a whole number of users, 0 or more.").nullable(),
  total_usage_quota_gb: numberAtLeast(0, "Field 'total_usage_quota_gb' must be a number of GB, 0 or more.").nullable(),
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
    .meta({
      openapi: { method: 'GET', path: '/sub_admins', tags, summary: 'List sub-admins (resellers) with user counts and usage', protect: true },
      example: {},
    })
    .input(z.void())
    .output(z.object({ success: z.literal(true), sub_admins: z.array(subAdminView) }))
    .query(async ({ ctx }) => ({ success: true as const, sub_admins: await ctx.services.subAdmins.list(ctx.principal) })),

  create: mainAdminProcedure
    .meta({
      openapi: { method: 'POST', path: '/sub_admins', tags, summary: 'Create a sub-admin; its API key is shown only in this answer', protect: true },
      example: {
        body: {
          username: 'sa1',
          password: 'pass',
          subscription_port: 2096,
          panel_port: 8888,
          max_users_limit: 100,
          total_usage_quota_gb: 500,
          is_active: true,
          notes: 'Reseller A',
          allowed_servers: ['main'],
        },
      },
      answers: {
        400: {
          message: 'Username and password are required.',
          description: 'No username or no password, or a field that is unknown, of the wrong type or out of range (the message names it).',
          request: { body: { username: 'sa2' } },
        },
        409: {
          message: 'A sub-admin with this username already exists.',
          description: 'The username is taken, or a port is already used by another service.',
          request: { body: { username: 'sa1', password: 'pass' } },
        },
      },
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
    .meta({
      openapi: { method: 'PUT', path: '/sub_admins/{id}', tags, summary: 'Edit a sub-admin (ports move in one transaction)', protect: true },
      example: { params: { id: 1 }, body: { max_users_limit: 200, total_usage_quota_gb: 1000, notes: 'Upgraded' } },
      answers: {
        404: { message: 'Sub-admin not found', description: 'No sub-admin has this id.', request: { params: { id: 999999 }, body: { notes: 'x' } } },
        409: {
          message: 'Port 8443/tcp on main is already used by the panel.',
          description: 'A new port is already used by another service on the main server.',
        },
      },
    })
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
      example: { params: { id: 1 } },
      answers: {
        404: {
          message: 'Sub-admin not found.',
          description: 'No sub-admin has this id (this answer ends with a period).',
          request: { params: { id: 999999 } },
        },
      },
    })
    .input(strictInput(pathId))
    .output(messageOnly)
    .mutation(async ({ ctx, input }) => {
      const { reEnabled } = await ctx.services.subAdmins.resetUsage(ctx.principal, input.id);
      return { success: true as const, message: `Total data usage reset successfully. ${reEnabled} user(s) were re-enabled.` };
    }),

  delete: mainAdminProcedure
    .meta({
      openapi: { method: 'DELETE', path: '/sub_admins/{id}', tags, summary: 'Delete a sub-admin and all of its users', protect: true },
      example: { params: { id: 1 } },
      answers: { 404: { message: 'Sub-admin not found', description: 'No sub-admin has this id.', request: { params: { id: 999999 } } } },
    })
    .input(strictInput(pathId))
    .output(z.object({ success: z.literal(true), message: z.literal('Sub-admin deleted successfully.') }))
    .mutation(async ({ ctx, input }) => {
      await ctx.services.subAdmins.delete(ctx.principal, input.id);
      return { success: true as const, message: 'Sub-admin deleted successfully.' as const };
    }),
});
