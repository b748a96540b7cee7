/**
 * Relay throughput: JSON-RPC through the relay beside the same calls straight to anvil,
 * in the same run over loopback with bounded concurrency, and envelopes ingested per
 * second (each one fsync'd before its 202). `npx tsx bench/relay.ts` prints a markdown table.
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeFunctionData } from 'viem';
import { startAnvil } from '../hosts/chain/anvil.js';
import { connect, deployKeyExchange } from '../hosts/chain/deploy.js';
import { loadArtifact } from '../contracts/artifact.js';
import { startRelay } from '../hosts/relay/server.js';
import { encodeEnvelope } from '../lib/envelope.js';
import { markdown } from './table.js';

const here = dirname(fileURLToPath(import.meta.url));

export interface RelayBenchOptions {
  /** Requests per JSON-RPC measurement (default 3000). */
  rpcRequests?: number;
  /** Envelopes posted per POST measurement (default 4000). */
  envelopes?: number;
  /** Requests in flight at once (default 16). */
  concurrency?: number;
  /** POST /v1/readings: requests in flight of each measurement (default 1, 16, 128). */
  postConcurrency?: number[];
}

const POST_METHOD = 'POST /v1/readings: the relay runs as its own process (`tsx hosts/relay/main.ts --no-channel-check --rate 0`, which logs one line at start and nothing per request), so the load generator does not share its event loop; two relays on two fresh SQLite files (WAL, synchronous=FULL), one with `--commit-batch 1` (one fsync\'d commit per POST, as before group commit) and one with the default group commit, measured in the same run at each concurrency in ABBA order (half the envelopes per-POST, half group, half group, half per-POST; rates over both halves); every envelope is a new one (202 expected, anything else is a failure), "fsync\'d commits" is the count of transactions the relay reports on /metrics (`iotkx_relay_commit_envelopes_count`) for the run, and "relay CPU per POST" the relay process\'s `process_cpu_seconds_total` over the run divided by the envelopes (HTTP, decode, SHA-256, insert, commit; wall-clock-independent, so the least load-sensitive figure). The ratio compares the two relays of the same run at the same concurrency; the load generator is one Node process with a keep-alive pool of that many sockets.';

/** Start hosts/relay/main.ts as a child process; resolves with its URL. */
function spawnRelay(db: string, extra: string[]): Promise<{ url: string; stop(): Promise<void> }> {
  const tsx = join(here, '..', 'node_modules', '.bin', 'tsx');
  const child = spawn(tsx, [join(here, '..', 'hosts', 'relay', 'main.ts'), '--upstream', 'http://127.0.0.1:9', '--chain-id', '31337',
    '--contract', '0x5fbdb2315678afecb367f032d93f642f64180aa3', '--db', db, '--port', '0', '--rate', '0', '--no-channel-check', '--log-level', 'info', ...extra],
  { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (c: Buffer) => {
      out += c;
      const m = /"url":"(http:[^"]+)"/.exec(out);
      if (!m) return;
      child.stdout!.off('data', onData);
      child.stdout!.resume();
      resolve({ url: m[1], stop: () => new Promise<void>((r) => { child.once('exit', () => r()); child.kill('SIGTERM'); }) });
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`relay exited ${code}: ${out}`)));
  });
}

async function relayCounters(url: string): Promise<{ commits: number; cpu: number }> {
  const text = await new Promise<string>((resolve, reject) => {
    http.get(`${url}/metrics`, (res) => {
      let t = '';
      res.on('data', (c) => (t += c));
      res.on('end', () => resolve(t));
    }).on('error', reject);
  });
  return {
    commits: Number(/^iotkx_relay_commit_envelopes_count\{outcome="ok"\} (\d+)/m.exec(text)?.[1] ?? 0),
    cpu: Number(/^process_cpu_seconds_total ([0-9.e+-]+)/m.exec(text)?.[1] ?? NaN),
  };
}

/** Durable POST/s, one fsync'd commit per POST against group commit, alternately, at each concurrency. */
async function durablePosts(total: number, concurrencies: number[], dir: string, groupFlags: string[] = []): Promise<string[][]> {
  const f = (x: number) => x.toFixed(x < 10 ? 2 : 0);
  const before = await spawnRelay(join(dir, 'per-post.db'), ['--commit-batch', '1']);
  const after = await spawnRelay(join(dir, 'group.db'), groupFlags);
  const rows: string[][] = [];
  try {
    const envs = (count: number) => {
      const device = new Uint8Array(randomBytes(20));
      return Array.from({ length: count }, (_, i) => Buffer.from(encodeEnvelope({
        device, epoch: 1n, seq: BigInt(i + 1), nonce: new Uint8Array(randomBytes(24)), ciphertext: new Uint8Array(randomBytes(64)),
      })));
    };
    for (const r of [before, after]) { // warm-up (JIT, SQLite file creation)
      const w = envs(200);
      await load(`${r.url}/v1/readings`, w.length, 16, 'application/cbor', (i) => w[i], (st) => st === 202);
    }
    for (const conc of concurrencies) {
      let n = total;
      // ABBA: per-POST, group, group, per-POST, so a drift of the machine's load during the pair biases neither.
      const half = Math.ceil(n / 2);
      const measure = async (r: { url: string }) => {
        const e = envs(half);
        const c0 = await relayCounters(r.url);
        const t0 = process.hrtime.bigint();
        const run = await load(`${r.url}/v1/readings`, half, conc, 'application/cbor', (i) => e[i], (st) => st === 202);
        const secs = Number(process.hrtime.bigint() - t0) / 1e9;
        const c1 = await relayCounters(r.url);
        return { run, secs, commits: c1.commits - c0.commits, cpu: c1.cpu - c0.cpu };
      };
      const b1 = await measure(before);
      const a1 = await measure(after);
      const a2 = await measure(after);
      const b2 = await measure(before);
      const both = (x: Awaited<ReturnType<typeof measure>>, y: Awaited<ReturnType<typeof measure>>) => ({
        run: { perSec: (2 * half) / (x.secs + y.secs), p50: Math.max(x.run.p50, y.run.p50), p99: Math.max(x.run.p99, y.run.p99), failures: x.run.failures + y.run.failures },
        commits: x.commits + y.commits,
        cpuUs: ((x.cpu + y.cpu) / (2 * half)) * 1e6,
      });
      const got = [both(b1, b2), both(a1, a2)];
      n = 2 * half;
      const [b, a] = got;
      const us = (x: number) => `${x.toFixed(0)} µs`;
      const size = envs(1)[0].length;
      rows.push([`one commit per POST (${n} × ${size} B)`, String(conc), f(b.run.perSec), `${f(b.run.p50)} / ${f(b.run.p99)}`, String(b.commits), (n / Math.max(1, b.commits)).toFixed(1), us(b.cpuUs), '', String(b.run.failures)]);
      rows.push([`group commit (${n} × ${size} B)`, String(conc), f(a.run.perSec), `${f(a.run.p50)} / ${f(a.run.p99)}`, String(a.commits), (n / Math.max(1, a.commits)).toFixed(1), us(a.cpuUs), `${(a.run.perSec / b.run.perSec).toFixed(2)}×`, String(a.run.failures)]);
    }
  } finally {
    await before.stop();
    await after.stop();
  }
  return rows;
}

interface Run { perSec: number; p50: number; p99: number; failures: number }

async function load(url: string, n: number, concurrency: number, contentType: string, body: (i: number) => Buffer, ok: (status: number) => boolean): Promise<Run> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const lat: number[] = [];
  let failures = 0;
  let next = 0;
  const one = (i: number) => new Promise<void>((resolve) => {
    const b = body(i);
    const t = process.hrtime.bigint();
    const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': contentType, 'content-length': String(b.length) } }, (res) => {
      res.resume();
      res.on('end', () => {
        lat.push(Number(process.hrtime.bigint() - t) / 1e6);
        if (!ok(res.statusCode!)) failures++;
        resolve();
      });
    });
    req.on('error', () => {
      failures++;
      resolve();
    });
    req.end(b);
  });
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) await one(next++);
  }));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  agent.destroy();
  lat.sort((a, b) => a - b);
  return { perSec: n / secs, p50: lat[Math.floor(lat.length * 0.5)], p99: lat[Math.floor(lat.length * 0.99)], failures };
}

interface Table { header: string[]; rows: string[][]; method: string }

const POST_HEADER = ['POST /v1/readings', 'in flight', 'durable POST/s', 'p50 / p99 ms (worse half)', 'fsync\'d commits', 'envelopes per commit', 'relay CPU per POST', 'group / per-POST', 'failures'];

export async function relayBench(opts: RelayBenchOptions = {}): Promise<Table & { posts: Table }> {
  const nRpc = opts.rpcRequests ?? 3000;
  const nEnv = opts.envelopes ?? 4000;
  const conc = opts.concurrency ?? 16;
  const anvil = await startAnvil();
  const dir = mkdtempSync(join(tmpdir(), 'relay-bench-'));
  try {
    const s = await connect(anvil.rpcUrl, anvil.accounts[0].privateKey);
    const { address } = await deployKeyExchange(s, 50);
    const relay = await startRelay({
      upstreamUrl: anvil.rpcUrl, chainId: anvil.chainId, contract: address, dbPath: join(dir, 'bench.db'),
      logLevel: 'silent', limits: { rateLimit: false }, requireChannel: false, // envelopes for random devices
    });
    try {
      const data = encodeFunctionData({ abi: loadArtifact().abi, functionName: 'offerTtlBlocks' });
      const calls: Array<[string, unknown[]]> = [['eth_blockNumber', []], ['eth_call', [{ to: address, data }, 'latest']]];
      const rows: string[][] = [];
      const f = (x: number) => x.toFixed(x < 10 ? 2 : 0);
      for (const [method, params] of calls) {
        const body = (i: number) => Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: i, method, params }));
        const okRpc = (st: number) => st === 200;
        await load(anvil.rpcUrl, 200, conc, 'application/json', body, okRpc); // warm-up
        await load(`${relay.url}/rpc`, 200, conc, 'application/json', body, okRpc);
        const direct = await load(anvil.rpcUrl, nRpc, conc, 'application/json', body, okRpc);
        const via = await load(`${relay.url}/rpc`, nRpc, conc, 'application/json', body, okRpc);
        rows.push([`${method} (${nRpc} calls)`, f(direct.perSec), f(via.perSec), `${f(direct.p50)} / ${f(direct.p99)}`, `${f(via.p50)} / ${f(via.p99)}`,
          `${((1 - via.perSec / direct.perSec) * 100).toFixed(0)} %`, String(direct.failures + via.failures)]);
      }
      const postRows = await durablePosts(nEnv, opts.postConcurrency ?? [1, 16, 128], dir);
      return {
        header: ['request', 'anvil direct req/s', 'via relay req/s', 'direct p50 / p99 ms', 'relay p50 / p99 ms', 'throughput cost', 'failures'],
        rows,
        method: `Loopback HTTP/1.1 keep-alive, ${conc} requests in flight, after 200 warm-up requests each; anvil (automine) and the relay (rate limit off, pino silent) in the same run on the same machine. Relay figures include policy checks and id rewriting.`,
        posts: { header: POST_HEADER, rows: postRows, method: POST_METHOD },
      };
    } finally {
      await relay.stop();
    }
  } finally {
    await anvil.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1] && process.argv[2] === 'posts') {
  // `npx tsx bench/relay.ts posts [n] [relay flags for the group-commit relay, e.g. --commit-wait 2]`: only the durable POST/s rows (no anvil).
  const dir = mkdtempSync(join(tmpdir(), 'relay-bench-'));
  try {
    const rows = await durablePosts(Number(process.argv[3] ?? 4000), [1, 16, 128], dir, process.argv.slice(4));
    console.log(`${markdown({ header: POST_HEADER, rows })}\n\n${POST_METHOD}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} else if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = await relayBench();
  console.log(`### Relay throughput\n\n${markdown(r)}\n\n${r.method}\n\n### Durable POST /v1/readings\n\n${markdown(r.posts)}\n\n${r.posts.method}`);
}
