// Issue 16: a body over its limit is answered 413, and the client still writing its body reads that 413
// rather than EPIPE/ECONNRESET: the relay reads and discards the rest (up to maxDiscardBytes) before it closes.
// 1 MiB bodies to /rpc and /v1/readings, declared and chunked, many at once, while other clients use the relay.
import '../helpers/node-random.js';
import http from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRelay, type Relay } from '../../hosts/relay/server.js';
import { PortAnvil, call, request } from './helpers.js';
import { rawRequest } from '../servers/raw.js';

jest.setTimeout(180_000);
const CONTRACT = '0x5fbdb2315678afecb367f032d93f642f64180aa3';
const MiB = 1024 * 1024;
let anvil: PortAnvil;
let relay: Relay;

beforeAll(async () => {
  anvil = await PortAnvil.create();
  await anvil.start();
  relay = await startRelay({
    upstreamUrl: anvil.rpcUrl, chainId: 31337, contract: CONTRACT, logLevel: 'silent', limits: { rateLimit: false },
    dbPath: join(mkdtempSync(join(tmpdir(), 'relay-413-')), 'relay.db'),
  });
});
afterAll(async () => {
  await relay?.stop();
  await anvil?.stop();
});

/** POST `size` bytes in 64 KiB writes (as a client streaming its body does), declared or chunked. */
function post(path: string, contentType: string, size: number, chunked: boolean): Promise<{ status: number; json: any } | { error: string }> {
  return new Promise((resolve) => {
    const headers: Record<string, string> = { 'content-type': contentType };
    if (!chunked) headers['content-length'] = String(size);
    const req = http.request(`${relay.url}${path}`, { method: 'POST', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) }));
      res.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    const piece = Buffer.alloc(64 * 1024, 0x20);
    let sent = 0;
    const pump = () => {
      while (sent < size) {
        sent += piece.length;
        if (!req.write(piece)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

test('1 MiB to /rpc and /v1/readings, declared and chunked, 20 rounds under load: always the 413', async () => {
  let stop = false;
  let served = 0;
  // Other clients keep using the relay meanwhile.
  const load = Promise.all(Array.from({ length: 4 }, async (_, i) => {
    while (!stop) {
      if (i % 2) expect(BigInt((await call(`${relay.url}/rpc`, 'eth_chainId')).result)).toBe(31337n);
      else expect((await request(`${relay.url}/v1/readings`, 'GET')).status).toBe(200);
      served++;
    }
  }));
  const outcomes: Array<{ status: number; json: any } | { error: string }> = [];
  for (let round = 0; round < 20; round++) {
    const chunked = round % 2 === 1;
    const slowHead = `POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${MiB}\r\n\r\n`;
    const [slow, ...got] = await Promise.all([
      // A client that reads only after it has written everything, over a slowish link.
      rawRequest(relay.port, [slowHead, ...Array.from({ length: 16 }, () => Buffer.alloc(MiB / 16, 0x20))], { readAfterWrite: true, gapMs: 20, waitMs: 60_000 }),
      post('/rpc', 'application/json', MiB, chunked),
      post('/v1/readings', 'application/cbor', MiB, chunked),
      post('/rpc', 'application/json', MiB, !chunked),
      post('/v1/readings', 'application/cbor', MiB, !chunked),
    ]);
    outcomes.push(...got);
    expect([slow.status, slow.error]).toEqual([413, undefined]);
    expect(got[0]).toEqual({ status: 413, json: { jsonrpc: '2.0', id: null, error: { code: -32600, message: 'request body over 65536 bytes' } } });
    expect(got[1]).toEqual({ status: 413, json: { error: 'too-large', message: 'request body over 4096 bytes' } });
    expect(got[2]).toMatchObject({ status: 413 });
    expect(got[3]).toMatchObject({ status: 413 });
  }
  stop = true;
  await load;
  expect(outcomes.filter((o) => 'error' in o)).toEqual([]);
  expect(served).toBeGreaterThan(0);
  // Nothing was stored, and the relay serves on.
  expect((await request(`${relay.url}/v1/readings`, 'GET')).json).toEqual({ envelopes: [], next: '0' });
});

test('a slow client that reads only after writing its whole 1 MiB still reads the 413', async () => {
  const head = `POST /v1/readings HTTP/1.1\r\nHost: x\r\nContent-Type: application/cbor\r\nContent-Length: ${MiB}\r\n\r\n`;
  const body = Array.from({ length: 16 }, () => Buffer.alloc(MiB / 16));
  for (let i = 0; i < 5; i++) {
    // A slow link (16 writes 150 ms apart) and a client that reads only once it has sent everything, as
    // simple HTTP stacks do: if the relay stopped reading and reset the connection, the unread 413 is lost.
    const a = await rawRequest(relay.port, [head, ...body], { untilClose: true, readAfterWrite: true, gapMs: 150, waitMs: 30_000 });
    expect([a.status, a.error]).toEqual([413, undefined]);
    expect(a.closed).toBe(true);
  }
});

test('beyond maxDiscardBytes the relay stops reading and drops the connection', async () => {
  // 4 MiB by default: a body declared larger is refused at once (413, then closed), never read.
  const a = await rawRequest(relay.port, `POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${64 * MiB}\r\n\r\n`, { untilClose: true, waitMs: 30_000 });
  expect(a.status).toBe(413);
  expect(a.closed).toBe(true);
  // A chunked body that never ends: read up to the bound, then the connection is dropped.
  const chunk = Buffer.from(`10000\r\n${' '.repeat(0x10000)}\r\n`);
  const b = await rawRequest(relay.port, [`POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`, ...Array.from({ length: 200 }, () => chunk)], { untilClose: true, waitMs: 60_000 });
  expect(b.closed).toBe(true);
  expect(BigInt((await call(`${relay.url}/rpc`, 'eth_chainId')).result)).toBe(31337n);
});

test.each([
  ['an unknown path', 'POST /nope', 'application/json', 404],
  ['a method not allowed', 'PUT /rpc', 'application/json', 405],
  ['the wrong media type', 'POST /v1/readings', 'text/plain', 415],
])('a body nobody reads (%s) is answered, and an endless one is dropped at the discard bound', async (_name, line, type, status) => {
  const chunk = Buffer.from(`10000\r\n${' '.repeat(0x10000)}\r\n`);
  const head = `${line} HTTP/1.1\r\nHost: x\r\nContent-Type: ${type}\r\nTransfer-Encoding: chunked\r\n\r\n`;
  // 200 × 64 KiB = 12.5 MiB offered, 3 MiB/s at most: the relay must not read it all (4 MiB bound).
  const a = await rawRequest(relay.port, [head, ...Array.from({ length: 200 }, () => chunk)], { untilClose: true, gapMs: 20, waitMs: 60_000 });
  expect(a.status).toBe(status);
  expect(a.closed).toBe(true);
  // Dropped while the client was still sending: a few MiB past the bound at most (socket buffers), not 12.5.
  expect(a.written).toBeLessThan(100 * chunk.length);
});
