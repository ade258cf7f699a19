import { expect } from 'chai';
import { fuzzTargets, runFuzz } from '../helpers/fuzz';
import { createHarness, forEachDatabase, type Harness } from '../helpers/harness';

/*
 * The fuzzer as part of the suite (issue 8): a seeded, bounded run of fuzzed requests across
 * every REST route, every tRPC procedure and the public pages, with every kind of key, over
 * real HTTP on 127.0.0.1. Proves 0 × 5xx and a healthy daemon afterwards. The seed is printed;
 * rerun one with POLYGATE_FUZZ_SEED=<seed> (and POLYGATE_FUZZ_COUNT for a longer run).
 */

const SEED = Number(process.env.POLYGATE_FUZZ_SEED ?? 20260601);
const COUNT = Math.min(Number(process.env.POLYGATE_FUZZ_COUNT ?? 2400), 100_000);

forEachDatabase((kind) => {
  describe(`fuzzed requests [${kind}]`, function () {
    this.timeout(300_000);
    let h: Harness;
    let port: number;
    const keys: (string | undefined)[] = [];
    const usernames: string[] = [];
    const ids: number[] = [];

    before(async () => {
      h = await createHarness(kind);
      port = Number(new URL(await h.listen()).port);
      const admin = h.http;
      const reseller = async (username: string, active = true) => {
        const res = await admin.post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey).send({ username, password: 'fuzz-pass-1', is_active: active });
        ids.push(res.body.sub_admin.id);
        return res.body.sub_admin.api_key as string;
      };
      const active = await reseller('fuzz_reseller');
      const inactive = await reseller('fuzz_inactive', false);
      for (const [key, name] of [[h.adminKey, 'fuzz_main'], [active, 'fuzz_res']] as const) {
        const res = await admin.post('/api/v1/users').set('X-API-KEY', key).send({ bulk_count: 5, enable_l2tp: true, enable_wg1: true });
        usernames.push(...(res.body.created_users as string[]));
        await admin.post('/api/v1/users').set('X-API-KEY', key).send({ username: name }).expect(200);
        usernames.push(name);
      }
      keys.push(h.adminKey, h.adminKey, active, active, inactive, undefined, 'not-a-key');
    });
    after(() => h.close());

    it(`${COUNT} seeded requests over every route and both transports: no 5xx, daemon healthy after (seed ${SEED})`, async () => {
      const outcome = await runFuzz({ port, seed: SEED, count: COUNT, concurrency: 8, ctx: { keys, usernames, ids } });
      const summary = [...outcome.byStatus].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`).join(' ');
      console.log(`      seed ${SEED}: ${outcome.requests} requests in ${outcome.seconds.toFixed(1)} s: ${summary}`);
      expect(outcome.requests).to.equal(COUNT);
      expect(outcome.serverErrors.slice(0, 20), `5xx or no answer (seed ${SEED})`).to.deep.equal([]);
      // Every route was aimed at; most got past authentication at least sometimes.
      const missed = fuzzTargets().map((t) => `${t.transport} ${t.method} ${t.path}`).filter((t) => !outcome.hits.has(t));
      expect(missed).to.deep.equal([]);
      expect([...outcome.byStatus.keys()].some((s) => s >= 200 && s < 300)).to.equal(true);

      // Healthy after: liveness, the health procedure, and an ordinary write and read.
      await h.http.get('/healthz').expect(200);
      await h.http.get('/api/v1/health').set('X-API-KEY', h.adminKey).expect(200);
      await h.http.post('/api/v1/users').set('X-API-KEY', h.adminKey).send({ username: 'after_the_fuzz' }).expect(200);
      const got = await h.http.get('/api/v1/users/after_the_fuzz').set('X-API-KEY', h.adminKey);
      expect(got.status).to.equal(200);
      expect(h.services.ctx.db.writeGate.depth()).to.equal(0);
    });
  });
});
