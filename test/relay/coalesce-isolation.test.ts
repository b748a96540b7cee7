// Issue 15 item 15: calls from different clients that the relay coalesces into one upstream batch must not
// fail each other. One client asks for an answer over the relay's upstream response cap; the others in the
// same batch still get their own correct answers, and only that client gets the too-large error.
// Against a real anvil: the Coalescer directly (so the calls are in one batch for sure), then over HTTP.
import '../helpers/node-random.js';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAnvil, type Anvil } from '../../hosts/chain/anvil.js';
import { startRelay, type Relay } from '../../hosts/relay/server.js';
import { Coalescer, Upstream, UpstreamError } from '../../hosts/relay/upstream.js';
import { call, postJson } from './helpers.js';
import { holdOpen, parseResponse } from '../servers/raw.js';

jest.setTimeout(120_000);
const CONTRACT = '0x5fbdb2315678afecb367f032d93f642f64180aa3';
/** The genesis block with its 256-byte bloom is over this; eth_chainId and eth_blockNumber answers are far below. */
const CAP = 700;
let anvil: Anvil;
let relay: Relay;
/** A transparent forwarder in front of anvil that records the relay's upstream exchanges. */
let counter: http.Server;
/** The methods in each exchange the relay made upstream. */
const seen: string[][] = [];
const upstreams: Upstream[] = [];

beforeAll(async () => {
  anvil = await startAnvil();
  counter = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      seen.push((Array.isArray(body) ? body : [body]).map((c: { method: string }) => c.method));
      const out = http.request(anvil.rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' } }, (up) => {
        res.writeHead(up.statusCode!, { 'content-type': 'application/json' });
        up.pipe(res);
      });
      out.on('error', () => res.destroy());
      out.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((r) => counter.listen(0, '127.0.0.1', r));
  relay = await startRelay({
    upstreamUrl: `http://127.0.0.1:${(counter.address() as AddressInfo).port}`, chainId: anvil.chainId, contract: CONTRACT, logLevel: 'silent',
    dbPath: join(mkdtempSync(join(tmpdir(), 'relay-isolation-')), 'r.db'),
    limits: { rateLimit: false, maxUpstreamResponseBytes: CAP },
  });
});
afterAll(async () => {
  for (const u of upstreams) u.close();
  await relay?.stop();
  counter?.closeAllConnections();
  await new Promise((r) => counter?.close(r));
  await anvil?.stop();
});

const bigCall = (id: number) => ({ jsonrpc: '2.0', id, method: 'eth_getBlockByNumber', params: ['0x0', true] });
const smallCall = (id: number, method = 'eth_chainId') => ({ jsonrpc: '2.0', id, method, params: [] });

test('the calls really are over / under the cap on their own (anvil, no relay)', async () => {
  const block = await postJson(anvil.rpcUrl, bigCall(1));
  expect(Buffer.byteLength(block.text)).toBeGreaterThan(CAP);
  expect(Buffer.byteLength((await postJson(anvil.rpcUrl, [smallCall(1), smallCall(2, 'eth_blockNumber')])).text)).toBeLessThan(CAP);
});

test('Coalescer: one caller over the cap in a shared batch fails alone; the others get their answers', async () => {
  const up = new Upstream(anvil.rpcUrl, { timeoutMs: 10_000, maxResponseBytes: CAP, sockets: 4 });
  upstreams.push(up);
  const c = new Coalescer(up, 20);
  // Same turn: one upstream batch (as the coalescing tests show for a stub upstream).
  const [a, big, b] = await Promise.allSettled([c.call([smallCall(0)]), c.call([bigCall(0)]), c.call([smallCall(0, 'eth_blockNumber'), smallCall(1)])]);
  expect(a).toEqual({ status: 'fulfilled', value: [{ jsonrpc: '2.0', id: 0, result: '0x7a69' }] });
  expect(big.status).toBe('rejected');
  expect((big as PromiseRejectedResult).reason).toBeInstanceOf(UpstreamError);
  expect((big as PromiseRejectedResult).reason.kind).toBe('too-large');
  expect(b.status).toBe('fulfilled');
  const answers = new Map(((b as PromiseFulfilledResult<any[]>).value).map((x) => [x.id, x.result]));
  expect(answers.get(1)).toBe('0x7a69');
  expect(answers.get(0)).toBe((await call(anvil.rpcUrl, 'eth_blockNumber')).result);
});

/** Open every connection first, then write every request in one go, so the relay reads them in one turn. */
async function together(bodies: unknown[]): Promise<any[]> {
  const port = Number(new URL(relay.url).port);
  const socks = await Promise.all(bodies.map(() => holdOpen(port)));
  // Let the relay accept every connection first: accepts spread over turns would spread the requests too.
  await new Promise((r) => setTimeout(r, 200));
  for (const [i, s] of socks.entries()) {
    const body = JSON.stringify(bodies[i]);
    s.sock.write(`POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }
  await Promise.all(socks.map((s) => s.closed));
  return socks.map((s) => {
    const r = parseResponse(s.received());
    expect(r?.status).toBe(200);
    return JSON.parse(r!.body);
  });
}

test('over HTTP: clients that share a batch with an over-cap call get their correct answers', async () => {
  for (let round = 0; round < 5; round++) {
    const [big, ...small] = await together([bigCall(99), ...Array.from({ length: 12 }, (_, i) => (i % 2 ? smallCall(i) : [smallCall(i), smallCall(100 + i, 'eth_blockNumber')]))]);
    expect(big).toEqual({ jsonrpc: '2.0', id: 99, error: { code: -32000, message: `upstream response over ${CAP} bytes`, data: { reason: 'too-large' } } });
    small.forEach((s, i) => {
      if (i % 2) expect(s).toEqual({ jsonrpc: '2.0', id: i, result: '0x7a69' });
      else {
        expect(s[0]).toEqual({ jsonrpc: '2.0', id: i, result: '0x7a69' });
        expect(s[1]).toMatchObject({ jsonrpc: '2.0', id: 100 + i, result: expect.stringMatching(/^0x[0-9a-f]+$/) });
      }
    });
  }
  // The test means something only if the over-cap call did share an upstream exchange with other clients' calls.
  expect(seen.some((e) => e.includes('eth_getBlockByNumber') && e.length > 1)).toBe(true);
});
