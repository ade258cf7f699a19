import { createHash } from 'node:crypto';
import QRCode from 'qrcode';

/** Rendered codes by content hash: a bot or a phone reloading the page pays for each code once. */
const cache = new Map<string, string>();
const CACHE_MAX = 2000;

/**
 * An inline SVG QR code of `text` (node-qrcode; no script, no external resource, so the page's
 * CSP holds). Error correction M: a WireGuard config (about 300 bytes) stays scannable from a
 * phone screen.
 */
export async function qrSvg(text: string): Promise<string> {
  const key = createHash('sha256').update(text).digest('hex');
  const hit = cache.get(key);
  if (hit) return hit;
  const svg = await QRCode.toString(text, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
  cache.set(key, svg);
  return svg;
}
