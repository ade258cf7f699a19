import type { Principal } from '../core/principal';
import type { Services } from '../core/services';

/** Per-request context for both transports (tRPC at /trpc, REST at /api/v1). */
export interface ApiContext {
  services: Services;
  /** Raw X-API-KEY header value, resolved to a principal by the auth middleware. */
  apiKey: string | undefined;
  /**
   * On a reseller's own panel port only that reseller's key is accepted (set by the listener).
   */
  restrictToSubAdminId?: number;
}

export interface AuthedContext extends ApiContext {
  principal: Principal;
}

export function createContextInner(opts: ApiContext): ApiContext {
  return opts;
}
