import { z } from 'zod';
import { NODE_PORT_FIELD, PORTS_TABLE_PROTOCOL } from '../../core/protocols/table';
import { DELETION_IN_PROGRESS_MESSAGE, MISSING_NODE_FIELDS_MESSAGE, NODE_NOT_FOUND_MESSAGE } from '../../core/services/nodes';
import { authedProcedure, mainAdminStrictProcedure, router } from '../trpc';
import { wholeNumber } from '../../core/services/users/fields';
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
  is_tunnel: z.boolean(),
  created_at: z.string(),
});

/** What a reseller may see of a node. */
const nodeBrief = z.object({ id: z.number().int(), name: z.string(), status: nodeStatus });

const DEFAULT_PORT = PORTS_TABLE_PROTOCOL.defaultPorts[0]!;

/** The node service's port rule and sentence, at the edge so the document shows the bounds. */
const port = (field: string) => wholeNumber(1, 65535, `Field '${field}' must be an integer between 1 and 65535.`);

/** Fields of create and edit. Bounds are refused here with the service's own sentences (so the document shows them); the service keeps the cross-field rules. */
const nodeFields = {
  name: z.string().nullish(),
  ip_address: z.string().nullish(),
  ssh_password: z.string().nullish(),
  ssh_port: port('ssh_port').optional().meta({ description: 'Default 22.' }),
  ssh_username: z
    .string()
    .regex(/^[a-z_][a-z0-9_-]{0,31}$/, { error: "Field 'ssh_username' must be a valid user name (lowercase letters, digits, '_' or '-', starting with a letter or '_', at most 32 characters)." })
    .optional()
    .meta({ description: 'Default root.' }),
  [NODE_PORT_FIELD]: port(NODE_PORT_FIELD).optional(),
  protocol: z.enum(['udp', 'tcp']).optional(),
  sync_all_users: z.boolean().optional(),
  communication_method: z
    .string()
    .nullish()
    .meta({ description: "How the panel controls the node: 'ssh' (the default and the only one implemented: the pinned SSH connection provisioning set up). Other values are refused." }),
  is_tunnel: z
    .boolean()
    .optional()
    .meta({ description: 'Operator marker for a node used as a tunnel/relay; stored and returned as given. Polygate attaches no behaviour to it (default false).' }),
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
    is_tunnel: input.is_tunnel,
  };
}

const nodeId = z.coerce.number().int();

export const nodesRouter = router({
  list: authedProcedure
    .meta({
      openapi: { method: 'GET', path: '/nodes', tags: ['Nodes'], summary: 'List nodes (resellers see id, name and status only)', protect: true },
      example: {},
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
      example: {
        body: {
          name: 'Node A',
          ip_address: '203.0.113.10',
          ssh_password: 'pass',
          [NODE_PORT_FIELD]: DEFAULT_PORT.port,
          protocol: DEFAULT_PORT.protocol,
          sync_all_users: false,
          communication_method: 'ssh',
        },
      },
      answers: {
        400: {
          message: MISSING_NODE_FIELDS_MESSAGE,
          description: 'name, ip_address or ssh_password is missing (this exact text whichever are), the SSH preflight failed (the reason), or a field is unknown, of the wrong type or out of range.',
          request: { body: { name: 'Node C' } },
        },
        409: {
          message: `Port ${DEFAULT_PORT.port}/${DEFAULT_PORT.protocol} on node_1 is already used by ${PORTS_TABLE_PROTOCOL.displayName}.`,
          description: "The node's port is already claimed on that server.",
        },
      },
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
      example: { params: { id: 1 }, body: { [NODE_PORT_FIELD]: DEFAULT_PORT.port + 1, protocol: 'tcp' } },
      answers: {
        404: { message: NODE_NOT_FOUND_MESSAGE, description: 'No node has this id.', request: { params: { id: 999999 }, body: { protocol: 'udp' } } },
        409: {
          message: `Port ${DEFAULT_PORT.port + 1}/tcp on node_1 is already used by another service.`,
          description: 'The new port is already claimed on that node (the message names the owner).',
        },
        423: { message: DELETION_IN_PROGRESS_MESSAGE, description: 'The node is being deleted.' },
      },
    })
    .input(strictInput({ id: nodeId, ...nodeFields }))
    .output(z.object({ success: z.literal(true), message: z.literal('Node updated. Sync triggered only for changed services.') }))
    .mutation(async ({ ctx, input }) => {
      await ctx.services.nodes.update(ctx.principal, input.id, toNodeInput(input));
      return { success: true as const, message: 'Node updated. Sync triggered only for changed services.' as const };
    }),

  delete: mainAdminStrictProcedure
    .meta({
      openapi: {
        method: 'DELETE',
        path: '/nodes/{id}',
        tags: ['Nodes'],
        summary: 'Delete a node (in the background; force mode after a failed attempt)',
        protect: true,
      },
      successStatus: 202,
      example: { params: { id: 1 } },
      answers: {
        404: {
          message: NODE_NOT_FOUND_MESSAGE,
          success: true,
          description: 'No node has this id. The contract keeps success: true here (delete is idempotent).',
          request: { params: { id: 999999 } },
        },
        423: { message: DELETION_IN_PROGRESS_MESSAGE, description: 'A deletion of this node is already queued or running.', request: { params: { id: 1 } } },
      },
    })
    .input(strictInput({ id: nodeId }))
    .output(z.object({ success: z.literal(true), message: z.literal('Deletion started') }))
    .mutation(async ({ ctx, input }) => {
      await ctx.services.nodes.remove(ctx.principal, input.id);
      return { success: true as const, message: 'Deletion started' as const };
    }),
});
