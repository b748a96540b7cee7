/**
 * Relay throughput: JSON-RPC through the relay beside the same calls straight to anvil,
 * in the same run over loopback with bounded concurrency, and envelopes ingested per
 * second (each one fsync'd before its 202). `npx tsx bench/relay.ts` prints a markdown table.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeFunctionData } from 'viem';
import { startAnvil } from '../hosts/chain/anvil.js';
import { connect, deployKeyExchange } from '../hosts/chain/deploy.js';
import { loadArtifact } from '../contracts/artifact.js';
import { startRelay } from '../hosts/relay/server.js';
import { encodeEnvelope } from '../lib/envelope.js';
import { markdown } from './table.js';

export interface RelayBenchOptions {
  /** Requests per JSON-RPC measurement (default 3000). */
  rpcRequests?: number;
  /** Envelopes posted (default 1000). */
  envelopes?: number;
  /** Requests in flight at once (default 16). */
  concurrency?: number;
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

export async function relayBench(opts: RelayBenchOptions = {}): Promise<{ header: string[]; rows: string[][]; method: string }> {
  const nRpc = opts.rpcRequests ?? 3000;
  const nEnv = opts.envelopes ?? 1000;
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
      const device = new Uint8Array(randomBytes(20));
      const envs = Array.from({ length: nEnv }, (_, i) => Buffer.from(encodeEnvelope({
        device, epoch: 1n, seq: BigInt(i + 1), nonce: new Uint8Array(randomBytes(24)), ciphertext: new Uint8Array(randomBytes(64)),
      })));
      const ingest = await load(`${relay.url}/v1/readings`, nEnv, conc, 'application/cbor', (i) => envs[i], (st) => st === 202);
      rows.push([`POST /v1/readings (${nEnv} × ${envs[0].length} B, fsync each)`, '—', f(ingest.perSec), '—', `${f(ingest.p50)} / ${f(ingest.p99)}`, '—', String(ingest.failures)]);
      return {
        header: ['request', 'anvil direct req/s', 'via relay req/s', 'direct p50 / p99 ms', 'relay p50 / p99 ms', 'throughput cost', 'failures'],
        rows,
        method: `Loopback HTTP/1.1 keep-alive, ${conc} requests in flight, after 200 warm-up requests each; anvil (automine) and the relay (rate limit off, pino silent) in the same run on the same machine. Relay figures include policy checks, id rewriting, and for readings a strict envelope decode plus one SQLite WAL commit with synchronous=FULL per envelope.`,
      };
    } finally {
      await relay.stop();
    }
  } finally {
    await anvil.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = await relayBench();
  console.log(`### Relay throughput\n\n${markdown(r)}\n\n${r.method}`);
}
