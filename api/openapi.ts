import { generateOpenApiDocument, type OpenAPIObject } from 'trpc-to-openapi';
import { appRouter } from './routers';

let cached: { baseUrl: string; doc: OpenAPIObject } | undefined;

/** The OpenAPI 3.1 document of /api/v1, generated from the router's own schemas. */
export function openApiDocument(baseUrl: string): OpenAPIObject {
  if (cached?.baseUrl === baseUrl) return cached.doc;
  const doc = generateOpenApiDocument(appRouter, {
    title: 'polygate API',
    description:
      'Multi-protocol VPN panel (OpenVPN, L2TP/IPsec, Cisco AnyConnect, WireGuard). Every request needs the X-API-KEY header: the main admin key or a sub-admin (reseller) key. Errors are `{"success": false, "message": "…"}`.',
    version: '1.0.0',
    openApiVersion: '3.1.0',
    baseUrl: `${baseUrl}/api/v1`,
    securitySchemes: { ApiKey: { type: 'apiKey', in: 'header', name: 'X-API-KEY' } },
  });
  cached = { baseUrl, doc };
  return doc;
}
