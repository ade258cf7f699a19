import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { sha256Hex } from '../core/secrets';
import type { Services } from '../core/services';
import { RESERVED_USERNAMES } from '../core/services/users/fields';

/** Answers kept per listener; cleared whenever the database changes, so it never outgrows this. */
const MAX_ENTRIES = 10_000;

interface Kept {
  stamp: string;
  validUntil: number;
  body: string;
}

/**
 * `GET /api/v1/users/{username}` answered from memory when the same key asked for the same user
 * and nothing that answer depends on has changed since (`UserViews.detailStamp`: database
 * writes, plugins, the user's live connections; and the clock, up to the user's expiry). Bots
 * poll the same users between writes; the full path (auth, validation, tRPC, the view) runs
 * only when something changed.
 *
 * Only 200 answers are kept, under the hash of the key that got them: another key, a wrong
 * key or another reseller's always takes the full path, so whether someone else's user is
 * kept is not observable. Requests with a query string take the full path too (the
 * procedure decides what to make of it).
 */
export function userDetailCache(services: Services): RequestHandler {
  const views = services.users.views;
  const kept = new Map<string, Kept>();
  let keptGeneration = -1;

  return (req: Request, res: Response, next: NextFunction) => {
    const apiKey = req.get('x-api-key');
    const username = req.params.username;
    if (!apiKey || typeof username !== 'string' || RESERVED_USERNAMES.has(username) || req.originalUrl.includes('?')) return next();
    const generation = services.ctx.db.writeGeneration();
    if (generation !== keptGeneration) {
      kept.clear();
      keptGeneration = generation;
    }
    const key = `${sha256Hex(apiKey)}\n${username}`;
    const stamp = views.detailStamp(username);
    const hit = kept.get(key);
    if (hit && hit.stamp === stamp && services.ctx.clock.now().getTime() < hit.validUntil) {
      res.status(200).set('Content-Type', 'application/json').send(hit.body);
      return;
    }
    // Keep what the procedure answers, if nothing changed while it ran (its own first-read
    // token write included: then the next request keeps it).
    const json = res.json.bind(res);
    res.json = (data: unknown) => {
      if (res.statusCode !== 200 || views.detailStamp(username) !== stamp) return json(data);
      const body = JSON.stringify(data);
      if (kept.size < MAX_ENTRIES) {
        kept.set(key, { stamp, validUntil: views.detailValidUntil(data as { expiry_date: string | null }), body });
      }
      return res.set('Content-Type', 'application/json').send(body);
    };
    next();
  };
}
