/**
 * Integration suites need root, namespaces, daemons or a browser. Where one is missing the
 * suite skips and prints why; under CI (`CI=true`, set by .ci/run's caller) a missing
 * prerequisite is a failure instead, because .ci/run installs everything.
 */
export function requirePrerequisite(ctx: Mocha.Context, ok: boolean, reason: string): void {
  if (ok) return;
  if (process.env.CI === 'true' || process.env.POLYGATE_STRICT_PREREQS === '1') {
    throw new Error(`prerequisite missing in CI: ${reason}`);
  }
  console.log(`      skipped: ${reason}`);
  ctx.skip();
}
