/**
 * Runs async sections one at a time, in call order: the declarative `apply` of a plugin, a
 * CA's openssl database, anything with one writer. A section that throws does not block the
 * next one; its caller gets the error.
 *
 * @example
 * private readonly lock = new SerialLock();
 * apply(state) { return this.lock.run(() => this.applyLocked(state)); }
 */
export class SerialLock {
  private tail: Promise<unknown> = Promise.resolve();
  private depth = 0;

  /** Runs `fn` after every section queued before it has settled. */
  run<T>(fn: () => Promise<T> | T): Promise<T> {
    this.depth++;
    const result = this.tail.then(fn, fn);
    this.tail = result.then(
      () => this.depth--,
      () => this.depth--,
    );
    return result;
  }

  /** Sections queued or running (for tests and diagnostics). */
  get pending(): number {
    return this.depth;
  }
}
