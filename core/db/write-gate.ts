import { AsyncLocalStorage } from 'node:async_hooks';
import { DomainError } from '../errors';

/**
 * The one place where writers wait for each other.
 *
 * SQLite has one writer at a time. In WAL mode a *deferred* transaction that has read and then
 * writes fails at once with SQLITE_BUSY when another connection wrote meanwhile (the busy
 * timeout does not apply to that upgrade), and Sequelize's SQLite driver opens a connection
 * per transaction, so two concurrent requests are two connections racing. The gate makes
 * every writer in this process take its turn: transactions start `BEGIN IMMEDIATE` while
 * holding the gate, and writes outside a transaction take the gate for their one statement.
 * PostgreSQL needs no gate (row locks), but a transaction can still lose a deadlock or a
 * serialization check; those are retried from the start, here as well.
 *
 * Only when a writer has waited longer than `maxWaitMs` (the database really cannot keep up)
 * does it give up with {@link DatabaseBusyError}, which the API answers with 503 and
 * `Retry-After`.
 */
export class WriteGate {
  private tail: Promise<void> = Promise.resolve();
  private waiting = 0;
  private readonly holder = new AsyncLocalStorage<true>();

  /** Public so a test can make the database "too slow" without being slow. */
  constructor(public maxWaitMs: number) {}

  /** True inside `run` (nested writes must not wait for themselves). */
  held(): boolean {
    return this.holder.getStore() === true;
  }

  /** Writers queued or running right now (for tests and metrics). */
  depth(): number {
    return this.waiting;
  }

  /** Runs `fn` alone among gated writers, FIFO. Re-entrant within one async context. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.held()) return fn();
    const previous = this.tail;
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    this.tail = previous.then(() => mine);
    this.waiting++;
    try {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), this.maxWaitMs);
        timer.unref();
      });
      const turn = await Promise.race([previous.then(() => 'turn' as const), timedOut]);
      clearTimeout(timer);
      if (turn === 'timeout') {
        // Our slot must still pass the baton when the writers before us finish.
        previous.then(release, release);
        throw new DatabaseBusyError();
      }
      try {
        return await this.holder.run(true, fn);
      } finally {
        release();
      }
    } finally {
      this.waiting--;
    }
  }
}

/** The database did not get to this write in time; the client should retry shortly. */
export class DatabaseBusyError extends DomainError {
  readonly retryAfterSeconds = 1;
  constructor() {
    super('unavailable', 'The database is busy; retry in a moment.');
    this.name = 'DatabaseBusyError';
  }
}

const RETRYABLE_PG_CODES = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '55P03', // lock_not_available
]);

/** An error a fresh attempt of the same transaction may not hit (lock contention, not bad data). */
export function isRetryableWriteError(error: unknown): boolean {
  const e = error as { name?: string; code?: string; parent?: { code?: string }; original?: { code?: string } } | null;
  if (!e || typeof e !== 'object') return false;
  const code = e.parent?.code ?? e.original?.code ?? e.code;
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') return true;
  if (code && RETRYABLE_PG_CODES.has(code)) return true;
  return e.name === 'SequelizeTimeoutError';
}

/**
 * Errors that mean "the database cannot take this right now" rather than "this request is
 * wrong" or "polygate has a bug": waiting for a pool connection, lock timeouts.
 */
export function isDatabaseBusyError(error: unknown): boolean {
  if (error instanceof DatabaseBusyError) return true;
  const name = (error as { name?: string } | null)?.name;
  return name === 'SequelizeConnectionAcquireTimeoutError' || name === 'SequelizeTimeoutError' || isRetryableWriteError(error);
}

/**
 * Runs `attempt` again after retryable failures, with a short jittered backoff, at most
 * `attempts` times in all; after that the failure becomes a DatabaseBusyError (503), never a
 * raw driver error (500).
 */
export async function withRetries<T>(attempt: () => Promise<T>, attempts = 8): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (error) {
      if (!isRetryableWriteError(error)) throw error;
      if (i >= attempts) throw new DatabaseBusyError();
      const backoff = Math.min(200, 5 * 2 ** i) * (0.5 + Math.random());
      await new Promise((r) => setTimeout(r, backoff));
    }
  }
}
