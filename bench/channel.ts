/**
 * The relay's channel check (issue 15 item 5): what a POST /v1/readings costs with the
 * enrolment index (hosts/relay/channel-check.ts) for junk (random devices) and for
 * enrolled devices, the index build on a chain of many blocks, and what the former check
 * (one full-range KeyAccepted eth_getLogs per new address) cost per address.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keyExchangeAbi } from '../contracts/build/KeyExchange.js';
import { startAnvil } from '../hosts/chain/anvil.js';
import { connect, deployKeyExchange } from '../hosts/chain/deploy.js';
import { startRelay } from '../hosts/relay/server.js';
import { bytesToHex } from '../lib/bytes.js';
import { encodeEnvelope } from '../lib/envelope.js';
import { eventTopic } from '../lib/keyexchange-abi.js';

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

async function posts(url: string, bodies: Uint8Array[], concurrency = 16): Promise<{ perSec: number; p50: number; p99: number; statuses: Record<number, number> }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const lat: number[] = [];
  const statuses: Record<number, number> = {};
  let next = 0;
  const one = (b: Uint8Array) => new Promise<void>((resolve) => {
    const t = process.hrtime.bigint();
    const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/cbor', 'content-length': String(b.length) } }, (res) => {
      res.resume();
      res.on('end', () => { lat.push(ms(t)); statuses[res.statusCode!] = (statuses[res.statusCode!] ?? 0) + 1; resolve(); });
    });
    req.on('error', () => { statuses[0] = (statuses[0] ?? 0) + 1; resolve(); });
    req.end(b);
  });
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: concurrency }, async () => { while (next < bodies.length) await one(bodies[next++]); }));
  const secs = ms(t0) / 1000;
  agent.destroy();
  lat.sort((a, b) => a - b);
  return { perSec: bodies.length / secs, p50: lat[Math.floor(lat.length / 2)], p99: lat[Math.floor(lat.length * 0.99)], statuses };
}

export async function channelBench(opts: { junk?: number; genuine?: number; devices?: number; blocks?: number } = {}): Promise<{ header: string[]; rows: string[][]; method: string }> {
  const nJunk = opts.junk ?? 1000;
  const nGenuine = opts.genuine ?? 500;
  const nDevices = opts.devices ?? 20;
  const nBlocks = opts.blocks ?? 4_000;
  const anvil = await startAnvil();
  const dir = mkdtempSync(join(tmpdir(), 'channel-bench-'));
  // Upstream calls counted by a pass-through proxy in front of anvil.
  let calls = 0;
  const proxy = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks).toString();
      try { const j = JSON.parse(body); calls += Array.isArray(j) ? j.length : 1; } catch { calls++; }
      const r = await fetch(anvil.rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      res.writeHead(r.status, { 'content-type': 'application/json' });
      res.end(Buffer.from(await r.arrayBuffer()));
    });
  });
  await new Promise<void>((ok) => proxy.listen(0, '127.0.0.1', () => ok()));
  const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  const rows: string[][] = [];
  const f = (x: number) => x.toFixed(x < 10 ? 2 : 0);
  try {
    const s = await connect(anvil.rpcUrl, anvil.accounts[0].privateKey);
    const dep = await deployKeyExchange(s, 50);
    // nDevices enrolled (the receiver enrolls itself), spread over a chain of nBlocks empty blocks.
    const devices = Array.from({ length: nDevices }, () => new Uint8Array(randomBytes(20)));
    for (const [i, d] of devices.entries()) {
      const hash = await s.walletClient.writeContract({ address: dep.address, abi: keyExchangeAbi, functionName: 'enroll', args: [s.account.address, `0x${bytesToHex(d)}`] } as any);
      await s.publicClient.waitForTransactionReceipt({ hash });
      if (i % 10 === 9) {
        for (let left = Math.floor(nBlocks / (nDevices / 10)); left > 0; left -= 500) {
          const r = await fetch(anvil.rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'anvil_mine', params: [`0x${Math.min(500, left).toString(16)}`] }) });
          await r.json();
        }
      }
    }
    const head = Number(await s.publicClient.getBlockNumber());
    let seq = 1n;
    const env = (d: Uint8Array) => encodeEnvelope({ device: d, epoch: 1n, seq: seq++, nonce: new Uint8Array(randomBytes(24)), ciphertext: new Uint8Array(randomBytes(60)) });

    const relay = await startRelay({ upstreamUrl: proxyUrl, chainId: anvil.chainId, contract: dep.address, dbPath: join(dir, 'on.db'), logLevel: 'silent', limits: { rateLimit: false },
      requireChannel: { fromBlock: BigInt(dep.block), tailMs: 3_600_000, refreshMs: 3_600_000 } });
    try {
      const c0 = calls;
      const t0 = process.hrtime.bigint();
      const first = await posts(`${relay.url}/v1/readings`, [env(devices[0])], 1);
      rows.push([`index build: ${nDevices} enrolments over ${head.toLocaleString('en')} blocks (first POST, scan included)`, `${f(ms(t0))} ms`, `${calls - c0} upstream calls`, first.statuses[202] === 1 ? '202' : JSON.stringify(first.statuses)]);
      const c1 = calls;
      const junk = await posts(`${relay.url}/v1/readings`, Array.from({ length: nJunk }, () => env(new Uint8Array(randomBytes(20)))));
      rows.push([`${nJunk} POSTs for random devices (check on)`, `${f(junk.perSec)} /s, p50 ${f(junk.p50)} ms, p99 ${f(junk.p99)} ms`, `${calls - c1} upstream calls`, JSON.stringify(junk.statuses)]);
      const c2 = calls;
      const good = await posts(`${relay.url}/v1/readings`, Array.from({ length: nGenuine }, (_, i) => env(devices[i % nDevices])));
      rows.push([`${nGenuine} POSTs for enrolled devices (check on, fsync each)`, `${f(good.perSec)} /s, p50 ${f(good.p50)} ms, p99 ${f(good.p99)} ms`, `${calls - c2} upstream calls`, JSON.stringify(good.statuses)]);
    } finally {
      await relay.stop();
    }
    const off = await startRelay({ upstreamUrl: proxyUrl, chainId: anvil.chainId, contract: dep.address, dbPath: join(dir, 'off.db'), logLevel: 'silent', limits: { rateLimit: false }, requireChannel: false });
    try {
      const good = await posts(`${off.url}/v1/readings`, Array.from({ length: nGenuine }, (_, i) => env(devices[i % nDevices])));
      rows.push([`${nGenuine} POSTs for enrolled devices (check off, fsync each)`, `${f(good.perSec)} /s, p50 ${f(good.p50)} ms, p99 ${f(good.p99)} ms`, '0 upstream calls', JSON.stringify(good.statuses)]);
    } finally {
      await off.stop();
    }
    // The former check: one KeyAccepted eth_getLogs from the deployment block per address not in its cache.
    const topic = `0x${bytesToHex(eventTopic('KeyAccepted'))}`;
    const n = 200;
    const t1 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      const r = await fetch(anvil.rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_getLogs',
        params: [{ address: dep.address, fromBlock: `0x${dep.block.toString(16)}`, toBlock: 'latest', topics: [topic, `0x${'00'.repeat(12)}${bytesToHex(randomBytes(20))}`] }] }) });
      await r.json();
    }
    rows.push([`former check: full-range KeyAccepted eth_getLogs per new address (${n} addresses, ${head.toLocaleString('en')} blocks, anvil)`, `${f(ms(t1) / n)} ms each`, '1 upstream call per new address', '']);
  } finally {
    await new Promise((ok) => proxy.close(ok));
    await anvil.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return {
    header: ['what', 'time / rate', 'upstream', 'answers'],
    rows,
    method: 'One anvil with KeyExchange; the receiver account enrolls N random device addresses, with empty blocks mined (anvil_mine) between them so the index is built from a long chain in 10,000-block eth_getLogs chunks. The relay runs with the check on (tail and refresh timers set long, so only the index build and the POSTs themselves could call upstream) and then off; upstream calls are counted by a pass-through proxy in front of anvil; 16 keep-alive clients; every stored envelope is fsync\'d. The former check is timed straight against anvil, one call at a time (a public node adds its round trip and range limits on top).',
  };
}
