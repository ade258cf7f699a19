import pino from 'pino';
import { PROTOCOLS } from './protocols/table';

/**
 * Keys whose values are secrets wherever they appear in a log object (top level and one level
 * down, e.g. `{ user: { openvpn_password } }`): VPN passwords, WireGuard private keys,
 * subscription tokens, API keys and their hashes, the IPsec PSK, SSH passwords.
 */
const SECRET_KEYS = [
  'password',
  'password_hash',
  // Every protocol's password field and client-only material column (the protocol table's).
  ...PROTOCOLS.flatMap((p) => [...(p.api.password ? [p.api.password] : []), ...Object.values(p.material.clientOnly)]),
  'ssh_password',
  'privateKey',
  'private_key',
  'token',
  'subscription_token',
  'api_key',
  'apiKey',
  'key_hash',
  'psk',
  'ipsec_psk',
  'secret',
];

/**
 * Error properties worth logging. Everything else an error carries is dropped: Sequelize puts
 * the statement (`sql`), its `parameters`/`bind`, the offending `fields`/`value`s, whole model
 * `instance`s and PostgreSQL's `detail` (`Key (token)=(…) already exists`) on its errors, and a
 * failed INSERT of a user holds its generated passwords and WireGuard private key.
 */
const SAFE_ERROR_KEYS = new Set(['type', 'name', 'message', 'stack', 'code', 'errno', 'syscall', 'kind', 'status', 'statusCode', 'exitCode', 'signal', 'reason', 'where']);
const MAX_ERROR_DEPTH = 4;

/** pino's error serializer, then only the safe keys; `cause`/`parent`/`original` likewise. */
export function serializeError(err: unknown, depth = 0): unknown {
  if (!(err instanceof Error) && (typeof err !== 'object' || err === null)) return err;
  const full = pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(full)) {
    if (SAFE_ERROR_KEYS.has(key) && (typeof value !== 'object' || value === null)) out[key] = value;
  }
  if (depth < MAX_ERROR_DEPTH) {
    const e = err as { cause?: unknown; parent?: unknown; original?: unknown };
    // Sequelize's `parent` and `original` are the same driver error: log it once.
    const inner = e.cause ?? e.parent ?? e.original;
    if (inner && inner !== err) out.cause = serializeError(inner, depth + 1);
  }
  return out;
}

type LineTap = (line: string) => void;
const taps = new Set<LineTap>();

/**
 * Where log lines go: stdout, and to any tap a test installed with {@link captureLogs} (taps
 * see exactly the bytes that would be written, after redaction).
 */
const destination = {
  write(line: string): void {
    if (taps.size === 0 || !captureMutesStdout) process.stdout.write(line);
    for (const tap of taps) tap(line);
  },
};
let captureMutesStdout = false;

/** Builds a logger with polygate's redaction and error serializer (the daemon uses `logger`). */
export function createLogger(level: string, stream: { write(line: string): void } = destination): pino.Logger {
  return pino(
    {
      level,
      base: { app: 'polygate' },
      serializers: { err: serializeError, error: serializeError },
      redact: { paths: SECRET_KEYS.flatMap((k) => [k, `*.${k}`]), censor: '[redacted]' },
    },
    stream,
  );
}

/** Structured logs for the whole daemon. `POLYGATE_LOG_LEVEL=silent` quiets tests. */
export const logger = createLogger(process.env.POLYGATE_LOG_LEVEL ?? (process.env.NODE_ENV === 'test' ? 'silent' : 'info'));

/**
 * For tests: records every line the root logger (and children created while capturing) writes,
 * at `trace` level, without printing them. Call `stop()` to restore the level.
 */
export function captureLogs(): { lines: string[]; text(): string; stop(): void } {
  const lines: string[] = [];
  const tap: LineTap = (line) => lines.push(line);
  const previousLevel = logger.level;
  taps.add(tap);
  captureMutesStdout = true;
  logger.level = 'trace';
  return {
    lines,
    text: () => lines.join(''),
    stop: () => {
      taps.delete(tap);
      captureMutesStdout = taps.size > 0;
      logger.level = previousLevel;
    },
  };
}

export type Logger = pino.Logger;
