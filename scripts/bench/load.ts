import { Worker } from 'node:worker_threads';

export interface LoadOptions {
  port: number;
  /** Paths requested round-robin. */
  paths: string[];
  headers?: Record<string, string>;
  concurrency: number;
  durationMs: number;
}

export interface LoadResult {
  requests: number;
  errors: number;
  seconds: number;
  perSecond: number;
}

/**
 * Drives HTTP load from a worker thread (so the client does not steal the server's event loop)
 * with keep-alive connections; bounded by duration.
 */
export function runLoad(options: LoadOptions): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(loadWorkerSource, { eval: true, workerData: options });
    worker.once('message', resolve);
    worker.once('error', reject);
  });
}

// The worker body as plain JS so it runs without a TypeScript loader inside the thread.
const loadWorkerSource = `
const http = require('node:http');
const { parentPort, workerData } = require('node:worker_threads');
const { port, paths, headers, concurrency, durationMs } = workerData;
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
let requests = 0, errors = 0, i = 0;
const start = Date.now();
const deadline = start + durationMs;
function one() {
  return new Promise((resolve) => {
    const path = paths[i++ % paths.length];
    const req = http.request({ host: '127.0.0.1', port, path, agent, headers }, (res) => {
      res.resume();
      res.on('end', () => { if (res.statusCode === 200) requests++; else errors++; resolve(); });
    });
    req.on('error', () => { errors++; resolve(); });
    req.end();
  });
}
async function loop() { while (Date.now() < deadline) await one(); }
Promise.all(Array.from({ length: concurrency }, loop)).then(() => {
  const seconds = (Date.now() - start) / 1000;
  agent.destroy();
  parentPort.postMessage({ requests, errors, seconds, perSecond: requests / seconds });
});
`;


export interface MixedLoadOptions {
  port: number;
  apiKey: string;
  /** Existing users the GETs ask for. */
  usernames: string[];
  clients: number;
  durationMs: number;
  /** Share of requests that write (create, edit, toggle, delete of the client's own users). */
  writeShare: number;
}

export interface MixedLoadResult {
  gets: number;
  getErrors: number;
  writes: number;
  writeErrors: number;
  /** First few failed writes, `status body`. */
  writeErrorSamples: string[];
  getP50Ms: number;
  getP99Ms: number;
  seconds: number;
}

/**
 * `clients` concurrent clients (a worker thread, keep-alive), each looping until the deadline:
 * mostly GETs of existing users, the rest writes on users the client created itself, like a
 * busy bot. Bounded by duration; only 127.0.0.1.
 */
export function runMixedLoad(options: MixedLoadOptions): Promise<MixedLoadResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(mixedWorkerSource, { eval: true, workerData: options });
    worker.once('message', resolve);
    worker.once('error', reject);
  });
}

const mixedWorkerSource = `
const http = require('node:http');
const { parentPort, workerData } = require('node:worker_threads');
const { port, apiKey, usernames, clients, durationMs, writeShare } = workerData;
const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
const getTimes = [];
let gets = 0, getErrors = 0, writes = 0, writeErrors = 0;
const samples = [];
const start = Date.now();
const deadline = start + durationMs;
function call(method, path, body) {
  return new Promise((resolve) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers = { 'X-API-KEY': apiKey };
    if (data) { headers['Content-Type'] = 'application/json'; headers['Content-Length'] = String(data.length); }
    const t0 = process.hrtime.bigint();
    const req = http.request({ host: '127.0.0.1', port, method, path: '/api/v1' + path, agent, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString().slice(0, 200), ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
    });
    req.on('error', (err) => resolve({ status: 0, body: err.message, ms: 0 }));
    req.end(data);
  });
}
async function client(id) {
  const mine = [];
  let n = 0;
  while (Date.now() < deadline && n < 100000) {
    n++;
    if (Math.random() >= writeShare) {
      const r = await call('GET', '/users/' + usernames[(Math.random() * usernames.length) | 0]);
      gets++;
      if (r.status === 200) getTimes.push(r.ms); else getErrors++;
      continue;
    }
    let r;
    const roll = Math.random();
    if (mine.length === 0 || roll < 0.35) {
      const name = 'load_' + id + '_' + n;
      r = await call('POST', '/users', { username: name, data_limit: 5, expiry_days: 30 });
      if (r.status === 200) mine.push(name);
    } else if (roll < 0.6) {
      r = await call('PUT', '/users/' + mine[(Math.random() * mine.length) | 0], { notes: 'load ' + n, max_clients: 1 + (n % 3) });
    } else if (roll < 0.8) {
      r = await call('POST', '/users/' + mine[(Math.random() * mine.length) | 0] + '/toggle');
    } else {
      r = await call('DELETE', '/users/' + mine.pop());
    }
    writes++;
    if (r.status !== 200) { writeErrors++; if (samples.length < 5) samples.push(r.status + ' ' + r.body); }
  }
}
Promise.all(Array.from({ length: clients }, (_, i) => client(i))).then(() => {
  agent.destroy();
  getTimes.sort((a, b) => a - b);
  const q = (p) => getTimes.length ? getTimes[Math.min(getTimes.length - 1, Math.floor(p * getTimes.length))] : NaN;
  parentPort.postMessage({ gets, getErrors, writes, writeErrors, writeErrorSamples: samples, getP50Ms: q(0.5), getP99Ms: q(0.99), seconds: (Date.now() - start) / 1000 });
});
`;
