/**
 * Counter scanning shared by the fallback's status parsers (native/src/common.h parseCounter).
 * Rules: native/fallback.ts.
 */
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** Decimal counter in text[a, b); -1 when malformed. */
export function counter(text: string, a: number, b: number): number {
  if (a >= b) return -1;
  let v = 0;
  for (let i = a; i < b; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
    if (v > MAX_SAFE) return -1;
  }
  return v;
}

export function counterOf(s: string): number {
  return counter(s, 0, s.length);
}
