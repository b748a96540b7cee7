// The relay under hostile or failing conditions: rate limits, slow clients, a hung or dead
// upstream that comes back, and a storm of malformed requests after which it still serves.
import '../helpers/node-random.js';
import net from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRelay, type Relay } from '../../hosts/relay/server.js';
import type { RelayOptions } from '../../hosts/relay/config.js';
import { OTHER, PortAnvil, call, postJson, rawExchange, request } from './helpers.js';

const CONTRACT = '0x5fbdb2315678afecb367f032d93f642f64180aa3';
const tmp = mkdtempSync(join(tmpdir(), 'relay-hostile-'));
let dbN = 0;
const relays: Relay[] = [];
async function relayOn(upstreamUrl: string, over: Partial<RelayOptions> = {}): Promise<Relay> {
  const r = await startRelay({ upstreamUrl, chainId: 31337, contract: CONTRACT, dbPath: join(tmp, `${dbN++}.db`), logLevel: 'silent', requireChannel: false, ...over });
  relays.push(r);
  return r;
}

let anvil: PortAnvil;
beforeAll(async () => {
  anvil = await PortAnvil.create();
  await anvil.start();
});
afterAll(async () => {
  for (const r of relays) await r.stop();
  await anvil?.stop();
});

test('rate limit: over the bucket → HTTP 429 with JSON-RPC -32005 (/rpc) or {"error":"rate-limited"} (readings)', async () => {
  const relay = await relayOn(anvil.rpcUrl, { limits: { rateLimit: { ratePerSec: 1, burst: 5, maxClients: 100 } } });
  const rpc = `${relay.url}/rpc`;
  for (let i = 0; i < 5; i++) expect((await postJson(rpc, { jsonrpc: '2.0', id: i, method: 'eth_chainId' })).status).toBe(200);
  const over = await postJson(rpc, { jsonrpc: '2.0', id: 9, method: 'eth_chainId' });
  expect(over.status).toBe(429);
  expect(over.json).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32005, message: expect.any(String) } });
  expect(Number(over.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  const readings = await request(`${relay.url}/v1/readings`, 'GET');
  expect(readings.status).toBe(429);
  expect(readings.json).toEqual({ error: 'rate-limited', message: expect.any(String) });
  // A batch pays per call: after the bucket refills (5 s at 1/s) a batch of 6 is still too much.
  await new Promise((r) => setTimeout(r, 5100));
  const batch = Array.from({ length: 6 }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'eth_chainId' }));
  expect((await postJson(rpc, batch)).status).toBe(429);
}, 20_000);

describe('slow clients', () => {
  let relay: Relay;
  let port: number;
  beforeAll(async () => {
    relay = await relayOn(anvil.rpcUrl, { limits: { headersTimeoutMs: 400, requestTimeoutMs: 800 } });
    port = relay.port;
  });

  test('headers that never finish: 408 and the socket is closed', async () => {
    const r = await rawExchange(port, ['POST /rpc HTTP/1.1\r\nHost: x\r\n'], { waitMs: 5000 });
    expect(r.closed).toBe(true);
    expect(r.text).toMatch(/^HTTP\/1\.1 408/);
    expect(r.ms).toBeLessThan(3000);
  });

  test('a body trickled a byte at a time: cut at the request timeout', async () => {
    const head = 'POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n';
    const r = await rawExchange(port, [head, ...Array.from({ length: 200 }, () => ' ')], { gapMs: 50, waitMs: 8000 });
    expect(r.closed).toBe(true);
    expect(r.ms).toBeLessThan(4000);
    expect(r.text).toMatch(/^HTTP\/1\.1 408/);
  });

  test('the relay still serves after them', async () => {
    expect(BigInt((await call(`${relay.url}/rpc`, 'eth_chainId')).result)).toBe(31337n);
  });
});

test('upstream that accepts but never answers: -32000 after the configured timeout, no stack trace', async () => {
  const sockets: net.Socket[] = [];
  const hung = net.createServer((s) => void sockets.push(s));
  await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r));
  const relay = await relayOn(`http://127.0.0.1:${(hung.address() as net.AddressInfo).port}`, { limits: { upstreamTimeoutMs: 300, healthCacheMs: 0 } });
  const t0 = Date.now();
  const r = await call(`${relay.url}/rpc`, 'eth_blockNumber');
  expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  expect(r).toEqual({ jsonrpc: '2.0', id: expect.any(Number), error: { code: -32000, message: 'upstream did not answer within 300 ms', data: { reason: 'timeout' } } });
  expect((await request(`${relay.url}/healthz`, 'GET')).json).toEqual({ ok: true, upstream: false });
  for (const s of sockets) s.destroy();
  await new Promise((r) => hung.close(r));
});

test('upstream killed: clear JSON-RPC errors and healthz upstream false; restarted on the same port: recovers', async () => {
  const relay = await relayOn(anvil.rpcUrl, { limits: { healthCacheMs: 0, upstreamTimeoutMs: 2000 } });
  const rpc = `${relay.url}/rpc`;
  expect(BigInt((await call(rpc, 'eth_chainId')).result)).toBe(31337n);
  await anvil.stop();
  const single = await call(rpc, 'eth_blockNumber');
  expect(single.error).toEqual({ code: -32000, message: expect.stringMatching(/^upstream unreachable/), data: { reason: 'unreachable' } });
  const batch = await postJson(rpc, [{ jsonrpc: '2.0', id: 1, method: 'eth_chainId' }, { jsonrpc: '2.0', id: 2, method: 'eth_accounts' }]);
  expect(batch.json.map((a: any) => a.error.code)).toEqual([-32000, -32601]);
  expect(batch.text).not.toMatch(/at .*\.ts|stack/i);
  expect((await request(`${relay.url}/healthz`, 'GET')).json).toEqual({ ok: true, upstream: false });
  await anvil.start();
  expect(BigInt((await call(rpc, 'eth_chainId')).result)).toBe(31337n);
  expect((await request(`${relay.url}/healthz`, 'GET')).json).toEqual({ ok: true, upstream: true });
  const m = await request(`${relay.url}/metrics`, 'GET');
  expect(m.text).toMatch(/iotkx_relay_upstream_errors_total\{kind="unreachable"\} [1-9]/);
}, 30_000);

test('storm: 4000 mixed malformed requests (bounded concurrency, loopback) leave no trace, then a good request succeeds', async () => {
  const relay = await relayOn(anvil.rpcUrl, { limits: { rateLimit: false, headersTimeoutMs: 1000, requestTimeoutMs: 2000 } });
  const rpc = `${relay.url}/rpc`;
  const height = (await call(anvil.rpcUrl, 'eth_blockNumber')).result;
  const big = 'x'.repeat(70 * 1024);
  const kinds: Array<() => Promise<number>> = [
    async () => (await request(rpc, 'POST', '{"jsonrpc":"2.0",', { 'content-type': 'application/json' })).status,
    async () => (await request(rpc, 'POST', big, { 'content-type': 'application/json' })).status,
    async () => (await postJson(rpc, { jsonrpc: '2.0', id: 1, method: 'anvil_mine', params: ['0x10'] })).status,
    async () => (await postJson(rpc, { jsonrpc: '2.0', id: 1, method: 'eth_sendRawTransaction', params: ['0x02' + 'ff'.repeat(200)] })).status,
    async () => (await postJson(rpc, { jsonrpc: '2.0', id: 1, method: 'eth_call', params: [{ to: OTHER }] })).status,
    async () => (await postJson(rpc, Array.from({ length: 25 }, () => ({ jsonrpc: '2.0', id: 1, method: 'evm_mine' })))).status,
    async () => (await postJson(rpc, Array.from({ length: 20 }, () => 7))).status,
    async () => (await request(`${relay.url}/v1/readings`, 'POST', Buffer.from([0x86, 0x01, 0xff]), { 'content-type': 'application/cbor' })).status,
    async () => (await request(`${relay.url}/v1/readings`, 'POST', 'hello', { 'content-type': 'text/plain' })).status,
    async () => (await request(`${relay.url}/v1/readings`, 'POST', Buffer.alloc(5000), { 'content-type': 'application/cbor' })).status,
    async () => (await request(`${relay.url}/v1/readings?after=-1&limit=99999`, 'GET')).status,
    async () => (await request(`${relay.url}/%%%/../etc`, 'DELETE')).status,
    async () => (await rawExchange(relay.port, ['GARBAGE / HTTP/9.9\r\n\r\n'], { waitMs: 3000 })).text.slice(9, 12) as unknown as number,
    async () => (await rawExchange(relay.port, [`GET /healthz HTTP/1.1\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`], { waitMs: 3000 })).text.slice(9, 12) as unknown as number,
  ];
  const total = 4000;
  const statuses = new Map<string, number>();
  let next = 0;
  const t0 = Date.now();
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < total) {
      const i = next++;
      const s = String(await kinds[i % kinds.length]().catch((e) => `err:${e.code ?? e.message}`));
      statuses.set(s, (statuses.get(s) ?? 0) + 1);
    }
  }));
  const ms = Date.now() - t0;
  // Every request got an HTTP answer, and none was a 5xx.
  expect([...statuses.keys()].sort()).toEqual(['200', '400', '404', '413', '415', '431'].sort());
  expect(ms).toBeLessThan(60_000);
  // Nothing reached the chain, nothing was stored, and a good request succeeds.
  expect((await call(anvil.rpcUrl, 'eth_blockNumber')).result).toBe(height);
  expect((await request(`${relay.url}/v1/readings`, 'GET')).json).toEqual({ envelopes: [], next: '0' });
  expect(BigInt((await call(rpc, 'eth_chainId')).result)).toBe(31337n);
  const m = await request(`${relay.url}/metrics`, 'GET');
  expect(m.text).not.toMatch(/status="5\d\d"/);
}, 90_000);

describe('a misbehaving upstream', () => {
  let mode = 'ok';
  let fake: import('node:http').Server;
  let relay: Relay;
  beforeAll(async () => {
    const http = await import('node:http');
    fake = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (mode === 'status') return void res.writeHead(503).end('busy');
        if (mode === 'not-json') return void res.writeHead(200).end('<html>');
        if (mode === 'huge') return void res.writeHead(200).end(JSON.stringify({ jsonrpc: '2.0', id: 0, result: 'f'.repeat(2 * 1024 * 1024) }));
        if (mode === 'wrong-id') return void res.writeHead(200).end(JSON.stringify({ jsonrpc: '2.0', id: 12345, result: '0x1' }));
        if (mode === 'extra') return void res.writeHead(200).end(JSON.stringify({ jsonrpc: '2.0', id: 0, result: '0x7a69', injected: 'x', __proto__x: 1 }));
        res.writeHead(200).end(JSON.stringify({ jsonrpc: '2.0', id: 0, result: '0x7a69' }));
      });
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    relay = await relayOn(`http://127.0.0.1:${(fake.address() as net.AddressInfo).port}`);
  });
  afterAll(async () => {
    fake.closeAllConnections();
    await new Promise((r) => fake.close(r));
  });

  test.each([
    ['status', 'upstream answered HTTP 503', 'http-status'],
    ['not-json', 'upstream answered with invalid JSON', 'bad-response'],
    ['huge', 'upstream response over 1048576 bytes', 'too-large'],
  ])('%s → -32000 "%s"', async (m, message, reason) => {
    mode = m;
    const r = await call(`${relay.url}/rpc`, 'eth_chainId');
    expect(r.error).toEqual({ code: -32000, message, data: { reason } });
  });

  test('an answer for another id is not passed off as ours; unknown members are stripped', async () => {
    mode = 'wrong-id';
    expect((await call(`${relay.url}/rpc`, 'eth_chainId')).error.code).toBe(-32000);
    mode = 'extra';
    const r = await call(`${relay.url}/rpc`, 'eth_chainId');
    expect(Object.keys(r).sort()).toEqual(['id', 'jsonrpc', 'result']);
  });
});
