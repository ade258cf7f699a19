import type { NextFunction, Request, Response } from 'express';
import { PROTOCOLS } from '../core/protocols/table';
import { z } from 'zod';
import { invalid } from '../core/errors';

/**
 * Bad input is refused at the edge with a 4xx in the envelope, before anything parses it
 * further or hands it to SQL: broken percent-encoding, control characters in the path, and
 * control characters in any string field of a procedure's input.
 */

/** C0 controls (NUL included) and DEL. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
/**
 * In free-text notes a tab or a line break is legitimate (an admin pastes a multi-line note
 * from a bot or a spreadsheet) and every consumer — JSON answers, the HTML page (escaped) — holds
 * them; NUL, escape sequences and the other controls are never meant and are refused there too.
 */
// eslint-disable-next-line no-control-regex
const CONTROL_EXCEPT_TEXT_WHITESPACE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;
const FREE_TEXT_FIELDS = new Set(['notes']);
/**
 * Fields whose own rule is stricter (printable ASCII only, so every control character is
 * already refused) and whose refusal sentence the contract fixes: the service answers them.
 */
const OWN_RULE_FIELDS = new Set([...PROTOCOLS.flatMap((p) => (p.api.password ? [p.api.password] : [])), 'new_psk']);

export const MALFORMED_URL_MESSAGE = 'Malformed URL: invalid percent-encoding or control characters in the path.';

/**
 * Express middleware for every listener, mounted first: a path whose percent-encoding does not
 * decode (`/sub/%ff`, `/api/v1/users/%E0%A4%A`) or that decodes to a control character
 * (`/sub/a%00b`) is a 400, never a URIError or a driver error further down.
 */
export function refuseMalformedPaths(req: Request, res: Response, next: NextFunction): void {
  let decoded: string;
  try {
    decoded = decodeURIComponent(req.path);
  } catch {
    res.status(400).json({ success: false, message: MALFORMED_URL_MESSAGE });
    return;
  }
  if (CONTROL.test(decoded)) {
    res.status(400).json({ success: false, message: MALFORMED_URL_MESSAGE });
    return;
  }
  next();
}

/**
 * Throws `invalid` naming the first string field (dotted path, e.g. `nodes.1`) that holds a
 * control character. Iterative with a bounded number of visits, so a deep or huge body cannot
 * exhaust the stack or the CPU here (bodies are already limited to 1 MiB).
 */
export function assertNoControlCharacters(input: unknown): void {
  const stack: Array<{ value: unknown; path: string[] }> = [{ value: input, path: [] }];
  for (let visits = 0; stack.length > 0 && visits < 200_000; visits++) {
    const { value, path } = stack.pop()!;
    if (typeof value === 'string') {
      const last = path[path.length - 1];
      if (path.length === 1 && OWN_RULE_FIELDS.has(last!)) continue;
      const pattern = last !== undefined && FREE_TEXT_FIELDS.has(last) ? CONTROL_EXCEPT_TEXT_WHITESPACE : CONTROL;
      if (pattern.test(value)) {
        const field = path.length ? path.join('.') : 'input';
        throw invalid(
          FREE_TEXT_FIELDS.has(last ?? '')
            ? `Field '${field}' must not contain control characters (tabs and line breaks are allowed).`
            : `Field '${field}' must not contain control characters.`,
        );
      }
    } else if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) stack.push({ value: value[i], path: [...path, String(i)] });
    } else if (value !== null && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) stack.push({ value: v, path: [...path, k] });
    }
  }
}

/**
 * An input object that refuses fields it does not name. A misspelt field used to be dropped in
 * silence (`datalimit` made an unlimited user), so the refusal names each unknown field and,
 * when one is close, the accepted name the client most likely meant.
 */
export function strictInput<S extends z.core.$ZodLooseShape>(shape: S) {
  const accepted = Object.keys(shape);
  return z.strictObject(shape, {
    error: (issue) => (issue.code === 'unrecognized_keys' ? unknownFieldsMessage(issue.keys, accepted) : undefined),
  });
}

/** `Unknown field 'datalimit' (did you mean 'data_limit'?).` — several fields in one sentence. */
export function unknownFieldsMessage(unknown: readonly string[], accepted: readonly string[]): string {
  // A body of thousands of junk keys must not become a megabyte-long sentence.
  const named = unknown.slice(0, 5).map((key) => {
    const guess = closestName(key, accepted);
    return guess ? `'${key}' (did you mean '${guess}'?)` : `'${key}'`;
  });
  const anyGuess = named.some((n) => n.includes('did you mean'));
  const list = accepted.length && !anyGuess ? ` Accepted fields: ${accepted.join(', ')}.` : '';
  const more = unknown.length > 5 ? ` and ${unknown.length - 5} more` : '';
  return `Unknown field${unknown.length > 1 ? 's' : ''} ${named.join(', ')}${more}.${list}`;
}

/**
 * The accepted name a typo most likely meant: case, `_` and `-` are ignored, then the fewest
 * edits (adjacent swaps count as one), within a third of the name's length.
 */
export function closestName(key: string, accepted: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[_-]/g, '');
  const k = norm(key);
  let best: { name: string; distance: number } | undefined;
  for (const name of accepted) {
    const distance = editDistance(k, norm(name));
    if (distance <= Math.max(1, Math.floor(k.length / 3)) && (!best || distance < best.distance)) best = { name, distance };
  }
  return best?.name;
}

/** Optimal string alignment distance (Levenshtein plus adjacent transpositions). */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 8) return Infinity;
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}
