import { z } from 'zod';
import { PORTS_TABLE_PROTOCOL, PROTOCOLS, type EnableField, type MaterialField, type PasswordField, type ServersField } from '../../core/protocols/table';
import { EMPTY_BODY, NOT_FOUND, NOT_FOUND_REVOKE, USER_EXISTS, USER_FIELD_SCHEMAS as rules } from '../../core/services/users/fields';
import { strictInput } from '../input-guard';
import { authedProcedure, router } from '../trpc';

/**
 * Users: any key. A sub-admin only ever sees and touches its own users (the service scopes
 * every call by the principal). Body fields are typed strictly (a string where a number
 * belongs is a 400 naming the field); ranges, formats and the contract's fixed messages
 * ("Username is required.", …) are checked in the service so tRPC clients get them too.
 */

const tags = ['Users'];
const username = z.string().meta({ description: 'The user\'s name (path parameter).' });

const serverIds = z.array(z.string()).nullable().meta({ description: 'Server ids such as "main", "node_1"; empty or null = every server the owner may use.' });

/** Builds `{field: schema}` for fields named by the protocol table, keeping their literal names in the types. */
function shapeOf<K extends string, S extends z.ZodType>(fields: readonly K[], schema: (field: K) => S): Record<K, S> {
  return Object.fromEntries(fields.map((f) => [f, schema(f)])) as Record<K, S>;
}
const serversFields = PROTOCOLS.map((p) => p.api.servers as ServersField);
const nameOf = (field: string) => PROTOCOLS.find((p) => p.api.enable === field || p.api.password === field || p.api.servers === field || field in p.material.apiFields)!.displayName;

const protocolInputFields = Object.fromEntries(
  PROTOCOLS.flatMap((p) => [
    [p.api.enable, z.boolean().optional().meta({ description: `Enable ${p.displayName} for the user.` })],
    ...(p.api.password ? [[p.api.password, rules.password(p.api.password).optional().meta({ description: `${p.displayName} password; generated when the protocol is enabled without one.` })]] : []),
  ]),
) as Record<EnableField, z.ZodOptional<z.ZodBoolean>> & Record<PasswordField, z.ZodOptional<z.ZodString>>;

const userFields = {
  max_clients: rules.max_clients.optional().meta({ description: 'Concurrent connections across all protocols and servers (default 1).' }),
  activation_type: z.enum(['fixed_date', 'flexible_days']).optional(),
  pending_activation_days: rules.pending_activation_days.nullable().optional().meta({ description: 'flexible_days: days counted from the first connection (required for flexible_days).' }),
  expiry_date_str: rules.expiry_date_str.nullable().optional().meta({ description: 'fixed_date: last valid day, YYYY-MM-DD (valid through that whole day, UTC). Empty or null = no expiry.' }),
  expiry_days: rules.expiry_days.nullable().optional().meta({ description: 'fixed_date: days from now, when expiry_date_str is absent. 0 or null = no expiry.' }),
  data_limit: rules.data_limit.nullable().optional().meta({ description: '0 or null = unlimited.' }),
  data_limit_unit: z.enum(['MB', 'GB', 'TB']).optional().meta({ description: 'Binary units (1 GB = 1024^3 bytes); default GB.' }),
  data_limit_reset_strategy: z.enum(['no_reset', 'day', 'week', 'month', 'year']).optional(),
  ...protocolInputFields,
  nodes: serverIds.optional(),
  notes: rules.notes.nullable().optional(),
  sub_admin_id: rules.sub_admin_id.nullable().optional().meta({ description: 'Main admin only: the reseller that owns the user (null = the main admin). Ignored for sub-admin keys.' }),
};

const createInput = strictInput({
  username: rules.username.optional().meta({ description: 'Required unless bulk_count is sent: 3-32 letters, digits, `_`, `.` or `-`.' }),
  bulk_count: rules.bulk_count.nullable().optional().meta({ description: '1..1000 users with random names (user1234); wins over username when both are sent.' }),
  ...userFields,
  // The legacy alias is the same rule as on edit: a bot that sends it gets the servers it named.
  allowed_nodes: serverIds.optional().meta({ description: 'Legacy alias of nodes.' }),
});

const updateInput = strictInput({
  username,
  ...userFields,
  allowed_nodes: serverIds.optional().meta({ description: 'Legacy alias of nodes.' }),
  is_active: z.boolean().optional(),
});

const byName = strictInput({ username });

const statusEnum = z.enum(['active', 'disabled', 'limited', 'expired', 'on_hold']);
const unitEnum = z.enum(['MB', 'GB', 'TB']);

const listItem = z.object({
  username: z.string(),
  status: statusEnum,
  is_active: z.boolean(),
  is_online: z.boolean(),
  data_limit: z.number(),
  data_limit_unit: unitEnum,
  total_traffic_bytes: z.number(),
  expiry_date: z.string().nullable(),
  max_clients: z.number(),
  sub_admin_id: rules.sub_admin_id.nullable(),
});

const serverView = z.object({
  name: z.string(),
  is_tunnel: z.literal(false),
  address: z.string(),
  port: z.number(),
  protocol: z.enum(['udp', 'tcp']),
});

const detailOutput = z.object({
  success: z.literal(true),
  username: z.string(),
  status: statusEnum,
  is_active: z.boolean(),
  is_online: z.boolean(),
  active_connections: z.number(),
  max_clients: z.number(),
  data_limit: z.number(),
  data_limit_unit: unitEnum,
  data_limit_bytes: z.number(),
  data_limit_reset_strategy: z.enum(['no_reset', 'day', 'week', 'month', 'year']),
  upload_bytes: z.number(),
  download_bytes: z.number(),
  total_traffic_bytes: z.number(),
  activation_type: z.enum(['fixed_date', 'flexible_days']),
  expiry_date: z.string().nullable(),
  pending_activation_days: rules.pending_activation_days.nullable(),
  first_connection_at: z.string().nullable(),
  notes: z.string().nullable(),
  sub_admin_id: rules.sub_admin_id.nullable(),
  nodes: z.array(z.string()),
  subscription_url: z.string(),
  // Each protocol's flag, password and material together, in the table's order.
  ...(Object.fromEntries(
    PROTOCOLS.flatMap((p) => [
      [p.api.enable, z.boolean()],
      ...(p.api.password ? [[p.api.password, z.string().nullable()]] : []),
      ...Object.keys(p.material.apiFields).map((f) => [f, z.string().nullable()]),
    ]),
  ) as Record<EnableField, z.ZodBoolean> & Record<PasswordField | MaterialField, z.ZodNullable<z.ZodString>>),
  ...shapeOf(serversFields, (f) => z.array(serverView).meta({ description: `${nameOf(f)} servers the user may dial (only where the protocol runs).` })),
});

const messageOutput = z.object({ success: z.literal(true), message: z.string() });

export const usersRouter = router({
  // Registered before `/users/{username}` so the literal path wins in the REST adapter.
  listAll: authedProcedure
    .meta({ openapi: { method: 'GET', path: '/users/list_all', tags, summary: 'List users (main admin: grouped by reseller)', protect: true }, example: {} })
    .input(z.void())
    .output(
      z.union([
        z.object({
          success: z.literal(true),
          main_admin: z.object({ users: z.array(listItem) }),
          sub_admins: z.array(z.object({ id: z.number(), username: z.string(), users: z.array(listItem) })),
        }),
        z.object({ success: z.literal(true), users: z.array(listItem) }),
      ]),
    )
    .query(async ({ ctx }) => {
      const result = await ctx.services.users.listAll(ctx.principal);
      if (result.kind === 'sub_admin') return { success: true as const, users: result.users };
      return { success: true as const, main_admin: result.main_admin, sub_admins: result.sub_admins };
    }),

  create: authedProcedure
    .meta({
      openapi: { method: 'POST', path: '/users', tags, summary: 'Create a user, or bulk_count users with random names', protect: true },
      example: {
        body: {
          username: 'test_user',
          max_clients: 2,
          activation_type: 'fixed_date',
          expiry_date_str: '2026-12-31',
          data_limit: 50,
          data_limit_unit: 'GB',
          [PROTOCOLS[0]!.api.enable]: true,
        },
      },
      answers: {
        400: {
          message: 'Username is required.',
          description: 'No username and no bulk_count, or a field is unknown, of the wrong type or out of range (the message names it).',
          request: { body: { max_clients: 1 } },
        },
        403: {
          message: 'User limit reached: this sub-admin may have at most 100 users (100 exist).',
          description: "A sub-admin key over its max_users_limit or its traffic quota (the whole batch is refused).",
        },
        409: {
          message: USER_EXISTS,
          description: 'A user of that name exists (or, rarely, a tunnel address pool is full).',
          request: { body: { username: 'test_user' } },
        },
      },
    })
    .input(createInput)
    .output(z.object({ success: z.literal(true), message: z.literal('Users created successfully.'), created_users: z.array(z.string()) }))
    .mutation(async ({ ctx, input }) => {
      const { created_users } = await ctx.services.users.create(ctx.principal, input);
      return { success: true as const, message: 'Users created successfully.' as const, created_users };
    }),

  get: authedProcedure
    .meta({
      openapi: { method: 'GET', path: '/users/{username}', tags, summary: 'User detail: status, usage, protocols and servers', protect: true },
      example: { params: { username: 'test_user' } },
      answers: { 404: { message: NOT_FOUND, description: 'No such user, or one this key may not see.', request: { params: { username: 'unknown_user' } } } },
    })
    .input(byName)
    .output(detailOutput)
    .query(async ({ ctx, input }) => ({ success: true as const, ...(await ctx.services.users.get(ctx.principal, input.username)) })),

  update: authedProcedure
    .meta({
      openapi: { method: 'PUT', path: '/users/{username}', tags, summary: 'Edit a user (accepts legacy allowed_nodes)', protect: true },
      example: { params: { username: 'test_user' }, body: { max_clients: 3, data_limit: 100, data_limit_unit: 'GB', notes: 'VIP user' } },
      answers: {
        400: {
          message: EMPTY_BODY,
          description: 'An empty or non-JSON body, or a field that is unknown, of the wrong type or out of range (the message names it).',
          request: { params: { username: 'test_user' }, body: {} },
        },
        404: {
          message: NOT_FOUND,
          description: 'No such user, or one this key may not see.',
          request: { params: { username: 'unknown_user' }, body: { notes: 'x' } },
        },
        409: { message: 'address pool 10.66.0.0/16 is full', description: "Enabling a protocol that needs a tunnel address when its pool is full." },
      },
    })
    .input(updateInput)
    .output(messageOutput)
    .mutation(async ({ ctx, input }) => {
      const { username: name, ...fields } = input;
      await ctx.services.users.update(ctx.principal, name, fields);
      return { success: true as const, message: 'User updated successfully.' };
    }),

  toggle: authedProcedure
    .meta({
      openapi: { method: 'POST', path: '/users/{username}/toggle', tags, summary: 'Enable or disable a user on every protocol', protect: true },
      example: { params: { username: 'test_user' } },
      answers: { 404: { message: NOT_FOUND, description: 'No such user, or one this key may not see.', request: { params: { username: 'unknown_user' } } } },
    })
    .input(byName)
    .output(z.object({ success: z.literal(true), message: z.literal('User toggled'), is_active: z.boolean() }))
    .mutation(async ({ ctx, input }) => {
      const { is_active } = await ctx.services.users.toggle(ctx.principal, input.username);
      return { success: true as const, message: 'User toggled' as const, is_active };
    }),

  revoke: authedProcedure
    .meta({
      openapi: {
        method: 'POST',
        path: '/users/{username}/revoke',
        tags,
        summary: 'Replace the subscription token (the old link stops working at once)',
        protect: true,
      },
      example: { params: { username: 'test_user' } },
      answers: {
        404: {
          message: NOT_FOUND_REVOKE,
          description: 'No such user, or one this key may not see (this answer ends with a period).',
          request: { params: { username: 'unknown_user' } },
        },
      },
    })
    .input(byName)
    .output(z.object({ success: z.literal(true), message: z.string(), new_subscription_url: z.string() }))
    .mutation(async ({ ctx, input }) => {
      const { new_subscription_url } = await ctx.services.users.revoke(ctx.principal, input.username);
      return { success: true as const, message: 'Token revoked instantly. Certificate generation running in background.', new_subscription_url };
    }),

  resetTraffic: authedProcedure
    .meta({
      openapi: { method: 'POST', path: '/users/{username}/reset_traffic', tags, summary: "Zero the user's usage", protect: true },
      example: { params: { username: 'test_user' } },
      answers: { 404: { message: NOT_FOUND, description: 'No such user, or one this key may not see.', request: { params: { username: 'unknown_user' } } } },
    })
    .input(byName)
    .output(z.object({ success: z.literal(true), message: z.string(), user_re_enabled: z.boolean() }))
    .mutation(async ({ ctx, input }) => {
      const { user_re_enabled } = await ctx.services.users.resetTraffic(ctx.principal, input.username);
      return { success: true as const, message: `Traffic reset for '${input.username}'.`, user_re_enabled };
    }),

  delete: authedProcedure
    .meta({
      openapi: { method: 'DELETE', path: '/users/{username}', tags, summary: 'Delete a user', protect: true },
      example: { params: { username: 'test_user' } },
      answers: { 404: { message: NOT_FOUND, description: 'No such user, or one this key may not see.', request: { params: { username: 'unknown_user' } } } },
    })
    .input(byName)
    .output(messageOutput)
    .mutation(async ({ ctx, input }) => {
      await ctx.services.users.delete(ctx.principal, input.username);
      return { success: true as const, message: `User '${input.username}' deleted successfully.` };
    }),

  subscription: authedProcedure
    .meta({
      openapi: { method: 'GET', path: '/users/{username}/sub', tags, summary: "The user's subscription URL", protect: true },
      example: { params: { username: 'test_user' } },
      answers: { 404: { message: NOT_FOUND, description: 'No such user, or one this key may not see.', request: { params: { username: 'unknown_user' } } } },
    })
    .input(byName)
    .output(z.object({ success: z.literal(true), sub_url: z.string() }))
    .query(async ({ ctx, input }) => ({ success: true as const, sub_url: await ctx.services.users.subscriptionUrl(ctx.principal, input.username) })),

  ovpnLinks: authedProcedure
    .meta({
      openapi: {
        method: 'GET',
        path: '/users/{username}/all_ovpn_links',
        tags,
        summary: `One ${PORTS_TABLE_PROTOCOL.displayName} profile link per server and port the user may use`,
        protect: true,
      },
      example: { params: { username: 'test_user' } },
      answers: { 404: { message: NOT_FOUND, description: 'No such user, or one this key may not see.', request: { params: { username: 'unknown_user' } } } },
    })
    .input(byName)
    .output(z.object({ success: z.literal(true), username: z.string(), links: z.array(z.object({ name: z.string(), url: z.string() })) }))
    .query(async ({ ctx, input }) => ({
      success: true as const,
      username: input.username,
      links: await ctx.services.users.clientConfigLinks(ctx.principal, input.username, PORTS_TABLE_PROTOCOL.id),
    })),
});
