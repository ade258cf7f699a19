import type express from 'express';
import type { NextFunction, Request, Response } from 'express';
import type { Services } from '../../core/services';
import { downloadProfile } from './download';
import { isBrowser, sendErrorPage, subscriptionPage, type PublicPagesScope } from './subscription';

export type { PublicPagesScope } from './subscription';

/**
 * Pages reached without an API key (the subscription token is the secret): `/sub` and
 * `/download`. On a reseller's subscription port pass `{ subAdminId }`: other users' links
 * then answer the same 404 as a wrong token.
 */
export function mountPublicPages(app: express.Express, services: Services, scope: PublicPagesScope = {}): void {
  const wrap =
    (handler: (services: Services, scope: PublicPagesScope, req: Request, res: Response) => Promise<void>) =>
    (req: Request, res: Response, next: NextFunction) => {
      handler(services, scope, req, res).catch((err: unknown) => {
        // A customer's browser gets a page it can read; API clients keep the JSON envelope of the error handler.
        if (!isBrowser(req) || res.headersSent) return next(err);
        services.ctx.logger.error({ err: (err as Error)?.message, path: req.path }, 'public page failed');
        sendErrorPage(req, res, 500, 'error');
      });
    };
  app.get('/sub/:username', wrap(subscriptionPage));
  app.get('/download/:username/:file', wrap(downloadProfile));
}
