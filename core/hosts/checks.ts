import path from 'node:path';
import { invalid } from '../errors';

/*
 * Argument checks shared by every Host implementation, so LocalHost and SshHost refuse the
 * same inputs with the same messages (DomainError kind `invalid`).
 */

const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Shared argument checks for every Host implementation. */
export function checkArgv(argv: readonly string[]): void {
  if (!Array.isArray(argv) || argv.length === 0) throw invalid('argv must contain at least the program');
  for (const [i, a] of argv.entries()) {
    if (typeof a !== 'string') throw invalid(`argv[${i}] must be a string`);
    if (a.includes('\0')) throw invalid(`argv[${i}] contains a NUL byte`);
  }
  if (argv[0] === '') throw invalid('argv[0] (the program) must not be empty');
}

export function checkPath(p: string): void {
  if (typeof p !== 'string' || p === '') throw invalid('path must be a non-empty string');
  if (p.includes('\0')) throw invalid('path contains a NUL byte');
}

export function checkRemovable(p: string): void {
  checkPath(p);
  if (path.posix.normalize(p).replace(/\/+$/, '') === '') throw invalid('refusing to remove /');
}

export function checkMode(mode: number): void {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw invalid(`file mode must be an integer 0..0o7777 (got ${mode})`);
}

export function checkTcpTarget(t: { host: string; port: number }): void {
  if (typeof t.host !== 'string' || t.host === '' || /[\s\0]/.test(t.host)) throw invalid(`stream host ${JSON.stringify(t.host)} is not valid`);
  if (!Number.isInteger(t.port) || t.port < 1 || t.port > 65535) throw invalid(`stream port must be an integer 1..65535 (got ${t.port})`);
}

export function checkEnv(env: Record<string, string>): void {
  for (const [key, value] of Object.entries(env)) {
    if (!ENV_NAME_RE.test(key)) throw invalid(`environment variable name ${JSON.stringify(key)} is not allowed`);
    if (typeof value !== 'string' || value.includes('\0')) throw invalid(`environment variable ${key} must be a string without NUL bytes`);
  }
}
