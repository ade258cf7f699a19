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

