/** `wg show all dump` (wgDump in native/src/parsers_impl.h). Rules: native/fallback.ts. */
import type { RowSink } from './row-sink';
import { counter } from './scan';

export function parseWg(t: RowSink, text: string, prefix: string): boolean {
  const n = text.length;
  const fa = [0, 0, 0, 0, 0, 0, 0, 0, 0];
  const fb = [0, 0, 0, 0, 0, 0, 0, 0, 0];
  let pos = 0;
  while (pos < n) {
    let nl = text.indexOf('\n', pos);
    if (nl < 0) nl = n;
    let e = nl;
    if (e > pos && text.charCodeAt(e - 1) === 13) e--;
    let q = pos;
    pos = nl + 1;
    if (q === e) continue;
    let nf = 0;
    for (;;) {
      let fe = text.indexOf('\t', q);
      if (fe < 0 || fe > e) fe = e;
      if (nf < 9) {
        fa[nf] = q;
        fb[nf] = fe;
      }
      nf++;
      if (fe >= e || nf > 9) break;
      q = fe + 1;
    }
    if (nf === 5) continue;
    if (nf !== 9) {
      t.malformed();
      continue;
    }
    const hs = counter(text, fa[5], fb[5]);
    const rx = counter(text, fa[6], fb[6]);
    const tx = counter(text, fa[7], fb[7]);
    if (fb[0] === fa[0] || fb[1] === fa[1] || hs < 0 || rx < 0 || tx < 0) {
      t.malformed();
      continue;
    }
    if (hs === 0) continue;
    const iface = text.slice(fa[0], fb[0]);
    const pub = text.slice(fa[1], fb[1]);
    const endpoint = text.slice(fa[3], fb[3]);
    t.row(prefix + iface + ':' + pub, pub, true, rx, tx, 0, endpoint === '(none)' ? '' : endpoint);
  }
  return t.pollMalformed() === 0;
}
