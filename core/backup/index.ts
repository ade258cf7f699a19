/**
 * One-file backups of a panel: a tar.gz holding a consistent database snapshot, the data dir's
 * files (`secret.key`, which seals node SSH credentials; the CA under `pki/`; plugin state such
 * as WireGuard server and preshared keys), `manifest.json` (version, time, database kind,
 * every file with size, mode and SHA-256) and `SHA256SUMS` (`sha256sum -c` compatible).
 *
 * The database is snapshotted first and the files copied after, so a certificate issued in
 * between is at worst an extra file the restored database does not know, never a user whose
 * certificate is missing.
 *
 * The checksums prove the archive is whole and unmodified relative to its own manifest; they
 * are not a signature (whoever can rewrite the archive can rewrite the manifest). Keep backups
 * where only the operator can write: they hold every secret of the panel.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, promises as fs, type Stats } from 'node:fs';
import path from 'node:path';
import * as tar from 'tar';
import type { Config } from '../config';
import { CONTROL_SOCKET_NAME, daemonRunning, packageVersion, PID_FILE_NAME } from '../control';
import {
  BackupError,
  checkSqliteSnapshot,
  databaseKindOf,
  dumpPostgres,
  inspectPostgres,
  postgresSchema,
  restorePostgres,
  snapshotSqlite,
  sqliteFileOf,
  type DatabaseKind,
} from './database';

export { BackupError, type BackupErrorKind } from './database';

export const MANIFEST_NAME = 'manifest.json';
export const SUMS_NAME = 'SHA256SUMS';
const FORMAT = 'polygate-backup';
const FORMAT_VERSION = 1;
/** Scheduled backups live here; never inside a backup themselves. */
export const BACKUPS_DIR_NAME = 'backups';
const STAGING_PREFIX = '.polygate-backup-';

export interface ManifestFile {
  /** Archive path: `database/…` or `data/<path under the data dir>`. */
  path: string;
  size: number;
  mode: number;
  sha256: string;
}

export interface BackupManifest {
  format: typeof FORMAT;
  formatVersion: number;
  polygateVersion: string;
  createdAt: string;
  database: { kind: DatabaseKind; file: string; schema: string | null };
  files: ManifestFile[];
}

/** Reports long work: `done` of `total` steps, and what is being done now. */
export type ProgressFn = (done: number, total: number, label: string) => void;

export interface BackupResult {
  file: string;
  manifest: BackupManifest;
  bytes: number;
}

const sha256File = (file: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(file)
      .on('data', (d) => hash.update(d))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });

const isInside = (child: string, parent: string): boolean => {
  const rel = path.relative(parent, child);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
};

/** Regular files under `root` (relative paths, sorted), skipping what `skip` refuses. */
async function walk(root: string, skip: (rel: string, st: Stats) => boolean): Promise<string[]> {
  const out: string[] = [];
  const visit = async (rel: string) => {
    const entries = await fs.readdir(path.join(root, rel), { withFileTypes: true });
    for (const entry of entries) {
      const child = rel ? path.join(rel, entry.name) : entry.name;
      const st = await fs.lstat(path.join(root, child));
      if (skip(child, st)) continue;
      if (st.isDirectory()) await visit(child);
      // Sockets, FIFOs and symlinks are runtime artefacts or point elsewhere: not data.
      else if (st.isFile()) out.push(child);
    }
  };
  await visit('');
  return out.sort();
}

/** Data dir entries that are not data: the live database (snapshotted instead), runtime files, backups, staging. */
function dataDirSkipper(config: Config): (rel: string) => boolean {
  const dbFiles = new Set<string>();
  if (databaseKindOf(config.databaseUrlResolved) === 'sqlite') {
    const db = sqliteFileOf(config.databaseUrlResolved);
    for (const suffix of ['', '-wal', '-shm', '-journal']) dbFiles.add(path.resolve(`${db}${suffix}`));
  }
  return (rel) => {
    const top = rel.split(path.sep)[0]!;
    if (top === BACKUPS_DIR_NAME || top === CONTROL_SOCKET_NAME || top === PID_FILE_NAME || top.startsWith(STAGING_PREFIX)) return true;
    return dbFiles.has(path.resolve(config.dataDir, rel));
  };
}

async function makeStaging(nextTo: string): Promise<string> {
  await fs.mkdir(nextTo, { recursive: true, mode: 0o700 });
  return fs.mkdtemp(path.join(nextTo, STAGING_PREFIX));
}

/**
 * Writes a backup of the panel configured by `config` to `file` (mode 0600; written under a
 * temporary name and renamed, so a crash never leaves a half archive under the final name).
 * Safe while the daemon runs.
 */
export async function createBackup(config: Config, file: string, options: { onProgress?: ProgressFn } = {}): Promise<BackupResult> {
  const progress = options.onProgress ?? (() => {});
  const target = path.resolve(file);
  if (!existsSync(config.dataDir)) throw new BackupError(`the data dir ${config.dataDir} does not exist; check POLYGATE_DATA_DIR (or POLYGATE_CONFIG_FILE)`, 'config');
  if (existsSync(target) && (await fs.stat(target)).isDirectory()) throw new BackupError(`${target} is a directory; name the archive file, e.g. ${path.join(target, 'polygate.tar.gz')}`, 'config');
  const staging = await makeStaging(path.dirname(target));
  try {
    const kind = databaseKindOf(config.databaseUrlResolved);
    const skip = dataDirSkipper(config);
    const dataFiles = await walk(config.dataDir, (rel) => skip(rel));
    // snapshot + each file + archive
    const total = dataFiles.length + 2;
    let done = 0;

    progress(done, total, 'database snapshot');
    await fs.mkdir(path.join(staging, 'database'), { mode: 0o700 });
    const dbEntry = kind === 'sqlite' ? 'database/polygate.sqlite' : 'database/polygate.pgdump';
    const dbOut = path.join(staging, dbEntry);
    let schema: string | null;
    if (kind === 'sqlite') {
      await snapshotSqlite(sqliteFileOf(config.databaseUrlResolved), dbOut);
      schema = (await checkSqliteSnapshot(dbOut)).schema;
    } else {
      await dumpPostgres(config.databaseUrlResolved, dbOut);
      schema = await postgresSchema(config.databaseUrlResolved);
    }
    await fs.chmod(dbOut, 0o600);
    progress(++done, total, 'database snapshot');

    const entries: ManifestFile[] = [await describe(staging, dbEntry)];
    for (const rel of dataFiles) {
      progress(done, total, rel);
      const archivePath = path.posix.join('data', rel.split(path.sep).join('/'));
      const dest = path.join(staging, archivePath);
      await fs.mkdir(path.dirname(dest), { recursive: true, mode: 0o700 });
      try {
        await fs.copyFile(path.join(config.dataDir, rel), dest);
      } catch (e) {
        // A file removed between listing and copying (a revoked certificate) is simply not part of this backup.
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
          progress(++done, total, rel);
          continue;
        }
        throw e;
      }
      const mode = (await fs.stat(path.join(config.dataDir, rel)).catch(() => null))?.mode ?? 0o600;
      await fs.chmod(dest, mode & 0o700);
      entries.push(await describe(staging, archivePath));
      progress(++done, total, rel);
    }

    const manifest: BackupManifest = {
      format: FORMAT,
      formatVersion: FORMAT_VERSION,
      polygateVersion: packageVersion(),
      createdAt: new Date().toISOString(),
      database: { kind, file: dbEntry, schema },
      files: entries,
    };
    const manifestText = `${JSON.stringify(manifest, null, 2)}\n`;
    await fs.writeFile(path.join(staging, MANIFEST_NAME), manifestText, { mode: 0o600 });
    const sums = [`${createHash('sha256').update(manifestText).digest('hex')}  ${MANIFEST_NAME}`, ...entries.map((e) => `${e.sha256}  ${e.path}`)];
    await fs.writeFile(path.join(staging, SUMS_NAME), `${sums.join('\n')}\n`, { mode: 0o600 });

    progress(done, total, 'archive');
    const partial = `${target}.partial-${randomBytes(4).toString('hex')}`;
    try {
      // Created 0600 before tar writes a byte: the archive holds every secret of the panel.
      await (await fs.open(partial, 'wx', 0o600)).close();
      await tar.create({ gzip: true, file: partial, cwd: staging, portable: true, noDirRecurse: true }, [MANIFEST_NAME, SUMS_NAME, ...entries.map((e) => e.path)]);
      await fs.chmod(partial, 0o600);
      const handle = await fs.open(partial, 'r');
      await handle.sync();
      await handle.close();
      await fs.rename(partial, target);
    } catch (e) {
      await fs.rm(partial, { force: true });
      throw e;
    }
    progress(++done, total, 'archive');
    return { file: target, manifest, bytes: (await fs.stat(target)).size };
  } finally {
    await fs.rm(staging, { recursive: true, force: true });
  }
}

async function describe(root: string, archivePath: string): Promise<ManifestFile> {
  const full = path.join(root, archivePath);
  const st = await fs.stat(full);
  return { path: archivePath, size: st.size, mode: st.mode & 0o777, sha256: await sha256File(full) };
}

const SAFE_PATH = /^(database|data)\/[^\0]+$/;

/**
 * Unpacks `file` into a fresh directory under `into` and checks it completely: only regular
 * files and directories, `SHA256SUMS` agrees with `manifest.json`, every file is listed with
 * its size and SHA-256 and nothing else is there, and the database snapshot is sound. Throws
 * `BackupError('invalid_archive')` naming what is wrong; the caller removes the directory.
 */
export async function unpackAndVerify(file: string, into: string, onProgress: ProgressFn = () => {}): Promise<{ dir: string; manifest: BackupManifest }> {
  const source = path.resolve(file);
  if (!existsSync(source)) throw new BackupError(`${source} does not exist`, 'config');
  const dir = await makeStaging(into);
  try {
    return { dir, manifest: await verifyUnpacked(source, dir, onProgress) };
  } catch (e) {
    // The half-checked tree holds the archive's secrets: never leave it behind.
    await fs.rm(dir, { recursive: true, force: true });
    throw e;
  }
}

async function verifyUnpacked(source: string, dir: string, onProgress: ProgressFn): Promise<BackupManifest> {
  const bad = (why: string) => new BackupError(`${source} is not a valid polygate backup: ${why}. Use an untouched copy of the archive.`, 'invalid_archive');
  const refused: string[] = [];
  try {
    await tar.extract({
      file: source,
      cwd: dir,
      strict: true,
      // Links and devices could point outside the target; a polygate backup never holds them.
      filter: (p, entry) => {
        const type = (entry as { type?: string }).type;
        if (type === 'File' || type === 'OldFile' || type === 'Directory') return true;
        refused.push(`${p} (${type})`);
        return false;
      },
    });
  } catch (e) {
    throw bad(`it cannot be unpacked (${(e as Error).message})`);
  }
  if (refused.length) throw bad(`it holds entries that are not plain files: ${refused.slice(0, 5).join(', ')}`);

  let manifestText: string;
  let manifest: BackupManifest;
  try {
    manifestText = await fs.readFile(path.join(dir, MANIFEST_NAME), 'utf8');
    manifest = JSON.parse(manifestText) as BackupManifest;
  } catch {
    throw bad(`${MANIFEST_NAME} is missing or not JSON`);
  }
  if (manifest.format !== FORMAT || typeof manifest.formatVersion !== 'number') throw bad(`${MANIFEST_NAME} is not a polygate manifest`);
  if (manifest.formatVersion > FORMAT_VERSION) throw new BackupError(`${source} was made by a newer polygate (backup format ${manifest.formatVersion}, this one reads ${FORMAT_VERSION}); upgrade polygate first`, 'invalid_archive');
  if (!Array.isArray(manifest.files) || !manifest.database || (manifest.database.kind !== 'sqlite' && manifest.database.kind !== 'postgres')) throw bad(`${MANIFEST_NAME} lacks its file list or database kind`);

  let sums: string;
  try {
    sums = await fs.readFile(path.join(dir, SUMS_NAME), 'utf8');
  } catch {
    throw bad(`${SUMS_NAME} is missing`);
  }
  const sumLines = new Map<string, string>();
  for (const line of sums.split('\n').filter(Boolean)) {
    const m = /^([0-9a-f]{64}) {2}(.+)$/.exec(line);
    if (!m) throw bad(`${SUMS_NAME} has a malformed line`);
    sumLines.set(m[2]!, m[1]!);
  }
  if (sumLines.get(MANIFEST_NAME) !== createHash('sha256').update(manifestText).digest('hex')) throw bad(`${MANIFEST_NAME} does not match its checksum in ${SUMS_NAME}`);
  if (sumLines.size !== manifest.files.length + 1) throw bad(`${SUMS_NAME} and ${MANIFEST_NAME} list different files`);

  const listed = new Set<string>();
  const total = manifest.files.length;
  let done = 0;
  for (const f of manifest.files) {
    onProgress(done, total, `verify ${f.path}`);
    const normal = path.posix.normalize(f.path);
    if (typeof f.path !== 'string' || normal !== f.path || !SAFE_PATH.test(f.path) || f.path.split('/').includes('..')) throw bad(`the manifest names an unsafe path ${JSON.stringify(f.path)}`);
    if (sumLines.get(f.path) !== f.sha256) throw bad(`${f.path}: ${SUMS_NAME} and ${MANIFEST_NAME} disagree`);
    const full = path.join(dir, f.path);
    const st = await fs.lstat(full).catch(() => null);
    if (!st?.isFile()) throw bad(`${f.path} is listed but missing`);
    if (st.size !== f.size || (await sha256File(full)) !== f.sha256) throw bad(`${f.path} does not match its checksum (altered or damaged)`);
    listed.add(f.path);
    onProgress(++done, total, `verify ${f.path}`);
  }
  const present = await walk(dir, () => false);
  const extra = present.map((p) => p.split(path.sep).join('/')).filter((p) => p !== MANIFEST_NAME && p !== SUMS_NAME && !listed.has(p));
  if (extra.length) throw bad(`it holds files its manifest does not list: ${extra.slice(0, 5).join(', ')}`);
  if (!listed.has(manifest.database.file)) throw bad('the database snapshot is not in the manifest');
  if (manifest.database.kind === 'sqlite') {
    const check = await checkSqliteSnapshot(path.join(dir, manifest.database.file));
    if (!check.ok) throw bad(`the database snapshot fails SQLite's check: ${check.detail}`);
  }
  return manifest;
}

/** Checks an archive without restoring it (`polygate restore --verify-only`). */
export async function verifyBackup(file: string, onProgress?: ProgressFn): Promise<BackupManifest> {
  const { dir, manifest } = await unpackAndVerify(file, path.dirname(path.resolve(file)), onProgress);
  await fs.rm(dir, { recursive: true, force: true });
  return manifest;
}

export interface RestoreOptions {
  /** Replace an existing panel's data (moved aside first, never deleted). */
  force?: boolean;
  onProgress?: ProgressFn;
}

export interface RestoreResult {
  manifest: BackupManifest;
  /** Where the data that was there before went (with `force`). */
  movedAside: string[];
}

/** Whether `dir` holds a panel: a secret key or a database file. */
async function holdsPanel(dir: string, sqliteFile: string | null): Promise<boolean> {
  if (existsSync(path.join(dir, 'secret.key'))) return true;
  return sqliteFile !== null && existsSync(sqliteFile) && (await fs.stat(sqliteFile)).size > 0;
}

/**
 * Restores `file` into the panel `config` describes. Refuses when a daemon runs on the data dir
 * (its control socket answers) or, on PostgreSQL, when other sessions use the database; refuses
 * to replace an existing panel's data unless `force` (which moves the old data dir aside).
 */
export async function restoreBackup(config: Config, file: string, options: RestoreOptions = {}): Promise<RestoreResult> {
  const progress = options.onProgress ?? (() => {});
  const kind = databaseKindOf(config.databaseUrlResolved);
  const dataDir = config.dataDir;
  const running = await daemonRunning(dataDir);
  if (running.running) {
    throw new BackupError(`a polygate daemon${running.pid ? ` (pid ${running.pid})` : ''} is running on ${dataDir}: stop it (systemctl stop polygate) and run restore again`, 'refused');
  }
  const { dir, manifest } = await unpackAndVerify(file, path.dirname(dataDir), progress);
  const movedAside: string[] = [];
  try {
    if (manifest.database.kind !== kind) {
      throw new BackupError(`the backup holds a ${manifest.database.kind} database but this panel is configured for ${kind} (POLYGATE_DATABASE_URL); restore with the same kind of database`, 'refused');
    }
    const sqliteFile = kind === 'sqlite' ? sqliteFileOf(config.databaseUrlResolved) : null;
    let pgHasTables = false;
    if (kind === 'postgres') {
      const pg = await inspectPostgres(config.databaseUrlResolved);
      if (pg.otherSessions > 0) throw new BackupError(`${pg.otherSessions} other session(s) are connected to the PostgreSQL database (a daemon on another machine?): stop every polygate using it and run restore again`, 'refused');
      pgHasTables = pg.hasTables;
    }
    const existing = (existsSync(dataDir) && (await holdsPanel(dataDir, sqliteFile))) || pgHasTables;
    if (existing && !options.force) {
      throw new BackupError(`${dataDir}${pgHasTables ? ' / the PostgreSQL database' : ''} already holds a panel; run restore with --force to replace it (the old data dir is moved aside, not deleted)`, 'refused');
    }
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    // Restored files belong to whoever owns the data dir (the daemon's user), not to root running restore.
    const owner = existsSync(dataDir) ? await fs.stat(dataDir) : null;
    // What was moved, so a failed restore can put it back.
    const undo: (() => Promise<void>)[] = [];
    if (existsSync(dataDir) && (await fs.readdir(dataDir)).length > 0) {
      const aside = `${dataDir}.before-restore-${stamp}`;
      const how = await moveAside(dataDir, aside);
      movedAside.push(aside);
      undo.push(async () => {
        if (how === 'renamed') {
          await fs.rm(dataDir, { recursive: true, force: true });
          await fs.rename(aside, dataDir);
        } else {
          for (const name of await fs.readdir(dataDir)) await fs.rm(path.join(dataDir, name), { recursive: true, force: true });
          for (const name of await fs.readdir(aside)) await fs.rename(path.join(aside, name), path.join(dataDir, name));
          await fs.rmdir(aside);
        }
      });
    } else {
      undo.push(async () => {
        if (!owner) await fs.rm(dataDir, { recursive: true, force: true });
        else for (const name of await fs.readdir(dataDir)) await fs.rm(path.join(dataDir, name), { recursive: true, force: true });
      });
    }
    if (sqliteFile && !isInside(sqliteFile, dataDir)) {
      for (const suffix of ['', '-wal', '-shm', '-journal']) {
        // A WAL left beside a replaced database would be replayed into it.
        const file = `${sqliteFile}${suffix}`;
        if (existsSync(file)) {
          await fs.rename(file, `${file}.before-restore-${stamp}`);
          if (suffix === '') movedAside.push(`${file}.before-restore-${stamp}`);
          undo.push(() => fs.rename(`${file}.before-restore-${stamp}`, file));
        } else if (suffix === '') {
          undo.push(() => removeIfThere(file));
        }
      }
    }
    const placeAll = async (): Promise<void> => {
      await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
      await fs.chmod(dataDir, 0o700);

      const total = manifest.files.length;
      let done = 0;
      for (const f of manifest.files) {
        progress(done, total, `restore ${f.path}`);
        const from = path.join(dir, f.path);
        if (f.path === manifest.database.file) {
          if (sqliteFile) await placeFile(from, sqliteFile, 0o600);
          else await restorePostgres(config.databaseUrlResolved, from);
        } else {
          const rel = f.path.slice('data/'.length);
          const dest = path.join(dataDir, ...rel.split('/'));
          if (!isInside(dest, dataDir)) throw new BackupError(`refusing to write ${f.path} outside the data dir`, 'invalid_archive');
          await placeFile(from, dest, f.mode & 0o700 || 0o600);
        }
        progress(++done, total, `restore ${f.path}`);
      }
      if (owner && process.getuid?.() === 0 && (owner.uid !== 0 || owner.gid !== 0)) {
        await chownTree(dataDir, owner.uid, owner.gid);
        if (sqliteFile && !isInside(sqliteFile, dataDir)) await fs.chown(sqliteFile, owner.uid, owner.gid);
      }
    };
    try {
      await placeAll();
    } catch (e) {
      try {
        for (const step of undo.reverse()) await step();
      } catch (undoErr) {
        throw new BackupError(`${(e as Error).message}; putting the previous data back failed too (${(undoErr as Error).message}): it is kept in ${movedAside.join(', ') || 'nowhere (there was none)'}`, 'failed');
      }
      throw new BackupError(`restore failed and was undone (the data dir is as it was): ${(e as Error).message}`, e instanceof BackupError ? e.kind : 'failed');
    }
    return { manifest, movedAside };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** Removes `file` if a restore got as far as placing it (a path that cannot exist is not an error). */
async function removeIfThere(file: string): Promise<void> {
  try {
    await fs.rm(file, { force: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOTDIR') throw e;
  }
}

/** Renames `dir` to `aside`; a data dir that cannot be renamed (a mount point) keeps its place and gives up its entries instead. */
async function moveAside(dir: string, aside: string): Promise<'renamed' | 'entries'> {
  try {
    await fs.rename(dir, aside);
    return 'renamed';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EBUSY' && code !== 'EXDEV' && code !== 'EPERM' && code !== 'EACCES') throw e;
  }
  await fs.mkdir(aside, { mode: 0o700 });
  for (const name of await fs.readdir(dir)) await fs.rename(path.join(dir, name), path.join(aside, name));
  return 'entries';
}

async function chownTree(root: string, uid: number, gid: number): Promise<void> {
  await fs.chown(root, uid, gid);
  for (const entry of await fs.readdir(root, { withFileTypes: true })) {
    const full = path.join(root, entry.name);
    if (entry.isDirectory()) await chownTree(full, uid, gid);
    else await fs.lchown(full, uid, gid);
  }
}

async function placeFile(from: string, dest: string, mode: number): Promise<void> {
  await mkdirPrivate(path.dirname(dest));
  try {
    await fs.rename(from, dest);
  } catch (e) {
    // The database may live on another filesystem than the staging directory.
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    await fs.copyFile(from, dest);
  }
  await fs.chmod(dest, mode);
}

async function mkdirPrivate(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
}
