import { expect } from 'chai';
import { captureLogs } from '../../core/logger';
import { Reconciler } from '../../core/reconciler/reconciler';
import { addScriptedPlugin } from '../fakes/scripted-plugin';
import { createHarness, forEachDatabase, type Harness } from '../helpers/harness';

/*
 * Nothing secret reaches a log line (issue 8, finding 5). The test provokes failures that are
 * logged as errors — a constraint failure in the middle of a create (after the users' INSERT
 * with generated passwords and WireGuard private keys, and on the users' INSERT itself) and a
 * plugin whose failure carries the users it was given — then scans every captured line for
 * every password, private key, subscription token and API key that was generated. Before the
 * error serializer, `err.sql` / `err.parameters` carried them.
 */

const SECRET_COLUMNS = new Set(['openvpn_password', 'l2tp_password', 'cisco_password', 'wg_private_key', 'token']);

/** Records the secret values of every INSERT the daemon binds (the generated ones included). */
function recordInsertedSecrets(h: Harness): { secrets: Set<string>; stop(): void } {
  const sequelize = h.services.ctx.db.sequelize as unknown as { query: (sql: unknown, options?: { bind?: unknown }) => Promise<unknown> };
  const original = sequelize.query;
  const secrets = new Set<string>();
  sequelize.query = function (sql, options) {
    const m = typeof sql === 'string' ? /^INSERT INTO [`"]?(\w+)[`"]? \(([^)]*)\) VALUES/.exec(sql) : null;
    const bind = options?.bind;
    if (m && Array.isArray(bind)) {
      const columns = m[2]!.split(',').map((c) => c.trim().replace(/["`]/g, ''));
      bind.forEach((value, i) => {
        if (SECRET_COLUMNS.has(columns[i % columns.length]!) && typeof value === 'string' && value.length >= 6) secrets.add(value);
      });
    }
    return original.call(this, sql, options);
  };
  return { secrets, stop: () => (sequelize.query = original) };
}

async function failInsertsInto(h: Harness, table: string): Promise<() => Promise<void>> {
  const { sequelize, dialect } = h.services.ctx.db;
  if (dialect === 'sqlite') {
    // Not RAISE(ABORT): SQLite reports that as a constraint failure, which create answers 409
    // without logging. A malformed-JSON error is a plain SQLITE_ERROR, logged as unexpected.
    await sequelize.query(`CREATE TRIGGER fail_${table} BEFORE INSERT ON ${table} BEGIN SELECT json('forced failure for the test'); END`);
    return async () => void (await sequelize.query(`DROP TRIGGER fail_${table}`));
  }
  await sequelize.query(
    "CREATE OR REPLACE FUNCTION polygate_test_fail() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'forced failure for the test' USING ERRCODE = 'P0001'; END $$ LANGUAGE plpgsql",
  );
  await sequelize.query(`CREATE TRIGGER fail_${table} BEFORE INSERT ON ${table} FOR EACH ROW EXECUTE FUNCTION polygate_test_fail()`);
  return async () => void (await sequelize.query(`DROP TRIGGER fail_${table} ON ${table}`));
}

forEachDatabase((kind) => {
  describe(`secrets stay out of the log [${kind}]`, function () {
    this.timeout(60_000);
    let h: Harness;
    let logs: ReturnType<typeof captureLogs>;
    let recorder: ReturnType<typeof recordInsertedSecrets>;

    beforeEach(async () => {
      logs = captureLogs();
      h = await createHarness(kind);
      recorder = recordInsertedSecrets(h);
    });
    afterEach(async () => {
      recorder.stop();
      logs.stop();
      await h.close();
    });

    const scan = (extra: string[] = []) => {
      const text = logs.text();
      const secrets = [...recorder.secrets, ...extra, h.adminKey];
      expect(secrets.length).to.be.greaterThan(5);
      const leaked = secrets.filter((s) => text.includes(s));
      expect(leaked, 'secrets found in the log').to.deep.equal([]);
    };

    it('a create failing in the database after the users were inserted: 500, logged, no password/key/token in the log', async () => {
      const restore = await failInsertsInto(h, 'subscription_tokens');
      const given = 'Given-Pass_42x';
      const single = await h.http.post('/api/v1/users').set('X-API-KEY', h.adminKey).send({ username: 'leaky_one', openvpn_password: given, enable_l2tp: true, enable_cisco: true, enable_wg1: true });
      const bulk = await h.http.post('/api/v1/users').set('X-API-KEY', h.adminKey).send({ bulk_count: 20, enable_l2tp: true, enable_cisco: true, enable_wg1: true });
      await restore();
      expect(single.status).to.equal(500);
      expect(bulk.status).to.equal(500);
      expect(logs.text()).to.include('unexpected error');
      expect(logs.text()).to.match(kind === 'sqlite' ? /malformed JSON/ : /forced failure for the test/);
      expect(recorder.secrets.size).to.be.greaterThan(60); // 21 users × (3 passwords + a WG key), plus tokens
      scan([given]);
    });

    it("a create failing on the users' INSERT itself and the same over tRPC: nothing secret logged", async () => {
      const restore = await failInsertsInto(h, 'users');
      const rest = await h.http.post('/api/v1/users').set('X-API-KEY', h.adminKey).send({ bulk_count: 5, enable_l2tp: true, enable_wg1: true });
      const trpc = await h.http.post('/trpc/users.create').set('X-API-KEY', h.adminKey).send({ username: 'leaky_trpc', l2tp_password: 'Trpc-Pass_77', enable_l2tp: true, enable_wg1: true });
      await restore();
      expect(rest.status).to.equal(500);
      expect(trpc.status).to.equal(500);
      expect(recorder.secrets.size).to.be.greaterThan(10);
      scan(['Trpc-Pass_77']);
    });

    it('a failing plugin whose error carries the users it was given: the log names the failure, not the passwords', async () => {
      const created = await h.http.post('/api/v1/users').set('X-API-KEY', h.adminKey).send({ bulk_count: 5, enable_l2tp: true });
      expect(created.status).to.equal(200);
      const reseller = await h.http.post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey).send({ username: 'log_reseller', password: 'Reseller-Pass_9' });
      const resellerKey = reseller.body.sub_admin.api_key as string;
      const plugin = await addScriptedPlugin(h.core.plugins, 'l2tp', 'main');
      plugin.apply = async (state) => {
        // Like a daemon tool that echoes its input: the error holds every user's password.
        throw Object.assign(new Error('l2tp daemon refused the secrets file'), { users: state.users, input: JSON.stringify(state.users) });
      };
      const reconciler = new Reconciler(h.services.ctx, h.services, h.core.plugins, h.core.pki, h.core.accounting.live, { debounceMs: 0, initialBackoffMs: 60_000 });
      try {
        await reconciler.start().catch(() => undefined);
        await reconciler.idle();
      } finally {
        await reconciler.stop();
      }
      expect(logs.text()).to.include('l2tp daemon refused the secrets file');
      scan([resellerKey, 'Reseller-Pass_9']);
    });
  });
});
