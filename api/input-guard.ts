import type { NextFunction, Request, Response } from 'express';
import { PROTOCOLS } from '../core/protocols/table';
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
