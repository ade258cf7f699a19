import { generateOpenApiDocument, type OpenAPIObject } from 'trpc-to-openapi';
import type { AnyProcedure } from '@trpc/server';
import { DatabaseBusyError } from '../core/db';
import { PROTOCOLS } from '../core/protocols/table';
import { INTERNAL_ERROR_MESSAGE } from './errors';
import { unknownFieldsMessage } from './input-guard';
import { JSON_BODY_MESSAGE, listRestRoutes, type RestRoute } from './rest';
import { appRouter } from './routers';
import type { DocumentedAnswer } from './trpc';

let cached: { baseUrl: string; doc: OpenAPIObject } | undefined;

/** The query parameter the document's 400 example of a GET sends (a name no operation takes). */
export const UNKNOWN_PARAMETER_PROBE = 'x_unknown';

/** The OpenAPI 3.1 document of /api/v1, generated from the router's own schemas. */
export function openApiDocument(baseUrl: string): OpenAPIObject {
  if (cached?.baseUrl === baseUrl) return cached.doc;
  const doc = generateOpenApiDocument(appRouter, {
    title: 'polygate API',
    description:
      `Multi-protocol VPN panel (${PROTOCOLS.map((p) => p.displayName).join(', ')}). ` +
      'Every request needs the X-API-KEY header: the main admin key or a sub-admin (reseller) key. Errors are `{"success": false, "message": "…"}`. ' +
      'A path asked with a method it does not serve is a 405 with an `Allow` header.',
    version: '1.0.0',
    openApiVersion: '3.1.0',
    baseUrl: `${baseUrl}/api/v1`,
    securitySchemes: { ApiKey: { type: 'apiKey', in: 'header', name: 'X-API-KEY' } },
  });
  describeAnswers(doc, listRestRoutes());
  cached = { baseUrl, doc };
  return doc;
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const ENVELOPE = '#/components/schemas/ErrorEnvelope';
const KEPT_NOT_FOUND = '#/components/schemas/NotFoundKept';

/**
 * Every answer an operation can give, by status: the ones particular to it (`meta.answers`)
 * over the ones every operation of its kind has. The generator's own error list (tRPC's shape,
 * 404 guessed from the method, no 202/409/423) is replaced by this.
 */
export function answersOf(route: RestRoute): Record<number, DocumentedAnswer> {
  const out: Record<number, DocumentedAnswer> = {};
  const hasBody = route.method !== 'GET';
  if (hasBody) {
    out[400] = { message: JSON_BODY_MESSAGE, description: 'The body is not a JSON object, or a field is unknown, of the wrong type or out of range: the message names it.' };
  } else if (route.takesInput) {
    out[400] = {
      message: unknownFieldsMessage([UNKNOWN_PARAMETER_PROBE], inputFields(route)),
      description: 'A parameter is unknown, of the wrong type or out of range: the message names it.',
    };
  }
  if (route.meta.access !== 'public') {
    out[401] = { message: 'API key is missing', description: "No X-API-KEY, or one that is unknown or an inactive reseller's ('Invalid or inactive API key')." };
  }
  if (route.meta.access === 'main_admin') out[403] = { message: 'Permission denied', description: 'A sub-admin key: this endpoint is for the main admin.' };
  if (route.meta.access === 'main_admin_strict') {
    out[403] = { message: 'Permission denied: Main admin API key required.', description: 'A sub-admin key: this endpoint is for the main admin.' };
  }
  if (hasBody) {
    out[413] = { message: 'Request body is too large (the limit is 1 MiB).', description: 'The body is over 1 MiB.' };
    out[415] = { message: 'Request body must be UTF-8 JSON.', description: 'The body has a Content-Encoding or charset the server does not read.' };
  }
  Object.assign(out, route.meta.answers ?? {});
  out[500] = { message: INTERNAL_ERROR_MESSAGE, description: 'An unexpected failure; the details are in the server log, never in the answer.' };
  out[503] = { message: new DatabaseBusyError().message, description: 'The database is too busy to take the change now: repeat after Retry-After seconds.' };
  return out;
}

/** The names an operation's input takes (path parameters included), for the unknown-field sentence. */
function inputFields(route: RestRoute): string[] {
  const procedure = (appRouter._def.procedures as unknown as Record<string, AnyProcedure>)[route.procedurePath];
  const input = ((procedure?._def as { inputs?: unknown[] }).inputs ?? [])[0] as { shape?: Record<string, unknown> } | undefined;
  return Object.keys(input?.shape ?? {});
}

function describeAnswers(doc: OpenAPIObject, routes: RestRoute[]): void {
  const schemas = ((doc.components ??= {}).schemas ??= {});
  for (const name of Object.keys(schemas)) if (name.startsWith('error.')) delete schemas[name];
  schemas.ErrorEnvelope = {
    type: 'object',
    properties: {
      success: { type: 'boolean', const: false },
      message: { type: 'string', description: 'A human sentence; fixed strings are part of the contract.' },
    },
    required: ['success', 'message'],
    additionalProperties: false,
  };
  schemas.NotFoundKept = {
    type: 'object',
    description: 'The contract keeps `success: true` on this 404: deleting what is already gone is not a failure.',
    properties: { success: { type: 'boolean', const: true }, message: { type: 'string' } },
    required: ['success', 'message'],
    additionalProperties: false,
  };

  for (const route of routes) {
    const op: Json | undefined = (doc.paths?.[route.path] as Json | undefined)?.[route.method.toLowerCase()];
    if (!op) continue;
    const success: Json = op.responses?.['200'] ?? {};
    const status = route.meta.successStatus ?? 200;
    const responses: Json = {
      [status]: { ...success, description: status === 202 ? 'Accepted: the work goes on in the background.' : 'Success.' },
    };
    for (const [code, answer] of Object.entries(answersOf(route))) {
      responses[code] = {
        description: answer.description,
        ...(Number(code) === 503 ? { headers: { 'Retry-After': { description: 'Seconds to wait before repeating the request.', schema: { type: 'integer', minimum: 1 } } } } : {}),
        content: { 'application/json': { schema: { $ref: answer.success ? KEPT_NOT_FOUND : ENVELOPE }, example: { success: answer.success ?? false, message: answer.message } } },
      };
    }
    op.responses = responses;

    const example = route.meta.example;
    if (!example) continue;
    const body = op.requestBody?.content?.['application/json'];
    if (body && example.body) body.example = example.body;
    for (const param of (op.parameters ?? []) as Json[]) {
      const value = param.in === 'path' ? example.params?.[param.name] : (example.query?.[param.name] ?? example.body?.[param.name]);
      if (value !== undefined) param.example = value;
    }
  }
}
