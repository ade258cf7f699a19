import { z } from 'zod';
import { PORTS_TABLE_PROTOCOL } from '../../core/protocols/table';
import { mainAdminProcedure, mainAdminStrictProcedure, router } from '../trpc';
import { wholeNumber } from '../../core/services/users/fields';
import { strictInput } from '../input-guard';

const protocol = z.enum(['udp', 'tcp']);
const DEFAULT_PORT = PORTS_TABLE_PROTOCOL.defaultPorts[0]!;
const server = z.object({ id: z.string(), name: z.string() });
const serversAnswer = z.object({ success: z.literal(true), servers: z.array(server) });

export const portsRouter = router({
  list: mainAdminStrictProcedure
    .meta({
      openapi: {
        method: 'GET',
        path: '/public/ports',
        tags: ['Ports'],
        summary: `Default and custom ${PORTS_TABLE_PROTOCOL.displayName} ports per server`,
        protect: true,
      },
      example: {},
    })
    .input(z.void())
    .output(
      z.object({
        success: z.literal(true),
        default_ports: z.array(z.object({ is_default: z.literal(true), name: z.string(), public_port: z.number(), protocol })),
        custom_ports: z.array(
          z.object({ port_id: z.number(), server_identifier: z.string(), public_port: z.number(), protocol, server_name: z.string() }),
        ),
      }),
    )
    .query(async ({ ctx }) => ({ success: true as const, ...(await ctx.services.ports.overview(ctx.principal)) })),

  serversForPorts: mainAdminStrictProcedure
    .meta({
      openapi: {
        method: 'GET',
        path: '/public/servers_for_ports',
        tags: ['Ports'],
        summary: 'Servers (main and nodes) a port can be assigned to',
        protect: true,
      },
      example: {},
    })
    .input(z.void())
    .output(serversAnswer)
    .query(async ({ ctx }) => ({ success: true as const, servers: await ctx.services.ports.servers(ctx.principal) })),

  configure: mainAdminProcedure
    .meta({
      openapi: { method: 'POST', path: '/public/ports', tags: ['Ports'], summary: 'Register a port and assign it to servers', protect: true },
      example: { body: { public_port: 443, protocol: 'tcp', server_ids: ['main', 'node_1'] } },
      answers: {
        400: {
          message: 'Missing info.',
          description: 'A field is missing or server_ids is empty, or a field is unknown, of the wrong type or out of range.',
          request: { body: { public_port: 443, protocol: 'tcp', server_ids: [] } },
        },
        409: {
          message: `Port ${DEFAULT_PORT.port}/${DEFAULT_PORT.protocol} on main is already used by ${PORTS_TABLE_PROTOCOL.displayName} (the server's default port).`,
          description: 'The port is already used by another service on one of the servers (the message names it).',
          request: { body: { public_port: DEFAULT_PORT.port, protocol: DEFAULT_PORT.protocol, server_ids: ['main'] } },
        },
      },
    })
    .input(
      strictInput({
        public_port: wholeNumber(1, 65535, "Field 'public_port' must be an integer between 1 and 65535.").nullable().optional(),
        protocol: z.string().nullable().optional(),
        server_ids: z.array(z.string()).nullable().optional(),
      }),
    )
    .output(z.object({ success: z.literal(true), message: z.literal('Port configured on selected servers.') }))
    .mutation(async ({ ctx, input }) => {
      await ctx.services.ports.configure(ctx.principal, input);
      return { success: true as const, message: 'Port configured on selected servers.' as const };
    }),

  deleteAssignment: mainAdminProcedure
    .meta({
      openapi: { method: 'DELETE', path: '/public/ports/assignment', tags: ['Ports'], summary: 'Remove a port from one server', protect: true },
      example: { query: { port_id: 1, server_identifier: 'node_1' } },
      answers: {
        400: {
          message: 'Missing info.',
          description: 'port_id or server_identifier is missing, or a field is unknown or of the wrong type.',
          request: { query: { port_id: 1 } },
        },
        404: {
          message: 'Port assignment not found.',
          description: 'That port is not assigned to that server.',
          request: { query: { port_id: 999999, server_identifier: 'main' } },
        },
      },
    })
    .input(
      strictInput({
        // Coerced: the OpenAPI document lists DELETE inputs as query parameters (strings), while
        // the contract's clients send a JSON body with a number; both must work.
        port_id: z.coerce.number().int().optional(),
        server_identifier: z.string().optional(),
      }),
    )
    .output(z.object({ success: z.literal(true), message: z.literal('Port assignment deleted.') }))
    .mutation(async ({ ctx, input }) => {
      await ctx.services.ports.deleteAssignment(ctx.principal, input);
      return { success: true as const, message: 'Port assignment deleted.' as const };
    }),

  allSelectableServers: mainAdminStrictProcedure
    .meta({
      openapi: {
        method: 'GET',
        path: '/public/all_selectable_servers',
        tags: ['Bot integration'],
        summary: "Server ids accepted in a sub-admin's allowed_servers and a user's nodes",
        protect: true,
      },
      example: {},
    })
    .input(z.void())
    .output(serversAnswer)
    .query(async ({ ctx }) => ({ success: true as const, servers: await ctx.services.ports.servers(ctx.principal) })),
});
