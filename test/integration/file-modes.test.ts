import { expect } from 'chai';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bootstrapCore } from '../../core/bootstrap';
import { loadConfig } from '../../core/config';
import { randomKey } from '../../core/secrets';

/*
 * The database holds VPN passwords and WireGuard private keys (issue 8, finding 6): its file
 * and the -wal/-shm beside it must be 0600, and the data dir 0700 even when it already existed
 * with a looser mode. Runs the real bootstrap on a real directory.
 */

const modeOf = (p: string) => statSync(p).mode & 0o777;

function configFor(dataDir: string) {
  return loadConfig({
    POLYGATE_DATA_DIR: dataDir,
    POLYGATE_ADMIN_API_KEY: randomKey(32),
    POLYGATE_FIREWALL: 'off',
    POLYGATE_RESELLER_LISTENERS: 'off',
  });
}

describe('file modes of the data dir and the SQLite database', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'polygate-modes-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('a fresh start creates the data dir 0700 and polygate.sqlite, -wal and -shm 0600 (whatever the umask)', async () => {
    const dataDir = path.join(root, 'fresh');
    const previous = process.umask(0o000);
    try {
      const core = await bootstrapCore(configFor(dataDir));
      const db = path.join(dataDir, 'polygate.sqlite');
      try {
        expect(modeOf(dataDir).toString(8)).to.equal('700');
        for (const file of [db, `${db}-wal`, `${db}-shm`]) {
          expect(existsSync(file), file).to.equal(true);
          expect(modeOf(file).toString(8), file).to.equal('600');
        }
      } finally {
        await core.close();
      }
    } finally {
      process.umask(previous);
    }
  });

  it('an existing data dir 0755 with a database 0644 is tightened at start', async () => {
    const dataDir = path.join(root, 'loose');
    mkdirSync(dataDir, { mode: 0o755 });
    chmodSync(dataDir, 0o755);
    const first = await bootstrapCore(configFor(dataDir));
    await first.close();
    const db = path.join(dataDir, 'polygate.sqlite');
    chmodSync(dataDir, 0o755);
    chmodSync(db, 0o644);
    // A stale -wal left looser by an older version (SQLite would otherwise keep its mode).
    if (!existsSync(`${db}-wal`)) writeFileSync(`${db}-wal`, '');
    chmodSync(`${db}-wal`, 0o644);

    const second = await bootstrapCore(configFor(dataDir));
    try {
      expect(modeOf(dataDir).toString(8)).to.equal('700');
      for (const file of [db, `${db}-wal`, `${db}-shm`]) expect(modeOf(file).toString(8), file).to.equal('600');
    } finally {
      await second.close();
    }
  });
});
