/**
 * Readings throughput (issue 6): envelopes sealed with a real device's active key (Node
 * devices that ran the exchange on anvil), POSTed to the relay and pulled, decrypted and
 * stored by the receiver, in wall time; and the receiver's decrypt rate on one core
 * (openReading in a loop), beside the other parts of its per-envelope path, to show where
 * the time goes. `npx tsx bench/readings.ts` prints a markdown table.
 */
import http from 'node:http';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseEther, type Address, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { keyExchangeAbi } from '../contracts/build/KeyExchange.js';
import { startAnvil } from '../hosts/chain/anvil.js';
import { connect, deployKeyExchange, fund } from '../hosts/chain/deploy.js';
import { startNodeDevice, type NodeDevice } from '../hosts/device-node/device.js';
import { ensureRandom } from '../hosts/device-node/random.js';
import { initReceiverKeys } from '../hosts/receiver/keys.js';
import { startReceiver } from '../hosts/receiver/receiver.js';
import { startRelay } from '../hosts/relay/server.js';
import { toHex } from '../lib/bytes.js';
import { decodeEnvelope } from '../lib/envelope.js';
import { channelId, dataKeyOf } from '../lib/ids.js';
import { openReading, sealReading } from '../lib/reading.js';
import { markdown } from './table.js';

export interface ReadingsBenchOptions {
  /** Devices that run the real exchange (default 4). */
  devices?: number;
  /** Envelopes per device for each end-to-end run (default 500). */
  perDevice?: number;
  /** Envelopes opened in the decrypt loop (default 20000). */
  decrypts?: number;
  /** POSTs in flight (default 16). */
  concurrency?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function postAll(url: string, bodies: Uint8Array[], concurrency: number): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  let next = 0;
  let failures = 0;
  const one = (b: Uint8Array) => new Promise<void>((resolve) => {
    const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/cbor', 'content-length': String(b.length) } }, (res) => {
      res.resume();
      res.on('end', () => { if (res.statusCode !== 202) failures++; resolve(); });
    });
    req.on('error', () => { failures++; resolve(); });
    req.end(b);
  });
  await Promise.all(Array.from({ length: concurrency }, async () => { while (next < bodies.length) await one(bodies[next++]); }));
  agent.destroy();
  return failures;
}

export async function readingsBench(opts: ReadingsBenchOptions = {}): Promise<{ header: string[]; rows: string[][]; method: string }> {
  const nDev = opts.devices ?? 4;
  const per = opts.perDevice ?? 500;
  const nDec = opts.decrypts ?? 20_000;
  const conc = opts.concurrency ?? 16;
  const random = ensureRandom();
  const dir = mkdtempSync(join(tmpdir(), 'readings-bench-'));
  const anvil = await startAnvil({ blockTime: 1 });
  const devices: NodeDevice[] = [];
  const stops: Array<() => Promise<unknown>> = [];
  try {
    // 1. A paired system: contract, receiver (its loop driven by hand), relay, devices that run the exchange.
    const deployer = await connect(anvil.rpcUrl, anvil.accounts[0].privateKey);
    const dep = await deployKeyExchange(deployer, 30);
    const keys = initReceiverKeys(join(dir, 'receiver', 'keys.json'));
    const rKey = toHex(keys.accountKey) as Hex;
    const rAddr = privateKeyToAccount(rKey).address;
    await fund(deployer, rAddr, parseEther('10'));
    const relay = await startRelay({ upstreamUrl: anvil.rpcUrl, chainId: dep.chainId, contract: dep.address, dbPath: join(dir, 'relay.db'), logLevel: 'silent', limits: { rateLimit: false } });
    stops.push(() => relay.stop());
    const receiver = await startReceiver({
      rpcUrl: anvil.rpcUrl, chainId: dep.chainId, contract: dep.address, startBlock: BigInt(dep.block), dataDir: join(dir, 'receiver'),
      keyFile: join(dir, 'receiver', 'keys.json'), relayUrl: relay.url, pollIntervalMs: 0, http: false, exchange: { confirmations: 1 },
    });
    stops.push(() => receiver.stop());
    const asReceiver = await connect(anvil.rpcUrl, rKey, dep.chainId);
    for (let i = 0; i < nDev; i++) {
      const d = startNodeDevice({ dir: join(dir, 'devices'), name: `b${i}`, maxSleepMs: 300 });
      devices.push(d);
      const hash = await asReceiver.walletClient.writeContract({ address: dep.address, abi: keyExchangeAbi, functionName: 'enroll', args: [rAddr, d.address as Address] } as any);
      await asReceiver.publicClient.waitForTransactionReceipt({ hash });
      await fund(deployer, d.address as Address, parseEther('1'));
      d.provision({
        relayUrl: `${relay.url}/rpc`, chainId: String(dep.chainId), contract: dep.address, receiver: rAddr, intervalSec: 3600,
        maxFeePerGas: '100000000000', maxPriorityFeePerGas: '2000000000', offerGas: '150000', maxTxPerDay: 24,
        blockTime: 1, backoffMaxSec: 60, rotation: { maxReadings: 0, maxAgeSec: 0 },
      });
    }
    const deadline = Date.now() + 120_000;
    while (!devices.every((d) => d.device.engine.activeKey())) {
      if (Date.now() > deadline) throw new Error('devices did not activate');
      await receiver.sync();
      await sleep(300);
    }
    for (const d of devices) await d.stop();
    await receiver.sync();

    // 2. Envelopes sealed with each device's active key and fresh seqs (the device's own reserveSeq).
    const seal = () => devices.flatMap((d) => {
      const e = d.device.engine;
      const k = e.activeKey()!;
      const dataKey = dataKeyOf(k.K, k.channelId);
      return Array.from({ length: per }, (_, i) => {
        const { epoch, seq } = e.reserveSeq();
        return sealReading({ dataKey, device: e.address, epoch, seq, values: { t: Math.floor(Date.now() / 1000), temp: 20 + (i % 50) / 10, rh: 40 + (i % 30) }, random });
      });
    }).sort(() => Math.random() - 0.5); // devices interleaved, as many devices posting at once would be
    const accepted = async () => (await receiver.metrics.readingsAccepted.get()).values.reduce((a, v) => a + v.value, 0);
    const f = (x: number) => x.toFixed(x < 10 ? 2 : 0);
    const rows: string[][] = [];

    // 3a. End to end, pipelined: POSTs and the receiver's pulls run at once; wall time until all are stored.
    {
      const bodies = seal();
      const base = await accepted();
      const t0 = performance.now();
      let postMs = 0;
      const posting = postAll(`${relay.url}/v1/readings`, bodies, conc).then((fail) => { postMs = performance.now() - t0; return fail; });
      while ((await accepted()) < base + bodies.length) {
        if (performance.now() - t0 > 300_000) throw new Error('receiver did not catch up');
        await receiver.sync();
        await sleep(5);
      }
      const failures = await posting;
      const ms = performance.now() - t0;
      rows.push([`end to end: POST → relay (fsync) → receiver pull, decrypt, store (${bodies.length} envelopes, ${nDev} devices)`, f(bodies.length / (ms / 1000)), `${f(ms / bodies.length)} ms (wall, pipelined)`, String(failures)]);
      rows.push(['  of which: POST /v1/readings alone (same run)', f(bodies.length / (postMs / 1000)), `${f(postMs / bodies.length)} ms`, '—']);
    }
    // 3b. The receiver alone: everything already held by the relay, one sync() drains it.
    {
      const bodies = seal();
      const failures = await postAll(`${relay.url}/v1/readings`, bodies, conc);
      const base = await accepted();
      const t0 = performance.now();
      await receiver.sync();
      const ms = performance.now() - t0;
      const got = (await accepted()) - base;
      rows.push([`receiver: pull + decrypt + store of ${bodies.length} held envelopes (one sync)`, f(got / (ms / 1000)), `${f((ms * 1000) / got)} µs`, String(failures + (bodies.length - got))]);
    }

    // 3c. Where the receiver's time goes: its ingest() alone (no HTTP), and a bare fsync'd SQLite commit.
    {
      const bodies = seal().slice(0, 1000);
      const t0 = performance.now();
      let ok = 0;
      for (const b of bodies) if (receiver.ingest.ingest(b).status === 'accepted') ok++;
      const ms = performance.now() - t0;
      rows.push([`  receiver ingest() alone: look-ups, unseal K, data key, open, seq window, store (${bodies.length}, no HTTP)`, f(ok / (ms / 1000)), `${f((ms * 1000) / ok)} µs`, String(bodies.length - ok)]);
      const db = new Database(join(dir, 'fsync-probe.db'));
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.exec('CREATE TABLE t (x BLOB)');
      const ins = db.prepare('INSERT INTO t VALUES (?)');
      const n = 500;
      const t1 = performance.now();
      for (let i = 0; i < n; i++) ins.run(Buffer.alloc(100));
      const fms = performance.now() - t1;
      db.close();
      rows.push(['  of which: one SQLite WAL commit with synchronous=FULL (fsync), same disk', f(n / (fms / 1000)), `${f((fms * 1000) / n)} µs`, '—']);
    }

    // 4. Decrypt on one core: openReading on pre-sealed envelopes (one device's data key), and the
    //    other per-envelope work of the receiver's ingest path beside it.
    {
      const e = devices[0].device.engine;
      const k = e.activeKey()!;
      const dataKey = dataKeyOf(k.K, k.channelId);
      const envs = Array.from({ length: nDec }, (_, i) => sealReading({ dataKey, device: e.address, epoch: k.epoch, seq: BigInt(i + 1), values: { t: 1_790_000_000 + i, temp: 21.5, rh: 40 }, random }));
      const time = (label: string, fn: (b: Uint8Array) => void, n = envs.length) => {
        for (let i = 0; i < Math.min(2000, n); i++) fn(envs[i]); // warm-up
        const t0 = performance.now();
        for (let i = 0; i < n; i++) fn(envs[i]);
        const ms = performance.now() - t0;
        rows.push([label, f(n / (ms / 1000)), `${f((ms * 1000) / n)} µs`, '—']);
      };
      const chainId = BigInt(dep.chainId);
      const contract = new Uint8Array(Buffer.from(dep.address.slice(2), 'hex'));
      const recv = new Uint8Array(Buffer.from(rAddr.slice(2), 'hex'));
      time(`openReading (decode + XChaCha20-Poly1305 + CBOR), ${envs[0].length}-B envelopes, one core`, (b) => { openReading(dataKey, b); });
      time('decodeEnvelope alone', (b) => { decodeEnvelope(b); });
      time('channelId + HKDF data key (done per envelope by the receiver)', (b) => { dataKeyOf(k.K, channelId(chainId, contract, decodeEnvelope(b).device, recv)); }, 5000);
    }
    return {
      header: ['what', 'per second', 'per envelope', 'failures'],
      rows,
      method: `${nDev} Node devices (hosts/device-node) ran the real exchange on anvil (1 s blocks) through the relay; envelopes were then sealed with their active keys and fresh seqs (engine.reserveSeq, lib/reading sealReading; {t, temp, rh}), interleaved across devices, and POSTed over loopback HTTP/1.1 keep-alive, ${conc} in flight. The receiver (startReceiver, loop off, sync() called back to back) pulls GET /v1/readings pages of 100 and, per envelope, looks up the device and epoch, unseals K, derives channelId and the data key, opens the reading, checks the seq window and stores it; pull() commits each page of 100 (readings and relay cursor) in one SQLite transaction (WAL, synchronous=FULL: one fsync per page), while the ingest()-alone row still commits per envelope. Relay POSTs are one fsync'd SQLite commit each. The decrypt rows are a loop on one core in this process. Wall times on a shared 2-core machine: noisy.`,
    };
  } finally {
    for (const d of devices) await d.stop().catch(() => undefined);
    for (const s of stops.reverse()) await s().catch(() => undefined);
    await anvil.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = await readingsBench();
  console.log(`### Readings throughput\n\n${markdown(r)}\n\n${r.method}`);
}
