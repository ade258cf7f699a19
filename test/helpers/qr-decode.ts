import jsQR from 'jsqr';

/**
 * Decodes a QR code from node-qrcode's SVG by drawing it the way a renderer would: the
 * `stroke` path is a run of 1-module-high horizontal lines (`M x y.5 h n m dx dy …`), filled
 * into a bitmap scaled ×4 and read with jsQR, a decoder independent of the encoder.
 */
export function decodeQrSvg(svg: string): string | null {
  const size = Number(/viewBox="0 0 (\d+) \d+"/.exec(svg)?.[1]);
  const d = /<path stroke="#000000" d="([^"]+)"/.exec(svg)?.[1];
  if (!size || !d) return null;
  const dark = new Uint8Array(size * size);
  let x = 0;
  let y = 0;
  for (const [, cmd, a, b] of d.matchAll(/([MmHhVv])\s*(-?[\d.]+)(?:\s+(-?[\d.]+))?/g)) {
    const n = Number(a);
    if (cmd === 'M') [x, y] = [n, Number(b)];
    else if (cmd === 'm') [x, y] = [x + n, y + Number(b)];
    else if (cmd === 'h') {
      for (let i = 0; i < n; i++) dark[Math.floor(y) * size + x + i] = 1;
      x += n;
    }
  }
  const scale = 4;
  const w = size * scale;
  const pixels = new Uint8ClampedArray(w * w * 4);
  for (let py = 0; py < w; py++) {
    for (let px = 0; px < w; px++) {
      const v = dark[Math.floor(py / scale) * size + Math.floor(px / scale)] ? 0 : 255;
      pixels.set([v, v, v, 255], (py * w + px) * 4);
    }
  }
  return jsQR(pixels, w, w)?.data ?? null;
}
