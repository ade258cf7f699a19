import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { QueryTypes } from 'sequelize';
import { openDatabase } from '../../core/db';
import { createPostgresDatabase, forEachDatabase, postgresTestUrl } from '../helpers/harness';

/*
 * All or nothing under kill -9 (issue 8): a real child process (test/fixtures/write-crash-child.ts)
 * is SIGKILLed with its transaction open in the middle of a 1000-user bulk create and of a
 * reseller delete; the database must then hold nothing of the create and all of the reseller.
 * The same operations run to the end hold all of it / nothing of it.
 */

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'write-crash-child.ts');

function runChild(url: string, op: string, pause?: { at: string; nth: number }): Promise<'done' | 'killed'> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
      cwd: path.resolve(__dirname, '..', '..'),
      env: { ...process.env, POLYGATE_DATABASE_URL: url, CRASH_OP: op, ...(pause ? { CRASH_PAUSE_AT: pause.at, CRASH_PAUSE_NTH: String(pause.nth) } : {}) },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr?.on('data', (d) => (stderr += String(d)));
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    let outcome: 'done' | 'killed' | null = null;
    child.on('message', (m: { event: string; message?: string }) => {
      if (m.event === 'paused') {
        outcome = 'killed';
        child.kill('SIGKILL');
      } else if (m.event === 'done') outcome = 'done';
      else if (m.event === 'error') reject(new Error(m.message));
    });
    child.once('exit', () => {
      clearTimeout(timer);
      if (outcome) resolve(outcome);
      else reject(new Error(`child ended without an outcome\n${stderr}`));
    });
  });
}

async function counts(url: string): Promise<Record<string, number>> {
  const db = await openDatabase(url);
  try {
    const one = async (sql: string) => Number(((await db.sequelize.query<{ n: number | string }>(sql, { type: QueryTypes.SELECT }))[0])?.n ?? 0);
    return {
      users: await one('SELECT COUNT(*) AS n FROM users'),
      tokens: await one('SELECT COUNT(*) AS n FROM subscription_tokens'),
      wgAddressed: await one('SELECT COUNT(*) AS n FROM users WHERE wg_address IS NOT NULL'),
      resellers: await one("SELECT COUNT(*) AS n FROM sub_admins WHERE username = 'crash_reseller'"),
      resellerUsers: await one("SELECT COUNT(*) AS n FROM users u JOIN sub_admins s ON s.id = u.sub_admin_id WHERE s.username = 'crash_reseller'"),
      resellerKeys: await one("SELECT COUNT(*) AS n FROM api_keys k JOIN sub_admins s ON s.id = k.sub_admin_id WHERE s.username = 'crash_reseller'"),
      resellerPorts: await one("SELECT COUNT(*) AS n FROM port_reservations WHERE owner LIKE 'sub_admin:%'"),
    };
  } finally {
    await db.close();
  }
}

forEachDatabase((kind) => {
  describe(`kill -9 during multi-row writes leaves all or nothing [${kind}]`, function () {
    this.timeout(300_000);
    let url: string;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      if (kind === 'postgres') {
        const created = await createPostgresDatabase(postgresTestUrl!);
        url = created.url;
        cleanup = created.drop;
      } else {
        const dir = mkdtempSync(path.join(os.tmpdir(), 'polygate-write-crash-'));
        url = `sqlite:${path.join(dir, 'polygate.sqlite')}`;
        cleanup = async () => rmSync(dir, { recursive: true, force: true });
      }
    });
    afterEach(() => cleanup());

    it('bulk create of 1000 users killed mid-insert, and killed after every row before commit: nothing; run through: all 1000', async () => {
      // Users go in chunks of ~30 rows: the 10th chunk is a third of the way through.
      expect(await runChild(url, 'bulk', { at: '^INSERT INTO [`"]users[`"]', nth: 10 })).to.equal('killed');
      expect(await counts(url)).to.include({ users: 0, tokens: 0 });
      // The last statement before COMMIT: every user, token and address written, not committed.
      expect(await runChild(url, 'bulk', { at: '^UPDATE users SET wg_address', nth: 4 })).to.equal('killed');
      expect(await counts(url)).to.include({ users: 0, tokens: 0 });
      expect(await runChild(url, 'bulk')).to.equal('done');
      expect(await counts(url)).to.include({ users: 1000, tokens: 1000, wgAddressed: 1000 });
    });

    it('reseller delete killed after its users\' tokens went, and at its last statement: all of it stays; run through: all gone', async () => {
      expect(await runChild(url, 'setup-reseller')).to.equal('done');
      const before = await counts(url);
      expect(before).to.include({ resellers: 1, resellerUsers: 300, tokens: 300, resellerKeys: 1 });
      expect(await runChild(url, 'delete-reseller', { at: '^DELETE FROM [`"]?users', nth: 1 })).to.equal('killed');
      expect(await counts(url)).to.deep.equal(before);
      expect(await runChild(url, 'delete-reseller', { at: '^DELETE FROM [`"]?sub_admins', nth: 1 })).to.equal('killed');
      expect(await counts(url)).to.deep.equal(before);
      expect(await runChild(url, 'delete-reseller')).to.equal('done');
      expect(await counts(url)).to.include({ resellers: 0, resellerUsers: 0, users: 0, tokens: 0, resellerKeys: 0 });
    });
  });
});
