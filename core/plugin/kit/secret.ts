import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Constant-time comparison of two secrets of any length: both are hashed first, so neither
 * the content nor the length of `expected` leaks through timing.
 *
 * @example
 * if (!sameSecret(env.password, user.password)) return 'bad credentials';
 */
export function sameSecret(given: string, expected: string): boolean {
  if (typeof given !== 'string' || typeof expected !== 'string') return false;
  const h = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(h(given), h(expected));
}
