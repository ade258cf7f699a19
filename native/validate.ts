/**
 * Argument checks for the tracker. Everything that reaches C++ went through here, so the addon
 * never sees a wrong type, a negative or fractional counter, or a string it cannot store.
 * Every failure is a TypeError (RangeError for a row index) that names the argument.
 */
import { FormatCode, type PackedSamples, type PreparedPoll } from './engine';
import type { EndedOptions, ProtocolId, SessionSample, TrackerPoll } from './types';

export const LIMITS = {
  /** Characters (UTF-16 units). */
  key: 4096,
  user: 1024,
  scope: 256,
  label: 256,
  remoteAddress: 1024,
  /** Characters of a string text, or bytes of a Uint8Array text. */
  text: 512 * 1024 * 1024,
  polls: 100_000,
} as const;

const PROTOCOLS: ReadonlySet<string> = new Set<ProtocolId>(['openvpn', 'l2tp', 'cisco', 'wireguard']);

const isWellFormedImpl = (String.prototype as unknown as { isWellFormed?: (this: string) => boolean }).isWellFormed;
const SURROGATE = /[\uD800-\uDFFF]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:^|[^\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** False when the string holds a lone surrogate (it could not round-trip through UTF-8). */
export function isWellFormed(s: string): boolean {
  return isWellFormedImpl ? isWellFormedImpl.call(s) : !LONE_SURROGATE.test(s);
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Uint8Array) return `a Uint8Array`;
  switch (typeof v) {
    case 'string':
      return v.length > 40 ? `a string of ${v.length} characters` : JSON.stringify(v);
    case 'number':
    case 'boolean':
    case 'bigint':
      return String(v);
    case 'undefined':
      return 'undefined';
    case 'function':
      return 'a function';
    default:
      return `an ${typeof v}`;
  }
}

export function checkString(v: unknown, what: string, max: number, allowEmpty: boolean): string {
  if (typeof v !== 'string') throw new TypeError(`${what} must be a string (got ${describe(v)})`);
  if (v.length > max) throw new TypeError(`${what} must be at most ${max} characters (got ${v.length})`);
  if (!allowEmpty && v.length === 0) throw new TypeError(`${what} must not be empty`);
  if (!isWellFormed(v)) throw new TypeError(`${what} must be well-formed UTF-16 (it holds a lone surrogate)`);
  return v;
}

export function checkCounter(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new TypeError(`${what} must be a non-negative safe integer (got ${describe(v)})`);
  }
  return v;
}

/** Typed arrays a tracker reuses between ticks (fresh megabyte-sized ones cost page faults). */
export interface SampleScratch {
  lengths: Uint32Array;
  numbers: Float64Array;
}

/**
 * Validates and packs a sample batch in one pass. With `scratch`, its arrays are reused (and
 * grown); the returned arrays may then be longer than the batch.
 */
export function packSamples(samples: unknown, where: string, scratch?: SampleScratch): PackedSamples {
  if (!Array.isArray(samples)) throw new TypeError(`${where}.samples must be an array (got ${describe(samples)})`);
  const count = samples.length;
  let lengths: Uint32Array;
  let numbers: Float64Array;
  if (scratch) {
    if (scratch.lengths.length < count * 2) scratch.lengths = new Uint32Array(Math.max(count * 2, scratch.lengths.length * 2));
    if (scratch.numbers.length < count * 3) scratch.numbers = new Float64Array(Math.max(count * 3, scratch.numbers.length * 2));
    lengths = scratch.lengths;
    numbers = scratch.numbers;
  } else {
    lengths = new Uint32Array(count * 2);
    numbers = new Float64Array(count * 3);
  }
  const remotes: string[] = new Array<string>(count);
  let joined = '';
  for (let i = 0; i < count; i++) {
    const s = samples[i] as Partial<SessionSample> | null;
    if (typeof s !== 'object' || s === null) {
      throw new TypeError(`${where}.samples[${i}] must be an object (got ${describe(s)})`);
    }
    const key = s.key;
    const user = s.user;
    const remote = s.remoteAddress === undefined ? '' : s.remoteAddress;
    // Well-formedness of keys and users is checked once on the joined string below (remote
    // addresses never leave JS, so they need no check).
    if (typeof key !== 'string' || key.length === 0 || key.length > LIMITS.key) {
      checkString(key, `${where}.samples[${i}].key`, LIMITS.key, false);
    }
    if (typeof user !== 'string' || user.length > LIMITS.user) {
      checkString(user, `${where}.samples[${i}].user`, LIMITS.user, true);
    }
    if (typeof remote !== 'string' || remote.length > LIMITS.remoteAddress) {
      checkString(remote, `${where}.samples[${i}].remoteAddress`, LIMITS.remoteAddress, true);
    }
    const rx = s.rx;
    const tx = s.tx;
    const at = s.connectedAt;
    if (!Number.isSafeInteger(rx) || (rx as number) < 0) checkCounter(rx, `${where}.samples[${i}].rx`);
    if (!Number.isSafeInteger(tx) || (tx as number) < 0) checkCounter(tx, `${where}.samples[${i}].tx`);
    if (!Number.isSafeInteger(at) || (at as number) < 0) checkCounter(at, `${where}.samples[${i}].connectedAt`);
    const k = key as string;
    const u = user as string;
    lengths[i * 2] = k.length;
    lengths[i * 2 + 1] = u.length;
    const j = i * 3;
    numbers[j] = rx as number;
    numbers[j + 1] = tx as number;
    numbers[j + 2] = at as number;
    remotes[i] = remote;
    joined += k;
    joined += u;
  }
  // One check for all keys and users. Pure ASCII (the usual case) cannot hold surrogates;
  // otherwise a surrogate anywhere means one might be lone inside a piece yet paired across two
  // pieces, so each piece is checked. (Buffer.byteLength also flattens the rope in place, so C++
  // then copies it in one go: reading a 60k-piece rope through N-API is several times slower.)
  const ascii = Buffer.byteLength(joined, 'utf8') === joined.length;
  const wellFormed = ascii || isWellFormed(joined);
  if (!ascii && (!wellFormed || SURROGATE.test(joined))) {
    for (let i = 0; i < count; i++) {
      const s = samples[i] as SessionSample;
      checkString(s.key, `${where}.samples[${i}].key`, LIMITS.key, false);
      checkString(s.user, `${where}.samples[${i}].user`, LIMITS.user, true);
    }
  }
  return { joined, ascii, lengths, numbers, remotes, count };
}

function peerResolver(peerNames: unknown, where: string): ((publicKey: string) => string) | undefined {
  if (peerNames === undefined) return undefined;
  const clean = (v: unknown): string =>
    typeof v === 'string' && v.length <= LIMITS.user && isWellFormed(v) ? v : '';
  if (peerNames instanceof Map) {
    const map = peerNames as ReadonlyMap<unknown, unknown>;
    return (publicKey) => {
      try {
        return clean(map.get(publicKey));
      } catch {
        return '';
      }
    };
  }
  if (typeof peerNames === 'object' && peerNames !== null && !Array.isArray(peerNames)) {
    const rec = peerNames as Record<string, unknown>;
    return (publicKey) => {
      try {
        return Object.prototype.hasOwnProperty.call(rec, publicKey) ? clean(rec[publicKey]) : '';
      } catch {
        return '';
      }
    };
  }
  throw new TypeError(`${where}.peerNames must be a Map or a plain object (got ${describe(peerNames)})`);
}

export interface PollLabels {
  scope: string;
  protocol: ProtocolId;
  serverId: string;
}

/**
 * Checks every poll and produces what the engines take, plus the labels for the results.
 * `scratch` (one entry per sample batch of the tick, created as needed) lets a tracker reuse
 * the packing arrays from tick to tick.
 */
export function preparePolls(polls: unknown, scratch?: SampleScratch[]): { prepared: PreparedPoll[]; labels: PollLabels[] } {
  if (!Array.isArray(polls)) throw new TypeError(`tick(polls): polls must be an array (got ${describe(polls)})`);
  if (polls.length > LIMITS.polls) throw new TypeError(`tick(polls): at most ${LIMITS.polls} polls per tick`);
  const prepared: PreparedPoll[] = [];
  const labels: PollLabels[] = [];
  let batches = 0;
  for (let i = 0; i < polls.length; i++) {
    const where = `polls[${i}]`;
    const p = polls[i] as Partial<TrackerPoll> | null;
    if (typeof p !== 'object' || p === null) throw new TypeError(`${where} must be an object (got ${describe(p)})`);
    const scope = checkString(p.scope, `${where}.scope`, LIMITS.scope, false);
    const protocol = checkString(p.protocol, `${where}.protocol`, LIMITS.label, false);
    if (!PROTOCOLS.has(protocol)) {
      throw new TypeError(`${where}.protocol must be one of ${[...PROTOCOLS].join(', ')} (got ${describe(protocol)})`);
    }
    const serverId = checkString(p.serverId, `${where}.serverId`, LIMITS.label, true);
    labels.push({ scope, protocol: protocol as ProtocolId, serverId });
    if (p.kind === 'samples') {
      let slot: SampleScratch | undefined;
      if (scratch) {
        slot = scratch[batches] ??= { lengths: new Uint32Array(0), numbers: new Float64Array(0) };
        batches++;
      }
      prepared.push({ format: FormatCode.samples, samples: packSamples(p.samples, where, slot), scope });
    } else if (p.kind === 'status-text') {
      const format = p.format;
      if (format !== 'openvpn-status3' && format !== 'wg-dump' && format !== 'ocserv-json') {
        throw new TypeError(
          `${where}.format must be 'openvpn-status3', 'wg-dump' or 'ocserv-json' (got ${describe(format)})`,
        );
      }
      const text: unknown = p.text;
      if (typeof text === 'string') {
        if (text.length > LIMITS.text) throw new TypeError(`${where}.text must be at most ${LIMITS.text} characters`);
        if (!isWellFormed(text)) throw new TypeError(`${where}.text must be well-formed UTF-16 (it holds a lone surrogate)`);
      } else if (text instanceof Uint8Array) {
        if (text.byteLength > LIMITS.text) throw new TypeError(`${where}.text must be at most ${LIMITS.text} bytes`);
      } else {
        throw new TypeError(`${where}.text must be a string or a Uint8Array/Buffer (got ${describe(text)})`);
      }
      const resolve = format === 'wg-dump' ? peerResolver(p.peerNames, where) : undefined;
      if (format !== 'wg-dump' && p.peerNames !== undefined) peerResolver(p.peerNames, where);
      prepared.push({ format: FormatCode[format], text, scope, resolve });
    } else {
      throw new TypeError(`${where}.kind must be 'status-text' or 'samples' (got ${describe(p.kind)})`);
    }
  }
  return { prepared, labels };
}

export function checkEndedOptions(options: unknown): EndedOptions {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`ended(): options must be an object (got ${describe(options)})`);
  }
  const o = options as EndedOptions;
  const out: EndedOptions = {};
  if (o.user !== undefined) out.user = checkString(o.user, 'ended(): options.user', LIMITS.user, true);
  if (o.connectedAt !== undefined) out.connectedAt = checkCounter(o.connectedAt, 'ended(): options.connectedAt');
  if (o.scope !== undefined) out.scope = checkString(o.scope, 'ended(): options.scope', LIMITS.scope, false);
  return out;
}
