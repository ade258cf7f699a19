import type express from 'express';
import type { NextFunction, Request, Response } from 'express';
import type { Services } from '../../core/services';
import { downloadProfile } from './download';
import { subscriptionPage, type PublicPagesScope } from './subscription';

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
      handler(services, scope, req, res).catch(next);
    };
  app.get('/sub/:username', wrap(subscriptionPage));
  app.get('/download/:username/:file', wrap(downloadProfile));
}
