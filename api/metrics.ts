import { timingSafeEqual } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import { forbidden } from '../core/errors';
import type { Services } from '../core/services';
import { sendRestError, toRestError } from './errors';

/**
 * `GET /metrics` in Prometheus text format. Scrapers authenticate with
 * `Authorization: Bearer <POLYGATE_METRICS_TOKEN>`; people with the main admin's X-API-KEY.
 * A reseller's key is refused: the figures span every reseller.
 */
export function metricsHandler(services: Services): RequestHandler {
  return async (req: Request, res: Response) => {
    try {
      if (!bearerMatches(req.get('authorization'), services.ctx.config.metricsToken)) {
        const principal = await services.auth.authenticate(req.get('x-api-key'));
        if (principal.kind !== 'main') throw forbidden('Permission denied: Main admin API key required.');
      }
      const registry = services.metricsRegistry;
      const body = await registry.metrics();
      res.status(200).set('Content-Type', registry.contentType).set('Cache-Control', 'no-store').send(body);
    } catch (err) {
      sendRestError(res, toRestError(err, 'GET /metrics'));
    }
  };
}

function bearerMatches(header: string | undefined, token: string | undefined): boolean {
  if (!header || !token) return false;
  const m = /^Bearer\s+(.+)$/i.exec(header.trim());
  if (!m) return false;
  const given = Buffer.from(m[1]!, 'utf8');
  const expected = Buffer.from(token, 'utf8');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
