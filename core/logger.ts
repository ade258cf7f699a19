import pino from 'pino';

/** Structured logs for the whole daemon. `POLYGATE_LOG_LEVEL=silent` quiets tests. */
export const logger = pino({
  level: process.env.POLYGATE_LOG_LEVEL ?? (process.env.NODE_ENV === 'test' ? 'silent' : 'info'),
  base: { app: 'polygate' },
  redact: { paths: ['*.password', '*.ssh_password', '*.api_key', '*.apiKey', '*.psk'], censor: '[redacted]' },
});

export type Logger = pino.Logger;
