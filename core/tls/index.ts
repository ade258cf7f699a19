/**
 * HTTPS for the panel from `POLYGATE_TLS_CERT` / `POLYGATE_TLS_KEY`. Both files are re-read
 * when either changes (certbot/acme.sh renewals, a replaced pair), and the server's context is
 * swapped with `setSecureContext`: new handshakes get the new certificate, open connections
 * keep theirs, nothing restarts. Changes are found by polling the files' identity (inode, size,
 * mtime, following symlinks as certbot's `live/` ones): `fs.watch` misses renames onto a
 * watched path and symlink retargets.
 */
import { readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type { Logger } from '../logger';

export interface TlsFiles {
  cert: string;
  key: string;
}

export class TlsConfigError extends Error {}

const DEFAULT_POLL_MS = 2000;

function readPair(files: TlsFiles): SecureContextOptions {
  let cert: Buffer;
  let key: Buffer;
  try {
    cert = readFileSync(files.cert);
  } catch (e) {
    throw new TlsConfigError(`POLYGATE_TLS_CERT: cannot read ${files.cert} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); point it at a readable PEM certificate`);
  }
  try {
    key = readFileSync(files.key);
  } catch (e) {
    throw new TlsConfigError(`POLYGATE_TLS_KEY: cannot read ${files.key} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); point it at the certificate's PEM private key, readable by the daemon's user`);
  }
  const options = { cert, key };
  try {
    createSecureContext(options);
  } catch (e) {
    throw new TlsConfigError(`POLYGATE_TLS_CERT / POLYGATE_TLS_KEY: ${files.cert} and ${files.key} are not a usable certificate and key (${(e as Error).message})`);
  }
  return options;
}

function signature(files: TlsFiles): string {
  return [files.cert, files.key]
    .map((f) => {
      try {
        const st = statSync(f);
        return `${st.ino}:${st.size}:${st.mtimeMs}`;
      } catch {
        return 'missing';
      }
    })
    .join('|');
}

export interface ReloadingHttpsServer {
  server: Server;
  /** One more HTTPS server with the same certificate, following it on every reload (reseller ports). */
  serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Server;
  /** Re-reads the files now if they changed (the poll calls it). */
  check(): boolean;
  stop(): void;
}

/**
 * An HTTPS server whose certificate follows the files. A pair that fails to load (the key not
 * yet replaced beside a new certificate) keeps the previous one in service and is retried at
 * every change; the failure is logged once per state of the files.
 */
export function createReloadingHttpsServer(
  files: TlsFiles,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  logger: Logger,
  options: { pollMs?: number } = {},
): ReloadingHttpsServer {
  const log = logger.child({ component: 'tls' });
  let seen = signature(files);
  let pair = readPair(files);
  const server = createServer(pair, handler);
  const servers = new Set<Server>([server]);
  const serve = (h: (req: IncomingMessage, res: ServerResponse) => void): Server => {
    const extra = createServer(pair, h);
    servers.add(extra);
    extra.on('close', () => servers.delete(extra));
    return extra;
  };
  const check = (): boolean => {
    const now = signature(files);
    if (now === seen) return false;
    seen = now;
    try {
      pair = readPair(files);
      for (const s of servers) s.setSecureContext(pair);
      log.info({ cert: files.cert }, 'TLS certificate reloaded');
      return true;
    } catch (err) {
      log.warn({ reason: (err as Error).message }, 'TLS files changed but cannot be loaded; still serving the previous certificate');
      return false;
    }
  };
  const timer = setInterval(check, options.pollMs ?? DEFAULT_POLL_MS);
  timer.unref();
  server.on('close', () => clearInterval(timer));
  return { server, serve, check, stop: () => clearInterval(timer) };
}
