import { z } from 'zod';
import { NODE_PORT_FIELD } from '../../core/protocols/table';
import { authedProcedure, mainAdminStrictProcedure, router } from '../trpc';
import { strictInput } from '../input-guard';
import { isoTimestampMicro } from './health';

const nodeStatus = z.enum(['installing', 'active', 'error', 'deleting', 'offline']);

/** The main admin's view; listed first in the union so its extra fields survive output parsing. */
const nodeDetails = z.object({
  id: z.number().int(),
  name: z.string(),
  ip_address: z.string(),
  ssh_port: z.number().int(),
  ssh_username: z.string(),
  [NODE_PORT_FIELD]: z.number().int(),
  protocol: z.enum(['udp', 'tcp']),
  status: nodeStatus,
  status_message: z.string().nullable(),
  total_traffic_bytes: z.number(),
  sync_all_users: z.boolean(),
  communication_method: z.string().nullable(),
  created_at: z.string(),
});

/** What a reseller may see of a node. */
const nodeBrief = z.object({ id: z.number().int(), name: z.string(), status: nodeStatus });

/** Fields of create and edit; the service checks ranges and formats so tRPC clients get the same messages. */
const nodeFields = {
  name: z.string().nullish(),
  ip_address: z.string().nullish(),
  ssh_password: z.string().nullish(),
  ssh_port: z.number().optional(),
  ssh_username: z.string().optional(),
  [NODE_PORT_FIELD]: z.number().optional(),
  protocol: z.enum(['udp', 'tcp']).optional(),
  sync_all_users: z.boolean().optional(),
  communication_method: z.string().nullish(),
};

/** `null` for name/ip/password means "not given", as in the reference panel's forms. */
function toNodeInput(input: { [K in keyof typeof nodeFields]?: z.infer<(typeof nodeFields)[K]> }) {
  return {
    name: input.name ?? undefined,
    ip_address: input.ip_address ?? undefined,
    ssh_password: input.ssh_password ?? undefined,
    ssh_port: input.ssh_port,
    ssh_username: input.ssh_username,
    [NODE_PORT_FIELD]: input[NODE_PORT_FIELD],
    protocol: input.protocol,
    sync_all_users: input.sync_all_users,
    communication_method: input.communication_method,
  };
}

const nodeId = z.coerce.number().int();

export const nodesRouter = router({
  list: authedProcedure
    .meta({
      openapi: { method: 'GET', path: '/nodes', tags: ['Nodes'], summary: 'List nodes (resellers see id, name and status only)', protect: true },
    })
    .input(z.void())
    .output(z.object({ success: z.literal(true), nodes: z.array(z.union([nodeDetails, nodeBrief])) }))
    .query(async ({ ctx }) => {
      const nodes = await ctx.services.nodes.list(ctx.principal);
      return {
        success: true as const,
        nodes: nodes.map((n) => ('created_at' in n ? { ...n, created_at: isoTimestampMicro(n.created_at) } : n)),
      };
    }),

  create: mainAdminStrictProcedure
    .meta({
      openapi: { method: 'POST', path: '/nodes', tags: ['Nodes'], summary: 'Add a node (checks SSH, then provisions in the background)', protect: true },
      successStatus: 202,
    })
    .input(strictInput(nodeFields))
    .output(z.object({ success: z.literal(true), message: z.literal('Node created and installation started in background.'), node_id: z.number().int() }))
    .mutation(async ({ ctx, input }) => {
      const { nodeId: id } = await ctx.services.nodes.create(ctx.principal, toNodeInput(input));
      return { success: true as const, message: 'Node created and installation started in background.' as const, node_id: id };
    }),

  update: mainAdminStrictProcedure
    .meta({
      openapi: { method: 'PUT', path: '/nodes/{id}', tags: ['Nodes'], summary: 'Edit a node (syncs only the services that changed)', protect: true },
    })
    .input(strictInput({ id: nodeId, ...nodeFields }))
    .output(z.object({ success: z.literal(true), message: z.literal('Node updated. Sync triggered only for changed services.') }))
    .mutation(async ({ ctx, input }) => {
      await ctx.services.nodes.update(ctx.principal, input.id, toNodeInput(input));
      return { success: true as const, message: 'Node updated. Sync triggered only for changed services.' as const };
    }),

  delete: mainAdminStrictProcedure
    .meta({
      openapi: { method: 'DELETE', path: '/nodes/{id}', tags: ['Nodes'], summary: 'Delete a node (in the background; force mode after a failed attempt)', protect: true },
      successStatus: 202,
    })
    .input(strictInput({ id: nodeId }))
    .output(z.object({ success: z.literal(true), message: z.literal('Deletion started') }))
    .mutation(async ({ ctx, input }) => {
      await ctx.services.nodes.remove(ctx.principal, input.id);
      return { success: true as const, message: 'Deletion started' as const };
    }),
});
