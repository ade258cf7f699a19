import { TRPCError } from '@trpc/server';
import type { TRPC_ERROR_CODE_KEY } from '@trpc/server/rpc';
import { ZodError, type z } from 'zod';
import { DatabaseBusyError, isDatabaseBusyError } from '../core/db';
import { DomainError, type DomainErrorKind } from '../core/errors';
import { logger } from '../core/logger';
import { unknownFieldsMessage } from './input-guard';

/**
 * The single place where errors become answers: DomainError kinds → HTTP statuses and tRPC
 * codes, zod failures → a sentence naming the field, anything else → a logged 500 with the
 * contract's fixed message and no details.
 */
const httpStatus: Record<DomainErrorKind, number> = {
  invalid: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  locked: 423,
  unavailable: 503,
  internal: 500,
};

const trpcCode: Record<DomainErrorKind, TRPC_ERROR_CODE_KEY> = {
  invalid: 'BAD_REQUEST',
  unauthorized: 'UNAUTHORIZED',
  forbidden: 'FORBIDDEN',
  not_found: 'NOT_FOUND',
  conflict: 'CONFLICT',
  payload_too_large: 'PAYLOAD_TOO_LARGE',
  locked: 'CONFLICT',
  unavailable: 'SERVICE_UNAVAILABLE',
  internal: 'INTERNAL_SERVER_ERROR',
};

export const INTERNAL_ERROR_MESSAGE = 'An internal error occurred.';

/** A zod failure as one human sentence that names the field. */
export function describeZodError(error: ZodError | z.core.$ZodError): string {
  // A misspelt field explains the other complaints (a required field "missing"), so it goes first.
  const issue = error.issues.find((i) => i.code === 'unrecognized_keys') ?? error.issues[0];
  if (!issue) return 'Invalid request.';
  const field = issue.path.length ? issue.path.map(String).join('.') : 'request body';
  // zod's own messages never name a field; one that does was written for it (the schema's
  // bounds carry the same sentences the services use), so it is the answer as it stands.
  const top = issue.path[0];
  if (typeof top === 'string' && new RegExp(`(^|\\W)${top.replace(/\W/g, '\\$&')}(\\W|$)`).test(issue.message)) return issue.message;
  const input = (issue as { input?: unknown }).input;
  switch (issue.code) {
    case 'invalid_type': {
      // zod 4 leaves `input` out of issues unless asked (reportInput); its message still says what arrived.
      const received = 'input' in issue ? (input === undefined ? 'undefined' : describeValue(input)) : receivedFromMessage(issue.message);
      if (received === 'undefined') return `Field '${field}' is required.`;
      return `Field '${field}' must be ${article(issue.expected === 'int' ? 'integer' : issue.expected)}, not ${received}.`;
    }
    case 'unrecognized_keys':
      return /^Unknown field/.test(issue.message) ? issue.message : unknownFieldsMessage(issue.keys, []);
    case 'invalid_value':
      return `Field '${field}' must be one of: ${issue.values.map((v) => String(v)).join(', ')}.`;
    default:
      return `Field '${field}' is invalid: ${lowerFirst(issue.message)}.`.replace(/\.\.$/, '.');
  }
}

/** `Invalid input: expected number, received string` → `a string` (`null`, `undefined` as is). */
function receivedFromMessage(message: string): string {
  const received = /received (\w+)/.exec(message)?.[1] ?? 'undefined';
  if (received === 'NaN') return 'a non-numeric value';
  return received === 'null' || received === 'undefined' ? received : article(received);
}

const article = (t: string) => (/^[aeiou]/.test(t) ? `an ${t}` : `a ${t}`);
const lowerFirst = (s: string) => s.charAt(0).toLowerCase() + s.slice(1);
function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return article(typeof v);
}

const hasIssues = (e: unknown): boolean => Array.isArray((e as { issues?: unknown })?.issues);

function unwrapCause(error: unknown): unknown {
  if (error instanceof TRPCError && error.cause) return error.cause;
  return error;
}

export interface RestErrorAnswer {
  status: number;
  body: { success: boolean; message: string } & Record<string, unknown>;
  /** `Retry-After` on a 503 the client should simply repeat. */
  headers?: Record<string, string>;
}

/** Sends an answer from {@link toRestError} (status, headers, envelope). */
export function sendRestError(res: { status(code: number): { json(body: unknown): unknown }; setHeader(name: string, value: string): unknown }, answer: RestErrorAnswer): void {
  for (const [name, value] of Object.entries(answer.headers ?? {})) res.setHeader(name, value);
  res.status(answer.status).json(answer.body);
}

/** A database that cannot keep up is a 503 to retry, not a bug (500); raw driver errors included. */
function busyAnswer(error: unknown): RestErrorAnswer | undefined {
  if (!isDatabaseBusyError(error)) return undefined;
  const busy = error instanceof DatabaseBusyError ? error : new DatabaseBusyError();
  return { status: 503, body: { success: false, message: busy.message }, headers: { 'Retry-After': String(busy.retryAfterSeconds) } };
}

/** Maps anything thrown by a procedure (or the HTTP layer) to the REST envelope. */
export function toRestError(error: unknown, where?: string): RestErrorAnswer {
  const cause = unwrapCause(error);
  const busy = busyAnswer(cause);
  if (busy) return busy;
  if (cause instanceof DomainError) {
    return { status: httpStatus[cause.kind], body: { success: false, message: cause.message, ...(cause.extra ?? {}) } };
  }
  // Input validation (BAD_REQUEST); an output validation failure is our bug and stays a 500.
  if (error instanceof TRPCError && error.code === 'BAD_REQUEST' && hasIssues(cause)) {
    return { status: 400, body: { success: false, message: describeZodError(cause as ZodError) } };
  }
  if (!(error instanceof TRPCError) && cause instanceof ZodError) {
    return { status: 400, body: { success: false, message: describeZodError(cause) } };
  }
  if (error instanceof TRPCError && error.code !== 'INTERNAL_SERVER_ERROR') {
    const status = error.code === 'NOT_FOUND' ? 404 : error.code === 'BAD_REQUEST' ? 400 : 500;
    if (status !== 500) return { status, body: { success: false, message: error.message } };
  }
  logger.error({ err: cause, where }, 'unexpected error');
  return { status: 500, body: { success: false, message: INTERNAL_ERROR_MESSAGE } };
}

/** The same mapping for the tRPC transport: a TRPCError carrying the domain message. */
export function toTrpcError(error: unknown): TRPCError {
  const cause = unwrapCause(error);
  if (isDatabaseBusyError(cause)) {
    const busy = cause instanceof DatabaseBusyError ? cause : new DatabaseBusyError();
    return new TRPCError({ code: 'SERVICE_UNAVAILABLE', message: busy.message, cause: busy });
  }
  if (cause instanceof DomainError) {
    return new TRPCError({ code: trpcCode[cause.kind], message: cause.message, cause });
  }
  // tRPC's own message for a failed input parse is the issues as a JSON array: give tRPC
  // clients the sentence REST answers.
  if (error instanceof TRPCError && error.code === 'BAD_REQUEST' && hasIssues(cause)) {
    return new TRPCError({ code: 'BAD_REQUEST', message: describeZodError(cause as ZodError), cause });
  }
  if (error instanceof TRPCError) return error;
  logger.error({ err: cause }, 'unexpected error');
  return new TRPCError({ code: 'INTERNAL_SERVER_ERROR', message: INTERNAL_ERROR_MESSAGE });
}

export const domainKindOf = (error: unknown): DomainErrorKind | undefined => {
  const cause = unwrapCause(error);
  return cause instanceof DomainError ? cause.kind : undefined;
};
