import { initTRPC } from '@trpc/server';
import type { OpenApiMeta } from 'trpc-to-openapi';
import { forbidden, unauthorized } from '../core/errors';
import type { ApiContext } from './context';
import { toTrpcError } from './errors';
import { assertNoControlCharacters } from './input-guard';

/**
 * Procedure metadata: the OpenAPI route, the HTTP status of a success (202 for async work), who
 * may call it, and what the document shows: an example request that succeeds and the answers
 * particular to the operation. `api/openapi.ts` adds the answers every operation of its kind
 * has (400, 401, 403 by access, 413/415 for bodies, 500, 503); `test/contract/openapi-examples.test.ts`
 * replays all of them against a server.
 */
export type ApiMeta = OpenApiMeta<{ successStatus?: number; access?: Access; example?: ExampleRequest; answers?: Record<number, DocumentedAnswer> }>;

/** A request as the document shows it: path parameters, query parameters, JSON body. */
export interface ExampleRequest {
  params?: Record<string, string | number>;
  query?: Record<string, string | number>;
  body?: Record<string, unknown>;
}

/** An answer of one operation: the example message, and a request that gets it on a panel holding the examples' data. */
export interface DocumentedAnswer {
  message: string;
  description: string;
  /** Absent where no single request provokes it (a reseller at its limit, a full address pool); the examples test says so. */
  request?: ExampleRequest;
  /** The contract's one error with `success: true`: DELETE /nodes/{id} of an unknown id. */
  success?: true;
}

/** Who may call a procedure; the authorization matrix test reads this from the router itself. */
export type Access = 'public' | 'any_key' | 'main_admin' | 'main_admin_strict';

const t = initTRPC
  .context<ApiContext>()
  .meta<ApiMeta>()
  .create({
    errorFormatter({ shape, error }) {
      // tRPC clients get the domain message and code, never a stack.
      const mapped = toTrpcError(error);
      return {
        ...shape,
        message: mapped.message,
        code: shape.code,
        data: { code: mapped.code, httpStatus: shape.data.httpStatus, path: shape.data.path },
      };
    },
  });

export const router = t.router;
export const createCallerFactory = t.createCallerFactory;

/** Turns thrown domain errors into TRPCErrors with the same message for both transports. */
const mapErrors = t.middleware(async ({ next }) => {
  const result = await next();
  if (!result.ok) throw toTrpcError(result.error);
  return result;
});

/**
 * Control characters are refused in every string field of every procedure, on both transports
 * (REST calls procedures through a caller, so this runs there too), before any service or SQL
 * sees them.
 */
const refuseControlCharacters = t.middleware(async ({ getRawInput, next }) => {
  assertNoControlCharacters(await getRawInput());
  return next();
});

const baseProcedure = t.procedure.use(mapErrors).use(refuseControlCharacters);

export const publicProcedure = baseProcedure.meta({ access: 'public' });

const authenticate = t.middleware(async ({ ctx, next }) => {
  const principal = await ctx.services.auth.authenticate(ctx.apiKey);
  if (ctx.restrictToSubAdminId !== undefined && !(principal.kind === 'sub_admin' && principal.subAdminId === ctx.restrictToSubAdminId)) {
    throw unauthorized('Invalid or inactive API key');
  }
  return next({ ctx: { ...ctx, principal } });
});

/** Any valid key: main admin or an active sub-admin. */
export const authedProcedure = baseProcedure.use(authenticate).meta({ access: 'any_key' });

/**
 * Main admin only. The contract words the refusal two ways: groups Nodes, Server settings,
 * Bot integration and Ports listing say "…: Main admin API key required."; Sub-admin
 * management, Ports create and assignment delete say just "Permission denied".
 */
export const mainAdminProcedure = authedProcedure
  .use(({ ctx, next }) => {
    if (ctx.principal.kind !== 'main') throw forbidden('Permission denied');
    return next();
  })
  .meta({ access: 'main_admin' });

export const mainAdminStrictProcedure = authedProcedure
  .use(({ ctx, next }) => {
    if (ctx.principal.kind !== 'main') throw forbidden('Permission denied: Main admin API key required.');
    return next();
  })
  .meta({ access: 'main_admin_strict' });
