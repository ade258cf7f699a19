import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { BackupError, createBackup, restoreBackup, verifyBackup } from '../../core/backup';
import { requirePrerequisite } from '../helpers/prereq';
import { loadConfig } from '../../core/config';
import { UserUsage, User } from '../../core/db';
import type { DaemonHandle } from '../../core/daemon';
import { forEachDatabase, type DatabaseKind } from '../helpers/harness';
import { api, newPanel, runCliProcess, startPanel, type Panel } from './backup-helpers';

type Json = Record<string, unknown>;

/** A user's detail with the panel's address taken out of links (the restored panel listens on another port). */
const withoutOrigin = (value: unknown, origin: string): unknown => JSON.parse(JSON.stringify(value).split(origin).join('<panel>'));

async function createUsers(base: string, key: string, names: string[], extra: Json = {}): Promise<void> {
  for (const username of names) {
    const r = await api(base, 'POST', '/api/v1/users', key, { username, data_limit: 5, expiry_days: 30, ...extra });
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
  }
}

/** What a panel serves for each user: the API detail and the subscription page (JSON), links normalized. */
async function snapshotUsers(base: string, key: string, names: string[]): Promise<Map<string, { detail: unknown; sub: unknown }>> {
  const out = new Map<string, { detail: unknown; sub: unknown }>();
  for (const name of names) {
    const detail = await api<Json>(base, 'GET', `/api/v1/users/${name}`, key);
    expect(detail.status, `${name}: ${JSON.stringify(detail.body)}`).to.equal(200);
    const subUrl = new URL(String(detail.body.subscription_url));
    const sub = await api(base, 'GET', `${subUrl.pathname}${subUrl.search}`, null);
    expect(sub.status, `subscription page of ${name}`).to.equal(200);
    out.set(name, { detail: withoutOrigin(detail.body, base), sub: withoutOrigin(sub.body, base) });
  }
  return out;
}

async function userNames(base: string, key: string): Promise<string[]> {
  const r = await api<{ main_admin: { users: { username: string }[] }; sub_admins: { users: { username: string }[] }[] }>(base, 'GET', '/api/v1/users/list_all', key);
  expect(r.status).to.equal(200);
  return [...r.body.main_admin.users, ...r.body.sub_admins.flatMap((s) => s.users)].map((u) => u.username).sort();
}

describe('backup and restore (polygate backup / restore against a live daemon)', function () {
  this.timeout(120_000);

  forEachDatabase((kind: DatabaseKind) => {
    describe(`on ${kind}`, () => {
      let source: Panel;
      let target: Panel;
      let daemon: DaemonHandle | null = null;
      afterEach(async () => {
        await daemon?.stop();
        daemon = null;
        await source?.drop();
        await target?.drop();
      });

      it('a backup taken by another process while the API writes restores to a panel serving the same users, keys, tokens, usage and certificates', async () => {
        source = await newPanel(kind);
        daemon = await startPanel(source);
        const base = daemon.url;
        const adminKey = daemon.core.generatedAdminKey!;
        expect(adminKey, 'first start generates the admin key').to.be.a('string');

        const reseller = await api<{ sub_admin: { id: number; api_key: string } }>(base, 'POST', '/api/v1/sub_admins', adminKey, { username: 'shop1', password: 'reseller-pass-1' });
        expect(reseller.status, JSON.stringify(reseller.body)).to.equal(200);
        const resellerKey = reseller.body.sub_admin.api_key;
        await createUsers(base, adminKey, ['alice', 'bob', 'carol']);
        await createUsers(base, resellerKey, ['r-dave', 'r-erin']);
        // Usage as accounting leaves it (distinct per user, so a mix-up shows).
        for (const [i, username] of ['alice', 'bob', 'r-dave'].entries()) {
          const user = await User.findOne({ where: { username } });
          await UserUsage.upsert({ user_id: user!.id, upload_bytes: 1_000_003 * (i + 1), download_bytes: 7_000_001 * (i + 1) });
        }
        const aliceCert = await daemon.core.pki.clientCertificate('alice');
        const secretKey = readFileSync(path.join(source.dataDir, 'secret.key'));

        // Writers keep going for the whole backup: the snapshot must be one consistent point.
        let writing = true;
        let written = 0;
        const writer = (async () => {
          while (writing) {
            const r = await api(base, 'POST', '/api/v1/users', adminKey, { username: `w-${written}`, data_limit: 1 });
            expect(r.status).to.equal(200);
            written++;
          }
        })();
        const archive = path.join(mkdtempSync(path.join(os.tmpdir(), 'pg-bk-out-')), 'panel.tar.gz');
        const backup = await runCliProcess(['--config', source.configFile, 'backup', archive]);
        writing = false;
        await writer;
        expect(backup.code, backup.stderr).to.equal(0);
        expect(written, 'writes happened during the backup').to.be.greaterThan(0);
        expect(statSync(archive).mode & 0o777, 'the archive holds secrets').to.equal(0o600);
        expect(readdirSync(path.dirname(archive)), 'no staging or partial files left').to.deep.equal(['panel.tar.gz']);
        expect(backup.stdout, 'the CLI prints no secret').to.equal('');
        // Not a terminal: plain progress lines instead of a bar.
        expect(backup.stderr).to.match(/^backup: 0% /m).and.to.match(/^backup: 100% /m);
        expect(backup.stderr).to.not.include('\u001b[');

        const liveNames = await userNames(base, adminKey);
        const live = await snapshotUsers(base, adminKey, liveNames);
        await daemon.stop();
        daemon = null;

        target = await newPanel(kind);
        const restore = await runCliProcess(['--config', target.configFile, 'restore', archive]);
        expect(restore.code, restore.stderr).to.equal(0);
        expect(statSync(target.dataDir).mode & 0o777).to.equal(0o700);
        expect(statSync(path.join(target.dataDir, 'secret.key')).mode & 0o777).to.equal(0o600);
        expect(readFileSync(path.join(target.dataDir, 'secret.key')).equals(secretKey), 'secret.key restored byte for byte').to.equal(true);

        daemon = await startPanel(target);
        expect(daemon.core.generatedAdminKey, 'the restored panel keeps the old admin key instead of making one').to.equal(undefined);
        const rbase = daemon.url;
        const restoredNames = await userNames(rbase, adminKey);
        for (const name of ['alice', 'bob', 'carol', 'r-dave', 'r-erin']) expect(restoredNames).to.include(name);
        // Users written during the backup are in it or not, never half: each one restored is whole.
        expect(restoredNames.every((n) => liveNames.includes(n)), 'nothing restored that the live panel did not have').to.equal(true);
        const restored = await snapshotUsers(rbase, adminKey, restoredNames);
        for (const name of restoredNames) {
          expect(withoutOrigin(restored.get(name), rbase), `${name} as the restored panel serves it`).to.deep.equal(live.get(name));
        }
        const alice = restored.get('alice')!.detail as Json;
        expect(alice.upload_bytes).to.equal(1_000_003);
        expect(alice.download_bytes).to.equal(7_000_001);

        const own = await api<{ users: { username: string }[] }>(rbase, 'GET', '/api/v1/users/list_all', resellerKey);
        expect(own.status, 'the reseller key works on the restored panel').to.equal(200);
        expect(own.body.users.map((u) => u.username).sort()).to.deep.equal(['r-dave', 'r-erin']);
        expect((await api(rbase, 'GET', '/api/v1/health', 'not-a-key-at-all-xx')).status).to.equal(401);

        const restoredCert = await daemon.core.pki.clientCertificate('alice');
        expect(restoredCert.certificate, "alice's OpenVPN certificate is the one issued before").to.equal(aliceCert.certificate);
        expect(restoredCert.privateKey).to.equal(aliceCert.privateKey);
        expect(await daemon.core.pki.caCertificate()).to.equal(readFileSync(path.join(target.dataDir, 'pki', 'ca.crt'), 'utf8'));
      });

      if (kind === 'postgres') {
        it('refuses to restore into a PostgreSQL database another daemon uses (even from a data dir of its own); once stopped, replaces it only with --force', async () => {
          source = await newPanel(kind);
          daemon = await startPanel(source);
          const archive = path.join(mkdtempSync(path.join(os.tmpdir(), 'pg-bk-out-')), 'panel.tar.gz');
          const backup = await runCliProcess(['--config', source.configFile, 'backup', archive]);
          expect(backup.code, backup.stderr).to.equal(0);
          // Same database, another machine's data dir: the control socket cannot see that daemon.
          target = await newPanel('sqlite', { databaseUrl: source.config.databaseUrlResolved });
          expect((await api(daemon.url, 'GET', '/api/v1/health', daemon.core.generatedAdminKey!)).status).to.equal(200);
          const r = await runCliProcess(['--config', target.configFile, 'restore', archive, '--force']);
          expect(r.code, r.stderr).to.equal(4);
          expect(r.stderr).to.match(/other session\(s\) are connected/);
          const key = daemon.core.generatedAdminKey!;
          expect((await api(daemon.url, 'POST', '/api/v1/users', key, { username: 'after-backup' })).status).to.equal(200);
          await daemon.stop();
          daemon = null;
          // Stopped: a database that holds a panel is replaced only with --force (pg_restore --clean).
          const plain = await runCliProcess(['--config', target.configFile, 'restore', archive]);
          expect(plain.code, plain.stderr).to.equal(4);
          expect(plain.stderr).to.match(/PostgreSQL database already holds a panel; run restore with --force/);
          const forced = await runCliProcess(['--config', target.configFile, 'restore', archive, '--force']);
          expect(forced.code, forced.stderr).to.equal(0);
          daemon = await startPanel(target);
          const names = await userNames(daemon.url, key);
          expect(names, 'the database is back to the backup').to.not.include('after-backup');
        });
      }
    });
  });

  describe('refusals', () => {
    let panel: Panel;
    let daemon: DaemonHandle | null = null;
    let archive: string;
    const work = mkdtempSync(path.join(os.tmpdir(), 'pg-bk-tamper-'));
    before(async () => {
      panel = await newPanel('sqlite');
      daemon = await startPanel(panel);
      await createUsers(daemon.url, daemon.core.generatedAdminKey!, ['tina']);
      archive = path.join(work, 'good.tar.gz');
      const r = await runCliProcess(['--config', panel.configFile, 'backup', archive]);
      expect(r.code, r.stderr).to.equal(0);
    });
    after(async () => {
      await daemon?.stop();
    });

    /** Unpacks the good archive, lets `change` edit the tree, packs it again (with the system tar, as an attacker would). */
    function tampered(name: string, change: (dir: string) => void): string {
      const dir = mkdtempSync(path.join(work, `${name}-`));
      execFileSync('tar', ['-xzf', archive, '-C', dir]);
      change(dir);
      const out = path.join(work, `${name}.tar.gz`);
      execFileSync('tar', ['-czf', out, '-C', dir, ...readdirSync(dir)]);
      return out;
    }

    it('refuses archives that were altered: a changed file, an unlisted file, an edited manifest, a link', async () => {
      const cases = {
        'changed-secret': tampered('changed-secret', (d) => writeFileSync(path.join(d, 'data', 'secret.key'), 'AAAA')),
        'extra-file': tampered('extra-file', (d) => writeFileSync(path.join(d, 'data', 'planted.sh'), 'echo hi')),
        'edited-manifest': tampered('edited-manifest', (d) => {
          const m = JSON.parse(readFileSync(path.join(d, 'manifest.json'), 'utf8'));
          m.createdAt = '2000-01-01T00:00:00.000Z';
          writeFileSync(path.join(d, 'manifest.json'), JSON.stringify(m));
        }),
        'symlink': tampered('symlink', (d) => execFileSync('ln', ['-s', '/etc/passwd', path.join(d, 'data', 'link')])),
        'not-an-archive': (() => {
          const f = path.join(work, 'junk.tar.gz');
          writeFileSync(f, 'not gzip');
          return f;
        })(),
      };
      // One through the CLI for the exit code; the rest in-process (same code, no process start each).
      const viaCli = await newPanel('sqlite');
      const r = await runCliProcess(['--config', viaCli.configFile, 'restore', cases['changed-secret']]);
      expect(r.code, r.stderr).to.equal(5);
      expect(r.stderr).to.match(/secret\.key does not match its checksum/);
      expect(existsSync(viaCli.dataDir), 'nothing restored').to.equal(false);
      for (const [name, file] of Object.entries(cases)) {
        const target = await newPanel('sqlite');
        const err = await restoreBackup(target.config, file).then(() => null, (e: unknown) => e);
        expect(err, name).to.be.instanceOf(BackupError);
        expect((err as BackupError).kind, `${name}: ${(err as Error).message}`).to.equal('invalid_archive');
        expect((err as Error).message, name).to.match(/not a valid polygate backup/);
        expect(existsSync(target.dataDir), `${name}: nothing restored`).to.equal(false);
        expect(readdirSync(path.dirname(target.dataDir)).filter((n) => n.startsWith('.polygate-')), `${name}: no unpacked secrets left behind`).to.deep.equal([]);
      }
      // The same checks, without restoring: the good archive passes.
      expect((await verifyBackup(archive)).database.kind).to.equal('sqlite');
    });

    it('refuses to restore onto the data dir of a running daemon, even with --force', async () => {
      const before = readFileSync(path.join(panel.dataDir, 'secret.key'));
      const runs = await Promise.all([[], ['--force']].map((args) => runCliProcess(['--config', panel.configFile, 'restore', archive, ...args])));
      for (const r of runs) {
        expect(r.code, r.stderr).to.equal(4);
        expect(r.stderr).to.match(/is running on .*stop it/);
      }
      expect(readFileSync(path.join(panel.dataDir, 'secret.key')).equals(before)).to.equal(true);
      expect((await api(daemon!.url, 'GET', '/api/v1/users/tina', daemon!.core.generatedAdminKey!)).status, 'the running panel is untouched').to.equal(200);
    });

    it('a restore that fails half way puts the previous data dir back', async () => {
      const other = await newPanel('sqlite');
      await (await startPanel(other)).stop();
      const before = readFileSync(path.join(other.dataDir, 'secret.key'));
      // The database goes where a file blocks its directory: placing it fails after the data dir was moved aside.
      const blocker = path.join(path.dirname(other.dataDir), 'blocker');
      writeFileSync(blocker, '');
      const config = loadConfig({ POLYGATE_DATA_DIR: other.dataDir, POLYGATE_DATABASE_URL: `sqlite:${path.join(blocker, 'db.sqlite')}` });
      const err = await restoreBackup(config, archive, { force: true }).then(() => null, (e: unknown) => e);
      expect(err).to.be.instanceOf(BackupError);
      expect((err as Error).message).to.match(/restore failed and was undone/);
      expect(readFileSync(path.join(other.dataDir, 'secret.key')).equals(before), 'the old secret.key is back').to.equal(true);
      expect(existsSync(path.join(other.dataDir, 'polygate.sqlite')), 'and its database').to.equal(true);
      expect(readdirSync(path.dirname(other.dataDir)).filter((n) => n.includes('before-restore') || n.startsWith('.polygate-'))).to.deep.equal([]);
    });

    it('replaces a stopped panel only with --force, keeping the old data dir aside', async () => {
      const other = await newPanel('sqlite');
      const d = await startPanel(other);
      await d.stop();
      const first = await runCliProcess(['--config', other.configFile, 'restore', archive]);
      expect(first.code, first.stderr).to.equal(4);
      expect(first.stderr).to.match(/--force/);
      const forced = await runCliProcess(['--config', other.configFile, 'restore', archive, '--force']);
      expect(forced.code, forced.stderr).to.equal(0);
      const aside = readdirSync(path.dirname(other.dataDir)).filter((n) => n.startsWith('data.before-restore-'));
      expect(aside, 'the old data dir is kept').to.have.length(1);
      expect(readFileSync(path.join(other.dataDir, 'secret.key')).equals(readFileSync(path.join(panel.dataDir, 'secret.key')))).to.equal(true);
    });
  });

  it('restored files belong to the owner of the data dir (the daemon\'s user), not to root running restore', async function () {
    requirePrerequisite(this, process.getuid?.() === 0, 'needs root to restore for another user');
    const source = await newPanel('sqlite');
    const d = await startPanel(source);
    const archive = path.join(mkdtempSync(path.join(os.tmpdir(), 'pg-bk-own-')), 'panel.tar.gz');
    try {
      await createBackup(source.config, archive);
    } finally {
      await d.stop();
    }
    const target = await newPanel('sqlite');
    mkdirSync(target.dataDir, { mode: 0o700 });
    chownSync(target.dataDir, 65534, 65534);
    await restoreBackup(target.config, archive);
    for (const rel of ['.', 'secret.key', 'polygate.sqlite']) {
      const st = statSync(path.join(target.dataDir, rel));
      expect([st.uid, st.gid], rel).to.deep.equal([65534, 65534]);
    }
  });

  it('scheduled backups go into <data dir>/backups, mode 0600, keeping the newest POLYGATE_BACKUP_KEEP', async () => {
    const panel = await newPanel('sqlite', { backupIntervalHours: 24, backupKeep: 2 });
    const daemon = await startPanel(panel);
    try {
      expect(daemon.backups, 'POLYGATE_BACKUP_INTERVAL_HOURS turns them on').to.not.equal(null);
      const files: string[] = [];
      for (let i = 0; i < 3; i++) files.push((await daemon.backups!.runOnce())!);
      const dir = path.join(panel.dataDir, 'backups');
      const kept = readdirSync(dir).sort();
      expect(kept).to.deep.equal(files.slice(1).map((f) => path.basename(f)));
      for (const f of kept) {
        expect(statSync(path.join(dir, f)).mode & 0o777).to.equal(0o600);
        const m = await verifyBackup(path.join(dir, f));
        expect(m.files.some((e) => e.path.startsWith('data/backups/')), 'a backup never holds older backups').to.equal(false);
      }
    } finally {
      await daemon.stop();
    }
  });

  it('is off by default', async () => {
    const panel = await newPanel('sqlite');
    const daemon = await startPanel(panel);
    await daemon.stop();
    expect(daemon.backups).to.equal(null);
  });
});
