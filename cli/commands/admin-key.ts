import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { CoreContext } from '../../core/context';
import { askDaemon } from '../../core/control';
import { openDatabase } from '../../core/db';
import { DomainEvents } from '../../core/events';
import { randomKey } from '../../core/secrets';
import { AuthService } from '../../core/services/auth';
import { cliConfig, requireExistingPanel, type GlobalOptions } from '../config';
import { CliError, EXIT } from '../exit-codes';

const say = (line: string) => process.stderr.write(`${line}\n`);

/**
 * Replaces the main admin key in the database (only its hash is stored), then tells a daemon
 * running on the data dir to drop its cached keys, so the old key stops working at once
 * without a restart. The new key goes to stdout, once; everything else to stderr.
 */
export async function rotateAdminKeyCommand(global: GlobalOptions): Promise<void> {
  const config = cliConfig(global);
  if (config.adminApiKey) {
    throw new CliError('the main admin key is set by POLYGATE_ADMIN_API_KEY (environment or config file), which the daemon re-applies at every start. Change that setting and restart the daemon instead.', EXIT.refused);
  }
  requireExistingPanel(config);
  const key = randomKey(32);
  const db = await openDatabase(config.databaseUrlResolved);
  try {
    // The service's own write (one transaction: old hash out, new hash in); the CLI has no
    // other use for a whole core context.
    const auth = new AuthService({ db, events: new DomainEvents() } as Pick<CoreContext, 'db' | 'events'> as CoreContext);
    await auth.setMainAdminKey(key);
  } finally {
    await db.close();
  }
  let note: string;
  try {
    const reply = await askDaemon(config.dataDir, 'auth.invalidate');
    if (reply?.ok) note = 'the running daemon dropped the old key: it stops working now';
    else if (reply) note = `the running daemon did not confirm (${reply.error}); restart it so the old key stops working`;
    else note = 'no daemon runs on this data dir; the new key applies when it starts';
  } catch (e) {
    note = `could not reach the daemon (${(e as Error).message}); restart it so the old key stops working`;
  }
  if (config.databaseUrlResolved.startsWith('postgres')) note += ' (a daemon on another machine sharing this PostgreSQL database keeps the old key cached until it restarts)';
  // The key the first start wrote down is no longer valid; leaving it would mislead.
  const keyFile = path.join(config.dataDir, 'admin-api-key');
  if (existsSync(keyFile)) {
    rmSync(keyFile, { force: true });
    note += `; removed the stale ${keyFile}`;
  }
  say(`main admin API key rotated: ${note}.`);
  say('New key (shown once, not stored anywhere in plain text):');
  process.stdout.write(`${key}\n`);
}
