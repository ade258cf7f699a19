import { createTRPCClient, httpBatchLink, type TRPCClient } from '@trpc/client';
import type { AppRouter } from './routers';

export type { AppRouter } from './routers';

export interface PolygateClientOptions {
  /** Base URL of the panel, e.g. `http://127.0.0.1:8080` (the client talks to `<url>/trpc`). */
  url: string;
  /** The main admin key or a reseller's key; sent as `X-API-KEY`. */
  apiKey: string;
  /** A custom fetch (tests, proxies); defaults to the global one. */
  fetch?: typeof fetch;
}

/**
 * A typed client for every procedure of the panel: inputs and outputs are checked by the
 * compiler against the server's own schemas.
 *
 * @example
 * const panel = createPolygateClient({ url: 'http://127.0.0.1:8080', apiKey: process.env.PANEL_KEY! });
 * const { created_users } = await panel.users.create.mutate({ bulk_count: 5, data_limit: 50 });
 * const alice = await panel.users.get.query({ username: 'alice' });
 */
export function createPolygateClient(options: PolygateClientOptions): TRPCClient<AppRouter> {
  return createTRPCClient<AppRouter>({
    links: [
      httpBatchLink({
        url: `${options.url.replace(/\/+$/, '')}/trpc`,
        headers: { 'X-API-KEY': options.apiKey },
        ...(options.fetch ? { fetch: options.fetch } : {}),
      }),
    ],
  });
}
