/**
 * The JSON scanner behind the ocserv parser (native/src/parsers_impl.h JsonScan, parsers.cc
 * decodeJsonString): strings are scanned, and only decoded when used. Rules: native/fallback.ts.
 */
function hexAt(s: string, i: number): number {
  let v = 0;
  for (let k = 0; k < 4; k++) {
    const c = s.charCodeAt(i + k);
    let d: number;
    if (c >= 48 && c <= 57) d = c - 48;
    else if (c >= 97 && c <= 102) d = c - 87;
    else if (c >= 65 && c <= 70) d = c - 55;
    else return -1;
    v = (v << 4) | d;
  }
  return v;
}

/** JSON string body text[a, b) → string; null on an invalid escape. */
export function decodeJson(s: string, a: number, b: number): string | null {
  let out = '';
  let i = a;
  while (i < b) {
    const bs = s.indexOf('\\', i);
    if (bs < 0 || bs >= b) {
      out += s.slice(i, b);
      break;
    }
    out += s.slice(i, bs);
    if (bs + 1 >= b) return null;
    const c = s.charCodeAt(bs + 1);
    i = bs + 2;
    switch (c) {
      case 34: out += '"'; break;
      case 92: out += '\\'; break;
      case 47: out += '/'; break;
      case 98: out += '\b'; break;
      case 102: out += '\f'; break;
      case 110: out += '\n'; break;
      case 114: out += '\r'; break;
      case 116: out += '\t'; break;
      case 117: {
        if (b - i < 4) return null;
        let cp = hexAt(s, i);
        if (cp < 0) return null;
        i += 4;
        if (cp >= 0xd800 && cp <= 0xdbff && b - i >= 6 && s.charCodeAt(i) === 92 && s.charCodeAt(i + 1) === 117) {
          const lo = hexAt(s, i + 2);
          if (lo >= 0xdc00 && lo <= 0xdfff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            i += 6;
          }
        }
        out += cp >= 0xd800 && cp <= 0xdfff ? '\ufffd' : String.fromCodePoint(cp);
        break;
      }
      default:
        return null;
    }
  }
  return out;
}

export const K_ABSENT = 0;
export const K_STR = 1;
export const K_NUM = 2;
export const K_LIT = 3;
export const K_COMPOSITE = 4;

export class JsonScan {
  p = 0;
  /** Next backslash at or after p (text.length when none): keeps string scanning linear. */
  private bs = -1;
  // last value read
  kind = K_ABSENT;
  esc = false;
  a = 0;
  b = 0;

  constructor(private readonly s: string) {}

  ws(): boolean {
    const s = this.s;
    const n = s.length;
    let p = this.p;
    while (p < n) {
      const c = s.charCodeAt(p);
      if (c !== 32 && c !== 10 && c !== 13 && c !== 9) break;
      p++;
    }
    this.p = p;
    return p < n;
  }

  at(c: number): boolean {
    return this.p < this.s.length && this.s.charCodeAt(this.p) === c;
  }

  /** At '"': sets a/b to the body and esc. */
  str(): boolean {
    const s = this.s;
    const n = s.length;
    let p = ++this.p;
    const start = p;
    this.esc = false;
    for (;;) {
      const q = s.indexOf('"', p);
      if (this.bs < p) {
        const x = s.indexOf('\\', p);
        this.bs = x < 0 ? n : x;
      }
      if (this.bs < n && (q < 0 || this.bs < q)) {
        this.esc = true;
        if (n - this.bs < 2) return false;
        p = this.bs + 2;
        continue;
      }
      if (q < 0) return false;
      this.a = start;
      this.b = q;
      this.p = q + 1;
      return true;
    }
  }

  value(depth: number): boolean {
    if (!this.ws()) return false;
    const s = this.s;
    const c = s.charCodeAt(this.p);
    if (c === 34) {
      this.kind = K_STR;
      return this.str();
    }
    if (c === 45 || (c >= 48 && c <= 57)) {
      const start = this.p;
      let p = this.p;
      const n = s.length;
      while (p < n) {
        const d = s.charCodeAt(p);
        if ((d >= 48 && d <= 57) || d === 45 || d === 43 || d === 46 || d === 101 || d === 69) p++;
        else break;
      }
      this.p = p;
      this.kind = K_NUM;
      this.esc = false;
      this.a = start;
      this.b = p;
      return true;
    }
    if (c === 123 || c === 91) {
      const ok = this.composite(depth); // (inner values overwrite kind/a/b)
      this.kind = K_COMPOSITE;
      return ok;
    }
    this.kind = K_LIT;
    for (const lit of ['true', 'false', 'null']) {
      if (s.startsWith(lit, this.p)) {
        this.p += lit.length;
        return true;
      }
    }
    return false;
  }

  composite(depth: number): boolean {
    if (depth >= 64) return false;
    const s = this.s;
    const open = s.charCodeAt(this.p++);
    const close = open === 123 ? 125 : 93;
    if (!this.ws()) return false;
    if (s.charCodeAt(this.p) === close) {
      this.p++;
      return true;
    }
    for (;;) {
      if (open === 123) {
        if (!this.ws() || !this.at(34)) return false;
        if (!this.str()) return false;
        if (!this.ws() || !this.at(58)) return false;
        this.p++;
      }
      if (!this.value(depth + 1)) return false;
      if (!this.ws()) return false;
      const c = s.charCodeAt(this.p);
      if (c === 44) {
        this.p++;
        continue;
      }
      if (c === close) {
        this.p++;
        return true;
      }
      return false;
    }
  }
}

export interface JsonVal {
  kind: number;
  esc: boolean;
  a: number;
  b: number;
}
