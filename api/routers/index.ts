import { router } from '../trpc';
import { healthRouter } from './health';
import { nodesRouter } from './nodes';
import { portsRouter } from './ports';
import { settingsRouter } from './settings';
import { statsRouter } from './stats';
import { subAdminsRouter } from './sub-admins';
import { usersRouter } from './users';
import { webhooksRouter } from './webhooks';

/** The whole API: one router per domain. Served as tRPC at /trpc and as REST at /api/v1. */
export const appRouter = router({
  health: healthRouter,
  users: usersRouter,
  subAdmins: subAdminsRouter,
  nodes: nodesRouter,
  ports: portsRouter,
  settings: settingsRouter,
  stats: statsRouter,
  webhooks: webhooksRouter,
});

export type AppRouter = typeof appRouter;
