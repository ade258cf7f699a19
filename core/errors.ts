/**
 * The one error family of polygate. Domain code throws these; `api/errors.ts` maps them to
 * the REST envelope and tRPC codes in exactly one place. Nothing here knows about HTTP.
 */
export type DomainErrorKind =
  | 'invalid'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'locked'
  | 'unavailable'
  | 'payload_too_large'
  | 'internal';

export class DomainError extends Error {
  constructor(
    readonly kind: DomainErrorKind,
    message: string,
    /** Extra keys some contract answers carry beside `message` (e.g. node DELETE 404 keeps `success: true`). */
    readonly extra?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

export const invalid = (message: string) => new DomainError('invalid', message);
export const unauthorized = (message: string) => new DomainError('unauthorized', message);
export const forbidden = (message: string) => new DomainError('forbidden', message);
export const notFound = (message: string, extra?: Record<string, unknown>) => new DomainError('not_found', message, extra);
export const conflict = (message: string) => new DomainError('conflict', message);
export const locked = (message: string) => new DomainError('locked', message);
export const unavailable = (message: string) => new DomainError('unavailable', message);

export const isDomainError = (e: unknown): e is DomainError => e instanceof DomainError;
