import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config';
import type { Logger } from '../logger';
import { BACKUPS_DIR_NAME, createBackup } from './index';

const NAME_RE = /^polygate-(\d{8}T\d{9}Z)\.tar\.gz$/;

// Milliseconds in the name: two backups in one second (a manual run beside the timer) keep both.
const stampOf = (d: Date): string => d.toISOString().replace(/[-:.]/g, '');

export interface BackupSchedule {
  /** Runs one scheduled backup now (tests; the timer calls it too). */
  runOnce(): Promise<string | null>;
  stop(): Promise<void>;
}

/**
 * `POLYGATE_BACKUP_INTERVAL_HOURS` > 0: every interval the daemon writes
 * `<data dir>/backups/polygate-<UTC time>.tar.gz` and keeps the newest `POLYGATE_BACKUP_KEEP`.
 * A failed backup is logged and the next one tried at the next interval; the daemon keeps serving.
 */
export function scheduleBackups(config: Config, logger: Logger): BackupSchedule {
  const log = logger.child({ component: 'backups' });
  const dir = path.join(config.dataDir, BACKUPS_DIR_NAME);
  let running: Promise<string | null> | null = null;

  const runOnce = (): Promise<string | null> => {
    running ??= (async () => {
      try {
        await fs.mkdir(dir, { recursive: true, mode: 0o700 });
        const file = path.join(dir, `polygate-${stampOf(new Date())}.tar.gz`);
        const result = await createBackup(config, file);
        await prune(dir, config.backupKeep);
        log.info({ file, bytes: result.bytes }, 'scheduled backup written');
        return file;
      } catch (err) {
        log.error({ err }, 'scheduled backup failed; the next one runs at the next interval');
        return null;
      } finally {
        running = null;
      }
    })();
    return running;
  };

  const timer = config.backupIntervalHours > 0 ? setInterval(() => void runOnce(), config.backupIntervalHours * 3_600_000) : null;
  timer?.unref();
  return {
    runOnce,
    async stop() {
      if (timer) clearInterval(timer);
      await running;
    },
  };
}

/** Removes all but the newest `keep` scheduled backups (by the time in their name). */
export async function prune(dir: string, keep: number): Promise<string[]> {
  const names = (await fs.readdir(dir)).filter((n) => NAME_RE.test(n)).sort();
  const removed = names.slice(0, Math.max(0, names.length - keep));
  for (const name of removed) await fs.rm(path.join(dir, name), { force: true });
  return removed;
}
