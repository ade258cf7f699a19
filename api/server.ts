import express from 'express';
import { createExpressMiddleware } from '@trpc/server/adapters/express';
import type { Services } from '../core/services';
import { docsRouter } from './docs';
import { refuseMalformedPaths } from './input-guard';
import { metricsHandler } from './metrics';
import { openApiDocument } from './openapi';
import { mountPublicPages } from './pages';
import { createRestRouter, restErrorHandler } from './rest';
import { appRouter } from './routers';
import { userDetailCache } from './user-detail-cache';

export type AppKind =
  /** The panel's own port: everything. */
  | { kind: 'main' }
  /** A reseller's panel port: the API, accepting only that reseller's key. */
  | { kind: 'reseller_panel'; subAdminId: number }
  /** A reseller's subscription port: subscription pages and profile downloads only. */
  | { kind: 'reseller_subscription'; subAdminId: number };

/** Builds the HTTP application for one listener. */
export function createApp(services: Services, appKind: AppKind = { kind: 'main' }): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('trust proxy', false);
  app.use(refuseMalformedPaths);

  app.get('/healthz', (_req, res) => {
    res.json({ success: true });
  });

  if (appKind.kind !== 'reseller_subscription') {
    const restrictToSubAdminId = appKind.kind === 'reseller_panel' ? appKind.subAdminId : undefined;
    app.use(
      '/trpc',
      createExpressMiddleware({
        router: appRouter,
        createContext: ({ req }) => ({ services, apiKey: req.get('x-api-key') ?? undefined, restrictToSubAdminId }),
        maxBodySize: 1024 * 1024,
      }),
    );
    app.get('/api/v1/openapi.json', (_req, res) => {
      res.json(openApiDocument(services.ctx.config.publicUrlResolved));
    });
    app.get('/api/v1/users/:username', userDetailCache(services));
    app.use('/api/v1', createRestRouter(services, { restrictToSubAdminId }));
    app.use('/docs', docsRouter('/api/v1/openapi.json'));
  }
  if (appKind.kind === 'main') app.get('/metrics', metricsHandler(services));

  // A reseller's subscription port serves only that reseller's users.
  if (appKind.kind !== 'reseller_panel') {
    mountPublicPages(app, services, appKind.kind === 'reseller_subscription' ? { subAdminId: appKind.subAdminId } : {});
  }

  app.use((req, res) => {
    res.status(404).json({ success: false, message: `Not found: ${req.method} ${req.path}` });
  });
  app.use(restErrorHandler);
  return app;
}
