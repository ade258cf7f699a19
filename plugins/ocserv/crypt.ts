import { createHash, randomBytes } from 'node:crypto';

/**
 * SHA-512-crypt (`$6$`, Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512"), the hash
 * glibc's crypt(3) checks and so ocserv's `plain[passwd=…]` accepts. Node's crypto has SHA-512
 * but not this construction; computing it here keeps passwords off every argv and out of any
 * shell, on the main server and on nodes alike (nothing runs on the host to hash).
 */
const ITOA64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const ROUNDS_DEFAULT = 5000;
/** Byte triplets of the final digest, in the order the format writes them. */
const ORDER: ReadonlyArray<readonly [number, number, number]> = [
  [0, 21, 42], [22, 43, 1], [44, 2, 23], [3, 24, 45], [25, 46, 4], [47, 5, 26], [6, 27, 48],
  [28, 49, 7], [50, 8, 29], [9, 30, 51], [31, 52, 10], [53, 11, 32], [12, 33, 54], [34, 55, 13],
  [56, 14, 35], [15, 36, 57], [37, 58, 16], [59, 17, 38], [18, 39, 60], [40, 61, 19], [62, 20, 41],
];

const sha512 = (...parts: Buffer[]): Buffer => {
  const h = createHash('sha512');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** `n` bytes made of `block` repeated (and cut). */
function repeatTo(block: Buffer, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i += block.length) block.copy(out, i, 0, Math.min(block.length, n - i));
  return out;
}

function b64From24(b2: number, b1: number, b0: number, n: number): string {
  let w = (b2 << 16) | (b1 << 8) | b0;
  let s = '';
  for (let i = 0; i < n; i++) {
    s += ITOA64[w & 0x3f];
    w >>>= 6;
  }
  return s;
}

/** A salt of 16 characters from the crypt alphabet. */
export function randomCryptSalt(): string {
  return [...randomBytes(16)].map((b) => ITOA64[b & 0x3f]).join('');
}

/**
 * `$6$<salt>$<hash>` of `password`. The salt is cut to 16 characters as crypt(3) does.
 *
 * @example
 * sha512Crypt('pw1', 'saltstring123456'); // '$6$saltstring123456$G8Vm5S…'
 */
export function sha512Crypt(password: string, salt: string, rounds = ROUNDS_DEFAULT): string {
  if (!/^[./0-9A-Za-z]{1,}$/.test(salt)) throw new Error('salt must use the crypt alphabet [./0-9A-Za-z]');
  if (!Number.isInteger(rounds) || rounds < 1000 || rounds > 999_999_999) throw new Error('rounds must be 1000..999999999');
  const P = Buffer.from(password, 'utf8');
  const S = Buffer.from(salt.slice(0, 16), 'utf8');
  const B = sha512(P, S, P);
  const a = createHash('sha512');
  a.update(P);
  a.update(S);
  let cnt = P.length;
  for (; cnt > 64; cnt -= 64) a.update(B);
  a.update(B.subarray(0, cnt));
  for (cnt = P.length; cnt > 0; cnt >>= 1) a.update(cnt & 1 ? B : P);
  const A = a.digest();
  const dp = createHash('sha512');
  for (let i = 0; i < P.length; i++) dp.update(P);
  const Pseq = repeatTo(dp.digest(), P.length);
  const ds = createHash('sha512');
  for (let i = 0; i < 16 + A[0]!; i++) ds.update(S);
  const Sseq = repeatTo(ds.digest(), S.length);
  let C = A;
  for (let i = 0; i < rounds; i++) {
    const h = createHash('sha512');
    h.update(i & 1 ? Pseq : C);
    if (i % 3) h.update(Sseq);
    if (i % 7) h.update(Pseq);
    h.update(i & 1 ? C : Pseq);
    C = h.digest();
  }
  let out = '';
  for (const [x, y, z] of ORDER) out += b64From24(C[x]!, C[y]!, C[z]!, 4);
  out += b64From24(0, 0, C[63]!, 2);
  const prefix = rounds === ROUNDS_DEFAULT ? '$6$' : `$6$rounds=${rounds}$`;
  return `${prefix}${S.toString('utf8')}$${out}`;
}

/** The salt and rounds of a `$6$` hash, or null when it is not one. */
export function parseSha512Crypt(hash: string): { salt: string; rounds: number } | null {
  const m = /^\$6\$(?:rounds=(\d{4,9})\$)?([./0-9A-Za-z]{1,16})\$[./0-9A-Za-z]{86}$/.exec(hash);
  if (!m) return null;
  return { salt: m[2]!, rounds: m[1] ? Number(m[1]) : ROUNDS_DEFAULT };
}

/** Whether `hash` (a `$6$` hash) is the hash of `password`. */
export function sha512CryptMatches(password: string, hash: string): boolean {
  const p = parseSha512Crypt(hash);
  if (!p) return false;
  try {
    return sha512Crypt(password, p.salt, p.rounds) === hash;
  } catch {
    return false;
  }
}
