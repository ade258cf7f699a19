import { generateOpenApiDocument, type OpenAPIObject } from 'trpc-to-openapi';
import { PROTOCOLS } from '../core/protocols/table';
import { appRouter } from './routers';

let cached: { baseUrl: string; doc: OpenAPIObject } | undefined;

/** The OpenAPI 3.1 document of /api/v1, generated from the router's own schemas. */
export function openApiDocument(baseUrl: string): OpenAPIObject {
  if (cached?.baseUrl === baseUrl) return cached.doc;
  const doc = generateOpenApiDocument(appRouter, {
    title: 'polygate API',
    description:
      `Multi-protocol VPN panel (${PROTOCOLS.map((p) => p.displayName).join(', ')}). ` +
      'Every request needs the X-API-KEY header: the main admin key or a sub-admin (reseller) key. Errors are `{"success": false, "message": "…"}`.',
    version: '1.0.0',
    openApiVersion: '3.1.0',
    baseUrl: `${baseUrl}/api/v1`,
    securitySchemes: { ApiKey: { type: 'apiKey', in: 'header', name: 'X-API-KEY' } },
  });
  describeEnvelopeErrors(doc);
  cached = { baseUrl, doc };
  return doc;
}

/**
 * The generator describes errors in tRPC's shape (`code`, `issues`); /api/v1 answers every
 * error as `{"success": false, "message"}` (api/errors.ts), so the document says that instead.
 */
function describeEnvelopeErrors(doc: OpenAPIObject): void {
  const schemas = (doc.components ??= {}).schemas ?? {};
  for (const name of Object.keys(schemas)) if (name.startsWith('error.')) delete schemas[name];
  schemas.ErrorEnvelope = {
    type: 'object',
    properties: {
      success: { type: 'boolean', const: false },
      message: { type: 'string', description: 'A human sentence; fixed strings are part of the contract.' },
    },
    required: ['success', 'message'],
  };
  doc.components.schemas = schemas;
  for (const item of Object.values(doc.paths ?? {})) {
    for (const op of Object.values(item as Record<string, { responses?: Record<string, { content?: unknown }> }>)) {
      for (const [status, response] of Object.entries(op.responses ?? {})) {
        if (Number(status) >= 400 && response.content) {
          response.content = { 'application/json': { schema: { $ref: '#/components/schemas/ErrorEnvelope' } } };
        }
      }
    }
  }
}
