import { ConfigError, loadConfig } from './config';
import { startDaemon, StartupError } from './daemon';
import { logger } from './logger';

/** `npm start`: boot, say where to reach the panel and its key, stop cleanly on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\nFix the setting(s) above and start again.\n`);
      process.exit(2);
    }
    throw e;
  }
  const daemon = await startDaemon(config, logger);
  const { core } = daemon;
  const lines = [
    '',
    `polygate is running on ${daemon.url}  (database: ${core.ctx.db.dialect})`,
    `  REST API:  ${daemon.url}/api/v1      docs: ${daemon.url}/docs`,
    `  tRPC:      ${daemon.url}/trpc`,
  ];
  if (core.generatedAdminKey) {
    lines.push(`  Main admin API key (shown once, also saved to ${core.adminKeyFile}):`, `    ${core.generatedAdminKey}`);
  } else if (config.adminApiKey) {
    lines.push('  Main admin API key: the value of POLYGATE_ADMIN_API_KEY');
  } else if (core.adminKeyFile) {
    lines.push(`  Main admin API key: in ${core.adminKeyFile}`);
  } else {
    lines.push('  Main admin API key: set at an earlier start (only its hash is stored); set POLYGATE_ADMIN_API_KEY to replace it');
  }
  lines.push(`  Try: curl -H "X-API-KEY: <key>" ${daemon.url}/api/v1/health`, '');
  process.stdout.write(lines.join('\n') + '\n');

  const shutdown = (signal: string) => {
    logger.info({ signal }, 'shutting down');
    daemon.stop().then(
      () => process.exit(0),
      (err) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err) => {
  if (err instanceof StartupError) {
    // A setting to change, not a bug: the message names it; no stack trace to wade through.
    logger.fatal({ reason: err.message }, 'polygate failed to start');
    process.stderr.write(`polygate failed to start: ${err.message}\n`);
    process.exit(2);
  }
  logger.fatal({ err }, 'polygate failed to start');
  process.stderr.write(`polygate failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
