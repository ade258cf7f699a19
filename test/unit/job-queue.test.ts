import { expect } from 'chai';
import { Job } from '../../core/db';
import { INTERRUPTED_MESSAGE, JobQueue } from '../../core/jobs';
import { logger } from '../../core/logger';
import { createHarness, forEachDatabase, type Harness } from '../helpers/harness';

/** A promise the test resolves by hand, to hold a handler mid-run. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { opened, open };
}

async function waitFor(what: string, ms: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

forEachDatabase((kind) => {
  describe(`JobQueue (jobs table) [${kind}]`, () => {
    let h: Harness;
    const queues: JobQueue[] = [];
    const newQueue = (concurrency = 3) => {
      const q = new JobQueue({ logger, concurrency, stopTimeoutMs: 2000 });
      queues.push(q);
      return q;
    };

    before(async () => {
      h = await createHarness(kind);
    });
    afterEach(async () => {
      await Promise.all(queues.splice(0).map((q) => q.stop()));
      await Job.destroy({ where: {} });
    });
    after(() => h.close());

    it('runs a job, persists progress while it runs, and records done with the returned message', async () => {
      const q = newQueue();
      const hold = gate();
      q.register<{ n: number }>('test.work', async (job, { progress }) => {
        expect(job.payload).to.deep.equal({ n: 7 });
        await progress(40, 'half way');
        await hold.opened;
        return 'finished';
      });
      await q.start();
      const id = await q.enqueue('test.work', 'node_1', { n: 7 });
      await waitFor('progress 40', 5000, async () => (await q.get(id))?.progress === 40);
      expect(await q.get(id)).to.include({ status: 'running', progress: 40, message: 'half way' });
      hold.open();
      await q.waitForIdle(5000);
      expect(await q.get(id)).to.include({ status: 'done', progress: 100, message: 'finished' });
    });

    it('a throwing handler leaves status "error" with the thrown message', async () => {
      const q = newQueue();
      q.register('test.fail', async () => {
        throw new Error('remote host said no');
      });
      await q.start();
      const id = await q.enqueue('test.fail', 'node_1', {});
      await q.waitForIdle(5000);
      expect(await q.get(id)).to.include({ status: 'error', message: 'remote host said no' });
    });

    it('jobs of one target run one at a time in queue order; other targets run in parallel up to the concurrency', async () => {
      const q = newQueue(2);
      const log: string[] = [];
      let active = 0;
      let maxActive = 0;
      // a1 holds until b1 has started (bounded): proves other targets run beside it without
      // betting on how long the enqueues take on a busy machine.
      let b1Started!: () => void;
      const b1 = new Promise<void>((r) => (b1Started = r));
      q.register<{ name: string }>('test.step', async (job) => {
        active++;
        maxActive = Math.max(maxActive, active);
        log.push(`start ${job.payload.name}`);
        if (job.payload.name === 'b1') b1Started();
        if (job.payload.name === 'a1') await Promise.race([b1, new Promise((r) => setTimeout(r, 3000))]);
        await new Promise((r) => setTimeout(r, 30));
        log.push(`end ${job.payload.name}`);
        active--;
      });
      await q.start();
      for (const [target, name] of [['node_1', 'a1'], ['node_1', 'a2'], ['node_1', 'a3'], ['node_2', 'b1'], ['node_3', 'c1']] as const) {
        await q.enqueue('test.step', target, { name });
      }
      await q.waitForIdle(5000);
      const a = log.filter((l) => l.endsWith('a1') || l.endsWith('a2') || l.endsWith('a3'));
      expect(a).to.deep.equal(['start a1', 'end a1', 'start a2', 'end a2', 'start a3', 'end a3']);
      expect(maxActive).to.equal(2);
      expect(log.indexOf('start b1')).to.be.lessThan(log.indexOf('end a1'));
    });

    it('a job queued inside a transaction that rolls back never exists; one that commits starts after the commit', async () => {
      const q = newQueue();
      const ran: number[] = [];
      q.register('test.tx', async (job) => {
        ran.push(job.id);
      });
      await q.start();
      await h.core.ctx.db
        .transaction(async (t) => {
          await q.enqueue('test.tx', 'node_1', {}, t);
          throw new Error('rollback');
        })
        .catch(() => undefined);
      expect(await Job.count({ where: { kind: 'test.tx' } })).to.equal(0);
      const id = await h.core.ctx.db.transaction((t) => q.enqueue('test.tx', 'node_1', {}, t));
      await q.waitForIdle(5000);
      expect(ran).to.deep.equal([id]);
    });

    it('at start, jobs a crash left "running" become "error: interrupted by a daemon restart" and queued ones resume; other kinds are untouched', async () => {
      const crashed = await Job.create({ kind: 'test.resume', target: 'node_1', status: 'running', progress: 30, payload: '{}' });
      const waiting = await Job.create({ kind: 'test.resume', target: 'node_1', status: 'queued', payload: '{"x":1}' });
      const foreign = await Job.create({ kind: 'someone.else', target: 'node_9', status: 'running', payload: '{}' });
      const q = newQueue();
      const ran: unknown[] = [];
      q.register('test.resume', async (job) => {
        ran.push(job.payload);
      });
      await q.start();
      await q.waitForIdle(5000);
      expect(await q.get(crashed.id)).to.include({ status: 'error', message: INTERRUPTED_MESSAGE });
      expect(await q.get(waiting.id)).to.include({ status: 'done' });
      expect(ran).to.deep.equal([{ x: 1 }]);
      expect((await Job.findByPk(foreign.id, { raw: true }))!.status).to.equal('running');
    });

    it('pause keeps new jobs queued (hasActive sees them) until resume; stop starts nothing more', async () => {
      const q = newQueue();
      const ran: number[] = [];
      q.register('test.pause', async (job) => {
        ran.push(job.id);
      });
      await q.start();
      q.pause();
      const id = await q.enqueue('test.pause', 'node_4', {});
      await q.waitForIdle(1000); // paused: idle means "nothing can start"
      expect(await q.hasActive('test.pause', 'node_4')).to.equal(true);
      expect(ran).to.deep.equal([]);
      q.resume();
      await q.waitForIdle(5000);
      expect(ran).to.deep.equal([id]);
      expect(await q.hasActive('test.pause', 'node_4')).to.equal(false);

      await q.stop();
      const later = await q.enqueue('test.pause', 'node_4', {});
      await new Promise((r) => setTimeout(r, 100));
      expect((await q.get(later))!.status).to.equal('queued');
    });

    it('waitForIdle rejects after its timeout while a handler hangs', async () => {
      const q = newQueue();
      const hold = gate();
      q.register('test.hang', () => hold.opened);
      await q.start();
      await q.enqueue('test.hang', 'node_5', {});
      let err: Error | undefined;
      await q.waitForIdle(200).catch((e: Error) => (err = e));
      expect(err?.message).to.match(/still busy after 200 ms/);
      hold.open();
      await q.waitForIdle(5000);
    });

    it('enqueue refuses a kind with no handler (it would stay queued forever)', async () => {
      const q = newQueue();
      await q.start();
      let err: Error | undefined;
      await q.enqueue('test.unknown', null, {}).catch((e: Error) => (err = e));
      expect(err?.message).to.equal('no handler registered for job kind test.unknown');
    });
  });
});
