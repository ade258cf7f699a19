import { existsSync } from 'node:fs';
import { ConfigError, loadConfig, type Config } from '../core/config';
import { databaseKindOf, sqliteFileOf } from '../core/backup/database';
import { CliError, EXIT } from './exit-codes';

export interface GlobalOptions {
  config?: string;
  dataDir?: string;
}

/**
 * The daemon's own configuration (POLYGATE_* and POLYGATE_CONFIG_FILE), so the CLI acts on the
 * panel the daemon runs; `--config` / `--data-dir` stand for those two settings.
 */
export function cliConfig(options: GlobalOptions, env: NodeJS.ProcessEnv = process.env): Config {
  const effective = { ...env };
  if (options.config) effective.POLYGATE_CONFIG_FILE = options.config;
  try {
    return loadConfig(effective, options.dataDir ? { dataDir: options.dataDir } : {});
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(`${e.message}\nFix the setting(s) above (environment, or the file named by POLYGATE_CONFIG_FILE / --config).`, EXIT.usage);
    throw e;
  }
}

/** Refuses to act on a data dir that holds no panel (opening the database would create an empty one). */
export function requireExistingPanel(config: Config): void {
  if (databaseKindOf(config.databaseUrlResolved) !== 'sqlite') return;
  const file = sqliteFileOf(config.databaseUrlResolved);
  if (!existsSync(file)) {
    throw new CliError(`no panel database at ${file}. Point POLYGATE_DATA_DIR (or --data-dir / POLYGATE_DATABASE_URL) at the daemon's data, or start the daemon once to create it.`, EXIT.usage);
  }
}
