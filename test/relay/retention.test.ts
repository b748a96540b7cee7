// Issue 15 item 5 (relay side): the store is bounded and junk is cheap to refuse.
// Real anvil + the real KeyExchange contract (enrolments by its operator) + the relay over
// real HTTP, its upstream calls counted by a pass-through proxy in front of anvil.
// - The channel check is ON by default: a flood of envelopes for random devices stores
//   nothing and costs the upstream nothing per envelope; an enrolled device's envelopes are
//   stored, also one enrolled after the relay started; the index survives a restart.
// - Per-device and total caps refuse (507, the device keeps and retries) rather than evict;
//   age retention deletes, and the SQLite file stays bounded over flood/prune cycles.
import '../helpers/node-random.js';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Address } from 'viem';
import { encodeEnvelope } from '../../lib/envelope.js';
import { startRelay, type Relay } from '../../hosts/relay/server.js';
import type { RelayOptions } from '../../hosts/relay/config.js';
import { EnvelopeStore } from '../../hosts/relay/store.js';
import { startStack, type Stack } from '../e2e/stack.js';
import { request } from './helpers.js';

jest.setTimeout(120_000);

let stack: Stack;
let proxy: http.Server;
let proxyUrl = '';
let proxyUp = true;
const calls: string[] = [];
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-retention-'));
const relays: Relay[] = [];

beforeAll(async () => {
  stack = await startStack();
  // Counts every JSON-RPC method the relay sends upstream, then forwards it to anvil.
  proxy = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks).toString();
      if (!proxyUp) { res.destroy(); return; }
      try {
        const j = JSON.parse(body);
        for (const c of Array.isArray(j) ? j : [j]) calls.push(c.method);
      } catch { /* forwarded as is */ }
      const r = await fetch(stack.env.anvil.rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      res.writeHead(r.status, { 'content-type': 'application/json' });
      res.end(Buffer.from(await r.arrayBuffer()));
    });
  });
  await new Promise<void>((ok) => proxy.listen(0, '127.0.0.1', () => ok()));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
}, 120_000);
afterAll(async () => {
  for (const r of relays) await r.stop();
  await new Promise((ok) => proxy?.close(ok));
  await stack?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function relay(db: string, over: Partial<RelayOptions> = {}): Promise<Relay> {
  const r = await startRelay({
    upstreamUrl: proxyUrl, chainId: stack.env.chainId, contract: stack.env.address, dbPath: path.join(dir, db),
    logLevel: 'silent', limits: { rateLimit: false }, ...over,
  });
  relays.push(r);
  return r;
}

const randomDevice = () => new Uint8Array(randomBytes(20));
const hex = (b: Uint8Array) => `0x${Buffer.from(b).toString('hex')}` as Address;
let seqN = 1n;
const envelope = (device: Uint8Array) => encodeEnvelope({ device, epoch: 1n, seq: seqN++, nonce: new Uint8Array(randomBytes(24)), ciphertext: new Uint8Array(randomBytes(60)) });
const post = (r: Relay, body: Uint8Array) => request(`${r.url}/v1/readings`, 'POST', body, { 'content-type': 'application/cbor' });
async function flood(r: Relay, n: number, device: () => Uint8Array): Promise<Map<number, number>> {
  const statuses = new Map<number, number>();
  for (let i = 0; i < n; i += 25) {
    const batch = await Promise.all(Array.from({ length: Math.min(25, n - i) }, () => post(r, envelope(device()))));
    for (const b of batch) statuses.set(b.status, (statuses.get(b.status) ?? 0) + 1);
  }
  return statuses;
}
async function held(r: Relay): Promise<number> {
  let n = 0;
  let after = '0';
  for (;;) {
    const page = (await request(`${r.url}/v1/readings?after=${after}&limit=1000`, 'GET')).json;
    n += page.envelopes.length;
    if (page.envelopes.length === 0) return n;
    after = page.next;
  }
}

test('channel check on by default: a junk flood for random devices stores nothing and costs no upstream call per envelope; enrolled devices pass', async () => {
  const genuine = randomDevice();
  await stack.pair(hex(genuine));
  // A long refresh: once the index is built, nothing but the tail timer may call upstream.
  const r = await relay('flood.db', { requireChannel: { fromBlock: stack.env.deployBlock, refreshMs: 3_600_000, tailMs: 3_600_000 } });
  expect((await post(r, envelope(genuine))).status).toBe(202); // waits for the first scan
  const before = calls.length;
  const N = 2000;
  const statuses = await flood(r, N, randomDevice);
  expect(Object.fromEntries(statuses)).toEqual({ 403: N });
  expect(calls.length - before).toBe(0); // the former check made one full-range eth_getLogs per new address here
  expect(await held(r)).toBe(1);
  expect((await post(r, envelope(genuine))).status).toBe(202);
  expect(await held(r)).toBe(2);
});

test('a device enrolled after the relay started passes at once (a shared tail scan); the index survives a restart without upstream', async () => {
  // refreshMs 0: an unknown device always gets a fresh (shared) scan; the default 2 s bounds how often junk can ask.
  const r = await relay('late.db', { requireChannel: { fromBlock: stack.env.deployBlock, refreshMs: 0 } });
  const early = randomDevice();
  await stack.pair(hex(early));
  expect((await post(r, envelope(early))).status).toBe(202);
  const late = randomDevice();
  await stack.pair(hex(late));
  // Unknown at first sight: one tail scan (eth_blockNumber + eth_getLogs of the new blocks), shared by concurrent posts.
  const before = calls.length;
  const answers = await Promise.all([post(r, envelope(late)), post(r, envelope(late)), post(r, envelope(late))]);
  expect(answers.map((a) => a.status)).toEqual([202, 202, 202]);
  expect(calls.slice(before).filter((m) => m === 'eth_getLogs').length).toBeLessThanOrEqual(2);
  await r.stop();
  // Restart with the upstream gone: enrolled devices are known from the file; an unknown one cannot be checked (503, retried).
  proxyUp = false;
  try {
    const r2 = await relay('late.db', { requireChannel: { fromBlock: stack.env.deployBlock } });
    expect((await post(r2, envelope(late))).status).toBe(202);
    expect((await post(r2, envelope(early))).status).toBe(202);
    expect((await post(r2, envelope(randomDevice()))).status).toBe(503);
  } finally {
    proxyUp = true;
  }
});

test('per-device cap: junk under a genuine address is refused (507) beyond it, nothing evicted; other devices unaffected', async () => {
  const a = randomDevice();
  const b = randomDevice();
  await stack.pair(hex(a));
  await stack.pair(hex(b));
  const r = await relay('cap.db', { requireChannel: { fromBlock: stack.env.deployBlock }, retention: { maxPerDevice: 30 } });
  const first = envelope(a);
  expect((await post(r, first)).status).toBe(202);
  const s = await flood(r, 100, () => a);
  expect(Object.fromEntries(s)).toEqual({ 202: 29, 507: 71 });
  const refused = await post(r, envelope(a));
  expect(refused.status).toBe(507);
  expect(refused.json).toMatchObject({ error: 'device-full' });
  expect((await post(r, first)).status).toBe(200); // the first one is still held: refused, not evicted
  expect((await post(r, envelope(b))).status).toBe(202);
  expect(await held(r)).toBe(31);
});

test('store: age retention deletes; a total cap refuses; the file stays bounded over flood/prune cycles', () => {
  let now = 1_000_000_000_000;
  const file = path.join(dir, 'age.db');
  const store = new EnvelopeStore(file, { maxAgeSec: 3600, maxPerDevice: 0, maxRows: 600 }, () => now);
  const sizes: number[] = [];
  for (let cycle = 0; cycle < 4; cycle++) {
    let stored = 0;
    let full = 0;
    for (let i = 0; i < 800; i++) {
      const d = randomDevice();
      const r = store.put(envelope(d), { device: d, epoch: 1n, seq: 1n }, 4);
      if (r.kind === 'stored') stored++;
      else if (r.kind === 'store-full') full++;
    }
    expect([stored, full]).toEqual([600, 200]);
    expect(store.count()).toBe(600);
    now += 3600_000 + 1;
    expect(store.prune()).toBe(600);
    expect(store.count()).toBe(0);
    sizes.push(store.fileBytes());
  }
  // The file does not grow from cycle to cycle: freed pages are reused (and given back).
  expect(Math.max(...sizes.slice(1))).toBeLessThanOrEqual(sizes[0] * 1.1 + 65536);
  // Rows younger than the age stay; cursors keep increasing after deletes.
  const d = randomDevice();
  const kept = store.put(envelope(d), { device: d, epoch: 1n, seq: 2n }, 4);
  now += 1000;
  expect(store.prune()).toBe(0);
  expect(store.page(0n, 10).map((e) => e.id)).toEqual([(kept as { id: bigint }).id]);
  expect((kept as { id: bigint }).id).toBeGreaterThan(2400n);
  expect(store.countFor(d)).toBe(1);
  store.close();
  // Reopened, the counts agree with the rows.
  const again = new EnvelopeStore(file, { maxRows: 600 }, () => now);
  expect(again.count()).toBe(1);
  again.close();
});
