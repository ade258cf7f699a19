/** Prints one benchmark figure in the project's fixed format: `BENCH <name> <value> <unit>`. */
export function bench(name: string, value: number, unit: string): void {
  // Whole numbers (counts) print as such: `load.write_errors 0`, not `0.000`.
  const shown = Number.isInteger(value) ? String(value) : Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(value >= 10 ? 1 : 3);
  process.stdout.write(`BENCH ${name} ${shown} ${unit}\n`);
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Progress goes to stderr so stdout carries only BENCH lines. */
export function progress(message: string): void {
  process.stderr.write(`  … ${message}\n`);
}
