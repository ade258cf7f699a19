/**
 * OpenVPN `status 3` (openVpnStatus3 in native/src/parsers_impl.h, the header roles in
 * parsers.cc parseOvpnHeader). Rules: native/fallback.ts.
 */
import type { RowSink } from './row-sink';
import { counter } from './scan';

const OVPN_ROLES: ReadonlyMap<string, number> = new Map([
  ['Common Name', 1],
  ['Real Address', 2],
  ['Bytes Received', 3],
  ['Bytes Sent', 4],
  ['Connected Since (time_t)', 5],
  ['Username', 6],
  ['Client ID', 7],
  ['Virtual Address', 8],
  ['Virtual IPv6 Address', 9],
]);
const R_CN = 1;
const R_REAL = 2;
const R_RX = 3;
const R_TX = 4;
const R_SINCE = 5;
const R_USER = 6;
const R_CID = 7;
const R_VADDR = 8;
const R_VADDR6 = 9;
const R_COUNT = 10;

export function parseOpenVpn(t: RowSink, text: string, prefix: string): boolean {
  const n = text.length;
  let valid = false;
  let roleAt: number[] = [];
  let maxIdx = 0;
  const idx = new Array<number>(R_COUNT).fill(-1);
  let endSeen = false;
  const fa = new Array<number>(R_COUNT).fill(0);
  const fb = new Array<number>(R_COUNT).fill(0);
  let pos = 0;
  while (pos < n) {
    let nl = text.indexOf('\n', pos);
    if (nl < 0) nl = n;
    let e = nl;
    if (e > pos && text.charCodeAt(e - 1) === 13) e--;
    const len = e - pos;
    const s = pos;
    pos = nl + 1;
    if (len >= 11 && text.startsWith('CLIENT_LIST', s) && (len === 11 || text.charCodeAt(s + 11) === 9)) {
      if (!valid || len === 11) {
        t.malformed();
        continue;
      }
      for (let r = 1; r < R_COUNT; r++) fa[r] = fb[r] = 0;
      let q = s + 12;
      let col = 1;
      let bad = false;
      for (;;) {
        let fe = text.indexOf('\t', q);
        if (fe < 0 || fe > e) fe = e;
        const r = roleAt[col];
        if (r !== 0) {
          fa[r] = q;
          fb[r] = fe;
        }
        if (col === maxIdx) break;
        if (fe >= e) {
          bad = true;
          break;
        }
        q = fe + 1;
        col++;
      }
      if (bad) {
        t.malformed();
        continue;
      }
      if ((idx[R_VADDR] >= 0 || idx[R_VADDR6] >= 0) && fb[R_VADDR] === fa[R_VADDR] && fb[R_VADDR6] === fa[R_VADDR6]) {
        continue; // no virtual address yet: still authenticating (or being refused), not a session
      }
      const rx = counter(text, fa[R_RX], fb[R_RX]);
      const tx = counter(text, fa[R_TX], fb[R_TX]);
      const since = idx[R_SINCE] >= 0 ? counter(text, fa[R_SINCE], fb[R_SINCE]) : 0;
      if (rx < 0 || tx < 0 || since < 0) {
        t.malformed();
        continue;
      }
      let user = text.slice(fa[R_CN], fb[R_CN]);
      if (idx[R_USER] >= 0 && fb[R_USER] > fa[R_USER]) {
        const u = text.slice(fa[R_USER], fb[R_USER]);
        if (u !== 'UNDEF') user = u;
      }
      const remote = idx[R_REAL] >= 0 ? text.slice(fa[R_REAL], fb[R_REAL]) : '';
      if (idx[R_CID] >= 0) {
        if (fb[R_CID] === fa[R_CID]) {
          t.malformed();
          continue;
        }
        t.row(prefix + text.slice(fa[R_CID], fb[R_CID]), user, false, rx, tx, since, remote);
      } else {
        t.row(prefix + text.slice(fa[R_CN], fb[R_CN]) + ':' + remote, user, false, rx, tx, since, remote);
      }
      continue;
    }
    if (len >= 18 && text.startsWith('HEADER\tCLIENT_LIST', s) && (len === 18 || text.charCodeAt(s + 18) === 9)) {
      idx.fill(-1);
      const names = len === 18 ? [''] : text.slice(s + 19, e).split('\t');
      for (let c = 0; c < names.length; c++) {
        const role = OVPN_ROLES.get(names[c]);
        if (role !== undefined && idx[role] < 0) idx[role] = c + 1;
      }
      valid = idx[R_CN] >= 0 && idx[R_RX] >= 0 && idx[R_TX] >= 0;
      maxIdx = Math.max(0, ...idx.slice(1));
      roleAt = new Array<number>(maxIdx + 1).fill(0);
      for (let r = 1; r < R_COUNT; r++) if (idx[r] >= 0) roleAt[idx[r]] = r;
      continue;
    }
    if (len === 3 && text.startsWith('END', s)) endSeen = true;
  }
  return endSeen && valid && t.pollMalformed() === 0;
}
