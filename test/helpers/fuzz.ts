import http from 'node:http';
import { gzipSync } from 'node:zlib';
import type { AnyProcedure } from '@trpc/server';
import { openApiDocument } from '../../api/openapi';
import { listRestRoutes } from '../../api/rest';
import { appRouter } from '../../api/routers';

/**
 * A seeded, bounded HTTP fuzzer for polygate (used by `test/contract/fuzz.test.ts` and the
 * bench). Targets come from the router itself — every REST route of `listRestRoutes()`, every
 * tRPC procedure at `/trpc`, and the public pages — so a new route is fuzzed without editing
 * this file. Field names come from the OpenAPI document. Only 127.0.0.1 is ever contacted:
 * node routes never get an SSH password (so no SSH preflight runs) and any address is
 * rewritten to 127.0.0.1.
 */

/** mulberry32: small, fast, good enough to make a run reproducible from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface FuzzTarget {
  transport: 'rest' | 'trpc' | 'page';
  method: string;
  /** Path template with `{param}` placeholders (REST, pages) or the tRPC procedure path. */
  path: string;
  procedure?: string;
  kind?: 'query' | 'mutation';
}

export function fuzzTargets(): FuzzTarget[] {
  const targets: FuzzTarget[] = listRestRoutes().map((r) => ({ transport: 'rest', method: r.method, path: `/api/v1${r.path}` }));
  const procedures = appRouter._def.procedures as unknown as Record<string, AnyProcedure>;
  for (const [name, p] of Object.entries(procedures)) {
    const kind = (p._def as { type?: string }).type === 'query' ? 'query' : 'mutation';
    targets.push({ transport: 'trpc', method: kind === 'query' ? 'GET' : 'POST', path: `/trpc/${name}`, procedure: name, kind });
  }
  for (const path of ['/sub/{username}', '/download/{username}/{file}', '/healthz', '/metrics', '/api/v1/openapi.json']) {
    targets.push({ transport: 'page', method: 'GET', path });
  }
  return targets;
}

/** Every property name the OpenAPI document mentions (request and response fields). */
export function fieldNames(): string[] {
  const names = new Set<string>();
  const stack: unknown[] = [openApiDocument('http://127.0.0.1')];
  for (let i = 0; stack.length > 0 && i < 100_000; i++) {
    const v = stack.pop();
    if (Array.isArray(v)) stack.push(...v);
    else if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      if (o.properties && typeof o.properties === 'object') for (const k of Object.keys(o.properties)) names.add(k);
      if (Array.isArray(o.parameters)) for (const p of o.parameters as { name?: string }[]) if (p.name) names.add(p.name);
      stack.push(...Object.values(o));
    }
  }
  return [...names];
}

const STRINGS = [
  '', ' ', 'a', 'main', 'node_1', 'list_all', 'user0001', "' OR 1=1 --", '"; DROP TABLE users; --', '\\', '%', '%ff', '%00',
  '../../etc/passwd', '$(id)', '`id`', '${7*7}', '<script>alert(1)</script>', 'null', 'true', '0', '-1', '1e309', 'NaN',
  '2026-13-45', '2026-02-29', '9999-12-31', 'é', '😀', '\u202e', '\u0000', 'a\u0000b', '\u001b[31m', 'line\nbreak', 'tab\there',
  '\ud800', 'x'.repeat(33), 'x'.repeat(300), 'x'.repeat(5000), '__proto__', 'constructor', '127.0.0.1', '::1', 'GB', 'MB',
  'fixed_date', 'flexible_days', 'no_reset', 'month', 'udp', 'tcp',
];
const NUMBERS = [0, 1, -1, 2, 7, 1000, 1001, 65535, 65536, 1.5, -0.0001, 1e308, -1e308, 2 ** 53, 2 ** 53 + 2, 36_500, 36_501, 1024, 8443];
const PATH_SEGMENTS = ['%ff', '%E0%A4%A', '%00', 'a%00b', '%2e%2e', '..', '%2F', 'list_all', '0', '-1', '999999999999', '1e3', '%20', 'x'.repeat(300), '%C3%A9', '%F0%9F%98%80'];

/** encodeURIComponent, except that a lone surrogate becomes its (invalid) UTF-8 bytes instead of throwing. */
function enc(value: string): string {
  try {
    return encodeURIComponent(value);
  } catch {
    return '%ED%A0%80';
  }
}

const text = (v: unknown): string => (typeof v === 'object' && v !== null ? (JSON.stringify(v) ?? '') : String(v));

export interface FuzzContext {
  /** API keys to send (undefined = none); one is picked per request. */
  keys: (string | undefined)[];
  /** Names and ids that exist, so some requests get past "not found". */
  usernames: string[];
  ids: number[];
}

export interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  label: string;
  /** `transport method path-template` of the route this request aimed at. */
  target: string;
}

export class RequestFuzzer {
  private readonly rand: () => number;
  private readonly targets = fuzzTargets();
  private readonly fields = fieldNames();

  constructor(
    seed: number,
    private readonly ctx: FuzzContext,
  ) {
    this.rand = prng(seed);
  }

  private pick<T>(list: readonly T[]): T {
    return list[Math.floor(this.rand() * list.length)]!;
  }
  private chance(p: number): boolean {
    return this.rand() < p;
  }

  value(depth = 0): unknown {
    const r = this.rand();
    if (r < 0.4) return this.pick(STRINGS);
    if (r < 0.6) return this.pick(NUMBERS);
    if (r < 0.67) return this.chance(0.5);
    if (r < 0.74) return null;
    if (r < 0.8) return this.pick(this.ctx.usernames.length ? this.ctx.usernames : STRINGS);
    if (depth > 2) return this.pick(STRINGS);
    if (r < 0.9) return Array.from({ length: Math.floor(this.rand() * 4) }, () => this.value(depth + 1));
    return this.object(depth + 1);
  }

  object(depth = 0): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const n = Math.floor(this.rand() * 6);
    for (let i = 0; i < n; i++) {
      // defineProperty: a key named `__proto__` is sent as a key, not set as the prototype.
      Object.defineProperty(out, this.chance(0.9) ? this.pick(this.fields) : this.pick(STRINGS), { value: this.value(depth), enumerable: true, writable: true, configurable: true });
    }
    return out;
  }

  private param(name: string): string {
    const r = this.rand();
    if (r < 0.35) return enc(this.pick(this.ctx.usernames.length ? this.ctx.usernames : ['x']));
    if (r < 0.55 && this.ctx.ids.length) return String(this.pick(this.ctx.ids));
    if (r < 0.8) return this.pick(PATH_SEGMENTS);
    if (name === 'file') return `${enc(this.pick(STRINGS))}.ovpn`;
    return enc(text(this.value()));
  }

  private query(): string {
    if (!this.chance(0.3)) return '';
    const parts = Array.from({ length: 1 + Math.floor(this.rand() * 3) }, () => {
      const k = this.chance(0.8) ? this.pick([...this.fields, 'token', 'days']) : this.pick(PATH_SEGMENTS);
      const v = this.chance(0.5) ? this.pick(PATH_SEGMENTS) : enc(text(this.value()));
      return `${k}=${v}`;
    });
    return `?${parts.join('&')}`;
  }

  /** One request; the same seed gives the same sequence. */
  next(): FuzzRequest {
    const target = this.pick(this.targets);
    const headers: Record<string, string> = {};
    const key = this.pick(this.ctx.keys);
    if (key !== undefined) headers['X-API-KEY'] = key;
    let body: unknown = undefined;
    let path: string;
    let method = this.chance(0.05) ? this.pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH']) : target.method;

    if (target.transport === 'trpc') {
      const input = this.chance(0.8) ? this.object() : this.value();
      if (target.kind === 'query') {
        const raw = this.chance(0.85) ? enc(JSON.stringify(input) ?? 'null') : this.pick(PATH_SEGMENTS);
        path = `${target.path}?input=${raw}${this.chance(0.1) ? '&batch=1' : ''}`;
      } else {
        path = `${target.path}${this.chance(0.1) ? '?batch=1' : ''}`;
        body = input;
      }
    } else {
      path = target.path.replace(/\{(\w+)\}/g, (_, name: string) => this.param(name)) + this.query();
      if (method !== 'GET' && this.chance(0.85)) body = this.chance(0.9) ? this.object() : this.value();
    }
    if (/\/nodes/.test(target.path) && body && typeof body === 'object' && !Array.isArray(body)) {
      // Never leave 127.0.0.1: without an SSH password no preflight connection is made.
      const b = body as Record<string, unknown>;
      delete b.ssh_password;
      if ('ip_address' in b && typeof b.ip_address === 'string' && /^[\d.:a-f]+$/i.test(b.ip_address)) b.ip_address = '127.0.0.1';
    }

    let bytes: Buffer | undefined;
    if (body !== undefined) {
      const r = this.rand();
      const json = Buffer.from(JSON.stringify(body) ?? 'null');
      if (r < 0.8) {
        bytes = json;
        headers['Content-Type'] = this.pick(['application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded']);
      } else if (r < 0.87) {
        bytes = Buffer.from(this.pick(['{', '{"a":', '[1,2', 'not json', '\u0000', '{"__proto__":{"x":1}}', '"string"', '{}}']));
        headers['Content-Type'] = 'application/json';
      } else if (r < 0.94) {
        bytes = this.chance(0.5) ? gzipSync(json) : Buffer.concat([gzipSync(json).subarray(0, 10), Buffer.from('garbage')]);
        headers['Content-Type'] = 'application/json';
        headers['Content-Encoding'] = this.pick(['gzip', 'deflate', 'br', 'x-unknown']);
      } else {
        bytes = Buffer.from(JSON.stringify({ deep: JSON.parse('['.repeat(200) + ']'.repeat(200)) }));
        headers['Content-Type'] = 'application/json';
      }
    }
    if (method === 'GET' && bytes && this.chance(0.7)) bytes = undefined;
    return { target: `${target.transport} ${target.method} ${target.path}`, method, path, headers, body: bytes, label: `${method} ${path}${bytes ? ` ${bytes.subarray(0, 120).toString('latin1')}` : ''}` };
  }
}

export interface FuzzOutcome {
  requests: number;
  byStatus: Map<number, number>;
  /** Requests per target (every route should be hit). */
  hits: Map<string, number>;
  /** Requests answered 5xx (or not answered), with their answers, for the report. */
  serverErrors: string[];
  seconds: number;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function send(port: number, req: FuzzRequest): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const headers = { ...req.headers, ...(req.body ? { 'Content-Length': String(req.body.length) } : {}) };
    const r = http.request({ host: '127.0.0.1', port, method: req.method, path: req.path, headers, agent, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).subarray(0, 300).toString() }));
    });
    r.on('timeout', () => r.destroy(new Error('timeout')));
    r.on('error', (err) => resolve({ status: 0, body: String(err.message) }));
    if (req.body) r.end(req.body);
    else r.end();
  });
}

/** Sends `count` fuzzed requests (bounded), `concurrency` at a time, to 127.0.0.1:`port`. */
export async function runFuzz(options: { port: number; seed: number; count: number; concurrency: number; ctx: FuzzContext }): Promise<FuzzOutcome> {
  const fuzzer = new RequestFuzzer(options.seed, options.ctx);
  const byStatus = new Map<number, number>();
  const hits = new Map<string, number>();
  const serverErrors: string[] = [];
  let issued = 0;
  const start = performance.now();
  const lane = async () => {
    while (issued < options.count) {
      issued++;
      const req = fuzzer.next();
      hits.set(req.target, (hits.get(req.target) ?? 0) + 1);
      const res = await send(options.port, req);
      byStatus.set(res.status, (byStatus.get(res.status) ?? 0) + 1);
      if (res.status >= 500 || res.status === 0) serverErrors.push(`${res.status} ← ${req.label} → ${res.body}`);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, lane));
  return { requests: issued, byStatus, hits, serverErrors, seconds: (performance.now() - start) / 1000 };
}
