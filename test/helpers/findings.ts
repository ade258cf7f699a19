/**
 * Runs every check of a list and fails once at the end with all that failed, so one report
 * names each broken property of a protocol (same pid? dropped? counted once?) instead of only
 * the first.
 */
export class Findings {
  private readonly failed: string[] = [];

  async check(what: string, body: () => unknown): Promise<void> {
    try {
      await body();
    } catch (err) {
      this.failed.push(`${what}: ${(err as Error).message}`);
    }
  }

  /** Deep equality by JSON, with both values in full in the report (chai shortens long ones). */
  same(what: string, actual: unknown, expected: unknown): void {
    const a = JSON.stringify(actual);
    const e = JSON.stringify(expected);
    if (a !== e) this.failed.push(`${what}: ${a} (expected ${e})`);
  }

  get count(): number {
    return this.failed.length;
  }

  assertNone(): void {
    if (this.failed.length > 0) throw new Error(`${this.failed.length} check(s) failed:\n- ${this.failed.join('\n- ')}`);
  }
}
