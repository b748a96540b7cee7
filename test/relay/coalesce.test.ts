// Upstream coalescing (hosts/relay/upstream.ts Coalescer): calls from different clients that
// arrive in one event-loop turn travel upstream as one JSON-RPC batch, and each client still
// gets exactly the answer to its own call, with its own id. Whether requests on different
// sockets land in one turn depends on scheduling, so the grouping itself is tested on the
// Coalescer with a stub upstream; end to end, a fake upstream echoes each call's params back
// (answers reversed, so order cannot carry the mapping) and records every exchange.
import '../helpers/node-random.js';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRelay, type Relay } from '../../hosts/relay/server.js';
import type { RelayOptions } from '../../hosts/relay/config.js';
import { Coalescer, UpstreamError, type Upstream } from '../../hosts/relay/upstream.js';
import { postJson } from './helpers.js';
import { RpcProxy } from '../../hosts/relay/rpc.js';
import { privateKeyToAccount } from 'viem/accounts';

const CONTRACT = '0x5fbdb2315678afecb367f032d93f642f64180aa3';
const tmp = mkdtempSync(join(tmpdir(), 'relay-coalesce-'));
let n = 0;

/** What the fake upstream saw: one entry per HTTP exchange, the methods in it. */
let exchanges: string[][] = [];
let mode: 'echo' | 'drop-one' | 'status' = 'echo';
let fake: http.Server;
let upstreamUrl: string;
const relays: Relay[] = [];
async function relay(over: Partial<RelayOptions['limits']> = {}): Promise<Relay> {
  const r = await startRelay({ upstreamUrl, chainId: 31337, contract: CONTRACT, dbPath: join(tmp, `${n++}.db`), logLevel: 'silent', requireChannel: false, limits: { rateLimit: false, ...over } });
  relays.push(r);
  return r;
}

beforeAll(async () => {
  fake = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      const calls: any[] = Array.isArray(body) ? body : [body];
      exchanges.push(calls.map((c) => c.method));
      if (mode === 'status') return void res.writeHead(503).end('busy');
      let answers = calls.map((c) => ({ jsonrpc: '2.0', id: c.id, result: `${c.method}:${JSON.stringify(c.params)}` }));
      if (mode === 'drop-one') {
        // One call unanswered, another answered twice (the first answer counts), plus an answer for an id nobody sent.
        const victim = calls.findIndex((c) => c.params[0] === '0x00000000000000000000000000000000000000d0');
        answers = answers.filter((_, i) => i !== victim);
        answers.reverse();
        answers.push({ ...answers[0], result: 'second answer' }, { jsonrpc: '2.0', id: 999, result: 'stray' });
      } else answers.reverse();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(Array.isArray(body) ? answers : answers[0]));
    });
  });
  await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
  upstreamUrl = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
});
afterAll(async () => {
  for (const r of relays) await r.stop();
  fake.closeAllConnections();
  await new Promise((r) => fake.close(r));
});
beforeEach(() => {
  exchanges = [];
  mode = 'echo';
});

const addr = (i: number) => `0x${i.toString(16).padStart(40, '0')}`;
/** `count` concurrent single calls, each from its own connection, all with caller id 7. */
const burst = (r: Relay, count: number, method = 'eth_getBalance', params: (i: number) => unknown[] = (i) => [addr(i), 'latest']) =>
  Promise.all(Array.from({ length: count }, (_, i) => postJson(`${r.url}/rpc`, { jsonrpc: '2.0', id: 7, method, params: params(i) })));

test('concurrent calls from many clients: each caller gets its own answer and id', async () => {
  const r = await relay();
  const answers = await burst(r, 60);
  answers.forEach((a, i) => {
    expect(a.status).toBe(200);
    expect(a.json).toEqual({ jsonrpc: '2.0', id: 7, result: `eth_getBalance:${JSON.stringify([addr(i), 'latest'])}` });
  });
  expect(exchanges.flat()).toHaveLength(60);
  expect(Math.max(...exchanges.map((e) => e.length))).toBeLessThanOrEqual(20);
});

describe('Coalescer (unit, a stub upstream)', () => {
  const stub = (answer: (payload: any) => unknown) => {
    const sent: any[] = [];
    const up = { call: async (p: unknown) => { sent.push(p); return answer(p); } } as unknown as Upstream;
    return { sent, up };
  };
  const echo = (p: any) => (Array.isArray(p) ? p : [p]).map((c: any) => ({ jsonrpc: '2.0', id: c.id, result: c.params[0] })).reverse();
  const calls = (tag: string, k: number) => Array.from({ length: k }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'eth_getBalance', params: [`${tag}${i}`] }));

  test('calls made in one turn share one exchange (ids rewritten), each caller gets its own answers back', async () => {
    const { sent, up } = stub((p) => { const a = echo(p); return Array.isArray(p) ? a : a[0]; });
    const c = new Coalescer(up, 20);
    const [a, b, d] = await Promise.all([c.call(calls('a', 3)), c.call(calls('b', 1)), c.call(calls('d', 2))]);
    expect(sent).toHaveLength(1);
    expect(sent[0].map((x: any) => x.id)).toEqual([0, 1, 2, 3, 4, 5]);
    const byId = (xs: unknown[]) => Object.fromEntries((xs as any[]).map((x) => [x.id, x.result]));
    expect(byId(a)).toEqual({ 0: 'a0', 1: 'a1', 2: 'a2' });
    expect(byId(b)).toEqual({ 0: 'b0' });
    expect(byId(d)).toEqual({ 0: 'd0', 1: 'd1' });
  });

  test('over maxCalls in one turn: split into exchanges of at most maxCalls; `alone` and full groups go by themselves', async () => {
    const { sent, up } = stub(echo);
    const c = new Coalescer(up, 5);
    await Promise.all([c.call(calls('a', 3)), c.call(calls('b', 3)), c.call(calls('c', 1), true), c.call(calls('d', 5))]);
    expect(sent.map((p) => (Array.isArray(p) ? p.length : 1)).sort()).toEqual([1, 3, 3, 5]);
  });

  test('missing, duplicated and stray answers: nobody gets another caller\'s answer, a duplicate is dropped', async () => {
    const { up } = stub((p: any[]) => {
      const a = echo(p).filter((x: any) => x.result !== 'b0');
      return [...a, { jsonrpc: '2.0', id: 0, result: 'forged' }, { jsonrpc: '2.0', id: 99, result: 'stray' }, { jsonrpc: '2.0', id: '1', result: 'text id' }];
    });
    const c = new Coalescer(up, 20);
    const [a, b] = await Promise.all([c.call(calls('a', 2)), c.call(calls('b', 1))]);
    expect((a as any[]).map((x) => x.result).sort()).toEqual(['a0', 'a1']);
    expect(b).toEqual([]); // the RPC layer turns a missing answer into -32000 "no answer"
  });

  test('a shared batch refused as a whole (one object back): each caller retried alone, a refusal stays its own', async () => {
    const { sent, up } = stub((p: any) => {
      if (Array.isArray(p) && p.length > 2) return { jsonrpc: '2.0', id: null, error: { code: -32600, message: 'batch too large' } };
      return echo(p);
    });
    const c = new Coalescer(up, 20);
    const [a, b] = await Promise.all([c.call(calls('a', 2)), c.call(calls('b', 1))]);
    expect(sent.map((p) => (Array.isArray(p) ? p.length : 1))).toEqual([3, 2, 1]);
    expect((a as any[]).map((x) => x.result).sort()).toEqual(['a0', 'a1']);
    expect((b as any[]).map((x) => x.result)).toEqual(['b0']);
  });

  test('an upstream failure rejects every caller of that exchange', async () => {
    const { up } = stub(() => { throw new UpstreamError('unreachable', 'down'); });
    const c = new Coalescer(up, 20);
    const r = await Promise.allSettled([c.call(calls('a', 1)), c.call(calls('b', 2))]);
    expect(r.map((x) => x.status)).toEqual(['rejected', 'rejected']);
  });
});

test('a client batch keeps its order and ids when coalesced with others', async () => {
  const r = await relay();
  const batch = [0, 1, 2].map((i) => ({ jsonrpc: '2.0', id: `b${i}`, method: 'eth_getBalance', params: [addr(100 + i), 'latest'] }));
  const [mine, ...others] = await Promise.all([postJson(`${r.url}/rpc`, batch), ...Array.from({ length: 10 }, (_, i) => postJson(`${r.url}/rpc`, { jsonrpc: '2.0', id: i, method: 'eth_chainId', params: [] }))]);
  expect(mine.json).toEqual(batch.map((c) => ({ jsonrpc: '2.0', id: c.id, result: `eth_getBalance:${JSON.stringify(c.params)}` })));
  others.forEach((o, i) => expect(o.json).toEqual({ jsonrpc: '2.0', id: i, result: 'eth_chainId:[]' }));
});

test('eth_getLogs always travels alone (its answers can be large)', async () => {
  const r = await relay();
  const filter = (i: number) => [{ address: CONTRACT, fromBlock: `0x${i.toString(16)}` }];
  const [logs, bal] = await Promise.all([burst(r, 10, 'eth_getLogs', filter), burst(r, 10)]);
  logs.forEach((a, i) => expect(a.json.result).toBe(`eth_getLogs:${JSON.stringify(filter(i))}`));
  bal.forEach((a) => expect(a.json.result).toMatch(/^eth_getBalance:/));
  for (const e of exchanges) if (e.includes('eth_getLogs')) expect(e).toEqual(['eth_getLogs']);
});

test('eth_sendRawTransaction always travels alone (a shared exchange may be retried caller by caller: never a transaction twice)', async () => {
  const acct = privateKeyToAccount(`0x${'42'.repeat(32)}`);
  const raw = await acct.signTransaction({
    type: 'eip1559', chainId: 31337, nonce: 0, to: CONTRACT, data: '0x', gas: 100_000n, maxFeePerGas: 10_000_000_000n, maxPriorityFeePerGas: 1n,
  });
  const asked: Array<{ methods: string[]; alone: boolean }> = [];
  const stub = { call: async (calls: any[], alone = false) => { asked.push({ methods: calls.map((c) => c.method), alone }); return calls.map((c) => ({ jsonrpc: '2.0', id: c.id, result: '0x1' })); } };
  const proxy = new RpcProxy({ chainId: 31337n, contract: CONTRACT }, stub, { onCall: () => {}, onUpstreamFailure: () => {} });
  await proxy.run(false, [{ jsonrpc: '2.0', id: 1, method: 'eth_sendRawTransaction', params: [raw] }]);
  await proxy.run(true, [{ jsonrpc: '2.0', id: 1, method: 'eth_chainId' }, { jsonrpc: '2.0', id: 2, method: 'eth_sendRawTransaction', params: [raw] }]);
  await proxy.run(false, [{ jsonrpc: '2.0', id: 1, method: 'eth_chainId' }]);
  expect(asked).toEqual([
    { methods: ['eth_sendRawTransaction'], alone: true },
    { methods: ['eth_chainId', 'eth_sendRawTransaction'], alone: true },
    { methods: ['eth_chainId'], alone: false },
  ]);
});

test('a missing, duplicated or stray answer to a batch is never passed off as another call\'s', async () => {
  const r = await relay();
  mode = 'drop-one';
  const batch = [0xce, 0xcf, 0xd0, 0xd1].map((i) => ({ jsonrpc: '2.0', id: i, method: 'eth_getBalance', params: [addr(i), 'latest'] }));
  const a = (await postJson(`${r.url}/rpc`, batch)).json;
  expect(a).toEqual(batch.map((c) => c.id === 0xd0
    ? { jsonrpc: '2.0', id: c.id, error: { code: -32000, message: 'upstream gave no answer for this call' } }
    : { jsonrpc: '2.0', id: c.id, result: `eth_getBalance:${JSON.stringify(c.params)}` }));
});

test('an upstream failure fails every call of its exchange with -32000, and nothing else', async () => {
  const r = await relay();
  mode = 'status';
  const answers = await burst(r, 30);
  for (const a of answers) expect(a.json).toEqual({ jsonrpc: '2.0', id: 7, error: { code: -32000, message: 'upstream answered HTTP 503', data: { reason: 'http-status' } } });
  mode = 'echo';
  expect((await burst(r, 1))[0].json.result).toMatch(/^eth_getBalance:/);
});

test('upstreamBatch 1 turns coalescing off: one exchange per call, never a batch', async () => {
  const r = await relay({ upstreamBatch: 1 });
  await burst(r, 30);
  expect(exchanges).toHaveLength(30);
  expect(exchanges.every((e) => e.length === 1)).toBe(true);
});
