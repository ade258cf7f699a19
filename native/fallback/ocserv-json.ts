/** ocserv's JSON user list (ocservJson in native/src/parsers_impl.h). Rules: native/fallback.ts. */
import { decodeJson, JsonScan, K_ABSENT, K_NUM, K_STR, type JsonVal } from './json-scan';
import type { RowSink } from './row-sink';
import { counter, counterOf } from './scan';

const FIELD_ID = 0;
const FIELD_USER = 1;
const FIELD_REMOTE = 2;
const FIELD_RX = 3;
const FIELD_TX = 4;
const FIELD_SINCE = 5;
const OCSERV_FIELDS: ReadonlyMap<string, number> = new Map([
  ['ID', FIELD_ID],
  ['Username', FIELD_USER],
  ['Remote IP', FIELD_REMOTE],
  ['RX', FIELD_RX],
  ['TX', FIELD_TX],
  ['raw_connected_at', FIELD_SINCE],
]);
export function parseOcserv(t: RowSink, text: string, prefix: string): boolean {
  const j = new JsonScan(text);
  if (!j.ws() || !j.at(91)) return false;
  j.p++;
  if (!j.ws()) return false;
  if (j.at(93)) return t.pollMalformed() === 0;
  const fields: JsonVal[] = [];
  const clear = (): void => {
    for (let f = 0; f < 6; f++) fields[f] = { kind: K_ABSENT, esc: false, a: 0, b: 0 };
  };
  const textOf = (v: JsonVal): string | null => {
    if (v.kind !== K_STR) return null;
    return v.esc ? decodeJson(text, v.a, v.b) : text.slice(v.a, v.b);
  };
  const counterFrom = (v: JsonVal): number => {
    if (v.kind === K_NUM) return counter(text, v.a, v.b);
    if (v.kind !== K_STR) return -1;
    if (!v.esc) return counter(text, v.a, v.b);
    const d = decodeJson(text, v.a, v.b);
    return d === null ? -1 : counterOf(d);
  };
  for (;;) {
    if (!j.ws()) return false;
    if (j.at(123)) {
      j.p++;
      clear();
      if (!j.ws()) return false;
      if (j.at(125)) {
        j.p++;
      } else {
        for (;;) {
          if (!j.ws() || !j.at(34)) return false;
          if (!j.str()) return false;
          let field: number | undefined;
          if (!j.esc) {
            field = OCSERV_FIELDS.get(text.slice(j.a, j.b));
          } else {
            const k = decodeJson(text, j.a, j.b);
            field = k === null ? undefined : OCSERV_FIELDS.get(k);
          }
          if (!j.ws() || !j.at(58)) return false;
          j.p++;
          if (!j.value(2)) return false;
          if (field !== undefined) fields[field] = { kind: j.kind, esc: j.esc, a: j.a, b: j.b };
          if (!j.ws()) return false;
          if (j.at(44)) {
            j.p++;
            continue;
          }
          if (j.at(125)) {
            j.p++;
            break;
          }
          return false;
        }
      }
      const id = fields[FIELD_ID];
      let idText: string | null;
      if (id.kind === K_NUM) {
        idText = text.slice(id.a, id.b);
        if (!/^[0-9]+$/.test(idText)) idText = null;
      } else {
        idText = textOf(id);
        if (idText === '') idText = null;
      }
      const user = idText === null ? null : textOf(fields[FIELD_USER]);
      const rx = user === null ? -1 : counterFrom(fields[FIELD_RX]);
      const tx = rx < 0 ? -1 : counterFrom(fields[FIELD_TX]);
      let since = 0;
      if (tx >= 0 && fields[FIELD_SINCE].kind !== K_ABSENT) since = counterFrom(fields[FIELD_SINCE]);
      let remote: string | null = '';
      if (tx >= 0 && since >= 0 && fields[FIELD_REMOTE].kind === K_STR) remote = textOf(fields[FIELD_REMOTE]);
      if (idText !== null && user !== null && rx >= 0 && tx >= 0 && since >= 0 && remote !== null) {
        t.row(prefix + idText, user, false, rx, tx, since, remote);
      } else {
        t.malformed();
      }
    } else {
      if (!j.value(1)) return false;
      t.malformed();
    }
    if (!j.ws()) return false;
    if (j.at(44)) {
      j.p++;
      continue;
    }
    if (j.at(93)) return t.pollMalformed() === 0;
    return false;
  }
}
