/**
 * Values valid while the database's write generation holds, and for at most `ttlMs` (for what
 * can change without a write). Concurrent misses for one key share one computation.
 */
export class GenerationCache<T> {
  private readonly entries = new Map<string, { generation: number; at: number; value: Promise<T> }>();

  constructor(
    private readonly max: number,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get(key: string, generation: number, compute: () => Promise<T>): Promise<T> {
    const hit = this.entries.get(key);
    const t = this.now();
    if (hit && hit.generation === generation && t - hit.at < this.ttlMs) return hit.value;
    const value = compute();
    if (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { generation, at: t, value });
    // A failure is not remembered: the next request tries again.
    value.catch(() => {
      if (this.entries.get(key)?.value === value) this.entries.delete(key);
    });
    return value;
  }
}
