import { Op, type Transaction } from 'sequelize';
import { Job, type JobStatus } from '../db';
import type { Logger } from '../logger';

/** One job as its handler and callers see it (payload already parsed). */
export interface JobView<P = unknown> {
  id: number;
  kind: string;
  /** Jobs with the same target run one at a time, in the order they were queued (e.g. `node_3`). */
  target: string | null;
  status: JobStatus;
  progress: number;
  message: string | null;
  payload: P;
}

export interface JobControl {
  /**
   * Records progress (0–100) and an optional message. Do not call it from inside an open
   * database transaction: on SQLite there is one connection and the write would wait for it.
   */
  progress(percent: number, message?: string): Promise<void>;
}

/**
 * Does the work of one job. Resolving marks the job `done` (the returned string becomes its
 * message); throwing marks it `error` with the thrown message.
 */
export type JobHandler<P = unknown> = (job: JobView<P>, control: JobControl) => Promise<string | void>;

export interface JobQueueOptions {
  logger: Logger;
  /** How many jobs (of different targets) run at once; default 3. */
  concurrency?: number;
  /** How long `stop()` waits for running handlers before giving up on them; default 10 s. */
  stopTimeoutMs?: number;
}

export const INTERRUPTED_MESSAGE = 'interrupted by a daemon restart';

const ACTIVE: JobStatus[] = ['queued', 'running'];
const CANDIDATE_BATCH = 500;

/**
 * A small background job queue kept in the `jobs` table, so progress and failures survive a
 * restart and can be shown to admins. Jobs of one target run strictly one after another;
 * different targets run in parallel up to `concurrency`.
 *
 * A queue only touches jobs of the kinds registered on it (recovery included), so several
 * queues can share the table. Register every kind before `start()`.
 *
 * @example
 * const jobs = new JobQueue({ logger });
 * jobs.register<{ force: boolean }>('node.delete', async (job, { progress }) => { await progress(50, 'cleaning'); });
 * await jobs.start();
 * await ctx.db.transaction((t) => jobs.enqueue('node.delete', 'node_3', { force: false }, t));
 */
export class JobQueue {
  private readonly handlers = new Map<string, JobHandler<never>>();
  private readonly running = new Map<number, Promise<void>>();
  private readonly busyTargets = new Set<string>();
  private readonly logger: Logger;
  private readonly concurrency: number;
  private readonly stopTimeoutMs: number;
  private started: Promise<void> | undefined;
  private stopped = false;
  private paused = false;
  private pumping = false;
  private pumpAgain = false;

  constructor(options: JobQueueOptions) {
    this.logger = options.logger.child({ component: 'jobs' });
    this.concurrency = Math.max(1, options.concurrency ?? 3);
    this.stopTimeoutMs = options.stopTimeoutMs ?? 10_000;
  }

  register<P>(kind: string, handler: JobHandler<P>): void {
    if (this.handlers.has(kind)) throw new Error(`job kind ${kind} is already registered`);
    this.handlers.set(kind, handler as JobHandler<never>);
  }

  /**
   * Marks jobs a crash left `running` as failed (their handler is gone; retrying blindly could
   * repeat half-done remote work) and starts the queued ones. Idempotent.
   */
  start(): Promise<void> {
    this.started ??= (async () => {
      const kinds = [...this.handlers.keys()];
      if (kinds.length > 0) {
        const [interrupted] = await Job.update(
          { status: 'error', message: INTERRUPTED_MESSAGE },
          { where: { status: 'running', kind: { [Op.in]: kinds } } },
        );
        if (interrupted > 0) this.logger.warn({ count: interrupted }, 'jobs interrupted by a restart marked as failed');
      }
      void this.pump();
    })();
    return this.started;
  }

  /**
   * Queues a job. Inside `transaction` the job exists only if the transaction commits, and
   * it starts after the commit; never put secrets in `payload` (it is stored in clear).
   */
  async enqueue<P>(kind: string, target: string | null, payload: P, transaction?: Transaction): Promise<number> {
    if (!this.handlers.has(kind)) throw new Error(`no handler registered for job kind ${kind}`);
    const job = await Job.create({ kind, target, status: 'queued', progress: 0, message: null, payload: JSON.stringify(payload ?? {}) }, { transaction });
    if (transaction) transaction.afterCommit(() => void this.pump());
    else void this.pump();
    return job.id;
  }

  async get<P = unknown>(id: number, transaction?: Transaction): Promise<JobView<P> | null> {
    const row = await Job.findByPk(id, { raw: true, transaction });
    return row ? toView<P>(row) : null;
  }

  /** Jobs matching the filter, oldest first. */
  async list<P = unknown>(filter: { kind?: string; target?: string; status?: JobStatus[] } = {}, transaction?: Transaction): Promise<JobView<P>[]> {
    const rows = await Job.findAll({
      where: {
        ...(filter.kind !== undefined ? { kind: filter.kind } : {}),
        ...(filter.target !== undefined ? { target: filter.target } : {}),
        ...(filter.status !== undefined ? { status: { [Op.in]: filter.status } } : {}),
      },
      order: [['id', 'ASC']],
      raw: true,
      transaction,
    });
    return rows.map((r) => toView<P>(r));
  }

  /** Whether a job of `kind` for `target` is queued or running. */
  async hasActive(kind: string, target: string, transaction?: Transaction): Promise<boolean> {
    return (await Job.count({ where: { kind, target, status: { [Op.in]: ACTIVE } }, transaction })) > 0;
  }

  /** Stops starting jobs (running ones finish); for tests that need a job to stay queued. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    void this.pump();
  }

  /**
   * Resolves once no job is running and none can start (nothing queued, or the queue is
   * paused or stopped). Rejects after `timeoutMs`.
   */
  async waitForIdle(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    await this.start();
    for (;;) {
      if (this.running.size === 0 && !this.pumping) {
        if (this.paused || this.stopped || (await this.countRunnable()) === 0) return;
        void this.pump();
      }
      if (Date.now() > deadline) throw new Error(`job queue still busy after ${timeoutMs} ms (${this.running.size} running)`);
      await sleep(10);
    }
  }

  /** Starts no more jobs and waits (bounded) for running ones; jobs left queued resume on the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    const pending = [...this.running.values()];
    if (pending.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = await Promise.race([
      Promise.allSettled(pending).then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), this.stopTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (gaveUp) this.logger.warn({ running: this.running.size }, 'stopped while jobs were still running; they will be marked interrupted at the next start');
  }

  private async countRunnable(): Promise<number> {
    return Job.count({ where: { status: 'queued', kind: { [Op.in]: [...this.handlers.keys()] } } });
  }

  /** Starts as many queued jobs as concurrency and per-target ordering allow. */
  private async pump(): Promise<void> {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    if (!this.started) return; // start() pumps once recovery is done
    this.pumping = true;
    try {
      await this.started;
      do {
        this.pumpAgain = false;
        if (this.stopped || this.paused || this.running.size >= this.concurrency || this.handlers.size === 0) break;
        const candidates = await Job.findAll({
          where: { status: 'queued', kind: { [Op.in]: [...this.handlers.keys()] } },
          order: [['id', 'ASC']],
          limit: CANDIDATE_BATCH,
          raw: true,
        });
        for (const candidate of candidates) {
          if (this.stopped || this.paused || this.running.size >= this.concurrency) break;
          const targetKey = candidate.target ?? `job:${candidate.id}`;
          if (this.busyTargets.has(targetKey)) continue;
          // The conditional update is the claim: only one taker wins even across processes.
          const [claimed] = await Job.update({ status: 'running' }, { where: { id: candidate.id, status: 'queued' } });
          if (claimed !== 1) continue;
          this.busyTargets.add(targetKey);
          const run = this.execute(toView({ ...candidate, status: 'running' })).finally(() => {
            this.running.delete(candidate.id);
            this.busyTargets.delete(targetKey);
            void this.pump();
          });
          this.running.set(candidate.id, run);
        }
      } while (this.pumpAgain);
    } catch (err) {
      if (!this.stopped) this.logger.error({ err }, 'job queue could not read queued jobs');
    } finally {
      this.pumping = false;
    }
  }

  private async execute(job: JobView): Promise<void> {
    const handler = this.handlers.get(job.kind)!;
    const log = this.logger.child({ jobId: job.id, kind: job.kind, target: job.target });
    const control: JobControl = {
      progress: async (percent, message) => {
        const progress = Math.max(0, Math.min(100, Math.round(Number.isFinite(percent) ? percent : 0)));
        await Job.update({ progress, ...(message !== undefined ? { message } : {}) }, { where: { id: job.id } });
      },
    };
    log.info('job started');
    let outcome: { status: JobStatus; message: string | null; progress?: number };
    try {
      const message = await (handler as JobHandler)(job, control);
      outcome = { status: 'done', message: typeof message === 'string' ? message : null, progress: 100 };
      log.info('job done');
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      outcome = { status: 'error', message };
      log.warn({ err, reason: message }, 'job failed');
    }
    try {
      await Job.update(outcome, { where: { id: job.id } });
    } catch (err) {
      log.error({ err }, 'could not record the job outcome');
    }
  }
}

function toView<P>(row: { id: number; kind: string; target: string | null; status: JobStatus; progress: number; message: string | null; payload: string }): JobView<P> {
  let payload: unknown = {};
  try {
    payload = JSON.parse(row.payload);
  } catch {
    /* a hand-edited row: run with an empty payload rather than never */
  }
  return { id: row.id, kind: row.kind, target: row.target, status: row.status, progress: Number(row.progress), message: row.message, payload: payload as P };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
