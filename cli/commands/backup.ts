import { BackupError, createBackup, restoreBackup, verifyBackup, type BackupErrorKind } from '../../core/backup';
import { cliConfig, requireExistingPanel, type GlobalOptions } from '../config';
import { CliError, EXIT } from '../exit-codes';
import { progressReporter } from '../progress';

const EXIT_OF: Record<BackupErrorKind, number> = {
  config: EXIT.usage,
  invalid_archive: EXIT.invalidArchive,
  refused: EXIT.refused,
  tool_missing: EXIT.toolMissing,
  failed: EXIT.failed,
};

const asCliError = (e: unknown): unknown => (e instanceof BackupError ? new CliError(e.message, EXIT_OF[e.kind]) : e);

const say = (line: string) => process.stderr.write(`${line}\n`);

export async function backupCommand(file: string, global: GlobalOptions): Promise<void> {
  const config = cliConfig(global);
  requireExistingPanel(config);
  const progress = progressReporter('backup');
  try {
    const r = await createBackup(config, file, { onProgress: progress.update });
    progress.stop();
    say(`backup written: ${r.file} (${r.bytes} bytes, ${r.manifest.database.kind} database, ${r.manifest.files.length} files, mode 0600)`);
    say('It holds every secret of the panel (secret.key, the CA key, VPN credentials): keep it where only you can read it.');
  } catch (e) {
    progress.stop();
    throw asCliError(e);
  }
}

export async function restoreCommand(file: string, options: { force?: boolean; verifyOnly?: boolean }, global: GlobalOptions): Promise<void> {
  const progress = progressReporter(options.verifyOnly ? 'verify' : 'restore');
  try {
    if (options.verifyOnly) {
      const m = await verifyBackup(file, progress.update);
      progress.stop();
      say(`${file}: valid polygate backup (polygate ${m.polygateVersion}, ${m.createdAt}, ${m.database.kind} database, ${m.files.length} files)`);
      return;
    }
    const config = cliConfig(global);
    const r = await restoreBackup(config, file, { force: options.force, onProgress: progress.update });
    progress.stop();
    say(`restored ${file} (made ${r.manifest.createdAt} by polygate ${r.manifest.polygateVersion}) into ${config.dataDir}`);
    for (const aside of r.movedAside) say(`the data that was there before is kept in ${aside}`);
    say('Start the daemon (systemctl start polygate, or npm start); it migrates an older database on start.');
  } catch (e) {
    progress.stop();
    throw asCliError(e);
  }
}
