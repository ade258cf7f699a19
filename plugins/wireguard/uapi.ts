import { unavailable, type Host } from '../../core';
import { assertWgKey, hostAddress, type PeerEntry } from './render';

/*
 * wireguard-go's configuration protocol (the cross-platform UAPI: `set=1` / `get=1` over the
 * unix socket /var/run/wireguard/<if>.sock). Talking to it through `host.openStream` changes one
 * peer without starting a process, so a change costs what it changes even on an interface with
 * thousands of peers. The kernel module has no such socket: there the plugin uses `wg`.
 */

const hex = (base64Key: string, what: string) => Buffer.from(assertWgKey(base64Key, what), 'base64').toString('hex');

/** `set=1` body adding (or updating) peers: key, preshared key, exactly one allowed address. */
export function uapiAddPeers(peers: readonly PeerEntry[]): string {
  let body = 'set=1\n';
  for (const p of peers) {
    body += `public_key=${hex(p.publicKey, 'peer public key')}\npreshared_key=${hex(p.presharedKey, 'preshared key')}\nreplace_allowed_ips=true\nallowed_ip=${hostAddress(p.address)}/32\n`;
  }
  return `${body}\n`;
}

/** `set=1` body removing peers. */
export function uapiRemovePeers(publicKeys: readonly string[]): string {
  let body = 'set=1\n';
  for (const k of publicKeys) body += `public_key=${hex(k, 'peer public key')}\nremove=true\n`;
  return `${body}\n`;
}

/** Sends one request and resolves with the answer once it ends (`errno=N` + blank line); rejects unless errno is 0. */
export async function uapiRequest(host: Host, socketPath: string, body: string, timeoutMs = 30_000): Promise<string> {
  const stream = await host.openStream({ path: socketPath });
  return new Promise<string>((resolve, reject) => {
    let answer = '';
    const done = (err: Error | null) => {
      clearTimeout(timer);
      stream.destroy();
      if (err) reject(err);
      else resolve(answer);
    };
    const timer = setTimeout(() => done(unavailable(`no answer from ${socketPath} within ${timeoutMs} ms`)), timeoutMs);
    stream.on('data', (chunk: Buffer) => {
      answer += chunk.toString('utf8');
      const m = /(?:^|\n)errno=(-?\d+)\n\n$/.exec(answer);
      if (!m) return;
      done(m[1] === '0' ? null : unavailable(`wireguard-go at ${socketPath} refused the change (errno ${m[1]})`));
    });
    stream.on('error', (e: Error) => done(unavailable(`${socketPath}: ${e.message}`)));
    stream.on('close', () => done(unavailable(`${socketPath} closed before answering`)));
    stream.write(body);
  });
}
