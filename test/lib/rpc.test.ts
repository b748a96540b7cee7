import { RpcClient, RpcError } from '../../lib/rpc.js';
import { IotkxError } from '../../lib/errors.js';
import { MAX_RESPONSE_BYTES, type HttpResponse, type Transport } from '../../lib/platform.js';

/** A fake relay: records each request, answers with `reply(request)` (a JSON value, or a raw HttpResponse). */
function fake(reply: (req: any) => unknown): Transport & { requests: any[] } {
  const requests: any[] = [];
  return {
    requests,
    async request(method, url, body, contentType) {
      expect(method).toBe('POST');
      expect(url).toBe('http://relay/rpc');
      expect(contentType).toBe('application/json');
      const req = JSON.parse(Buffer.from(body!).toString('utf8'));
      requests.push(req);
      const r = reply(req);
      if (r && typeof r === 'object' && 'status' in (r as any) && (r as any).body instanceof Uint8Array) return r as HttpResponse;
      return { status: 200, body: new Uint8Array(Buffer.from(JSON.stringify(r), 'utf8')) };
    },
  };
}
const ok = (result: unknown) => (req: any) => ({ jsonrpc: '2.0', id: req.id, result });
const client = (reply: (req: any) => unknown) => { const t = fake(reply); return { t, c: new RpcClient(t, 'http://relay/rpc') }; };
const ADDR = Uint8Array.from({ length: 20 }, (_, i) => i + 0xa0);

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try { await p; } catch (e) { return e instanceof IotkxError ? e.code : `not-iotkx: ${e}`; }
  return undefined;
}

test('requests are JSON-RPC 2.0 with increasing ids and the expected params', async () => {
  const { t, c } = client(ok('0x7a69'));
  expect(await c.chainId()).toBe(31337n);
  expect(await c.getTransactionCount(ADDR, 'latest')).toBe(31337n);
  await c.getBalance(ADDR);
  await c.estimateGas({ from: ADDR, to: ADDR, data: new Uint8Array([1, 2]), value: 0n });
  expect(t.requests[0]).toEqual({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] });
  expect(t.requests[1]).toEqual({ jsonrpc: '2.0', id: 2, method: 'eth_getTransactionCount', params: ['0xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3', 'latest'] });
  expect(t.requests[2].params).toEqual(['0xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3', 'latest']);
  expect(t.requests[3].params).toEqual([{ to: '0xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3', from: '0xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3', data: '0x0102', value: '0x0' }]);
});

test('quantities are parsed strictly', async () => {
  for (const good of [['0x0', 0n], ['0x1', 1n], ['0xff', 255n], ['0x' + 'f'.repeat(64), (1n << 256n) - 1n]] as const) {
    expect(await client(ok(good[0])).c.blockNumber()).toBe(good[1]);
  }
  for (const bad of ['0x', '0x01', '1', 'ff', '0x' + '1'.repeat(65), '0xg', 12, null, '0x-1', ' 0x1']) {
    expect(await code(client(ok(bad)).c.gasPrice())).toBe('bad-response');
  }
});

test('receipts, logs, blocks, fee history, call and sendRawTransaction', async () => {
  const log = {
    address: '0x' + 'ab'.repeat(20), topics: ['0x' + '11'.repeat(32), '0x' + '00'.repeat(12) + 'cd'.repeat(20)],
    data: '0x1234', blockNumber: '0x10', transactionHash: '0x' + '22'.repeat(32), logIndex: '0x0',
  };
  const { c, t } = client((req) => {
    const results: Record<string, unknown> = {
      eth_getTransactionReceipt: req.params[0] === '0x' + '00'.repeat(32) ? null : { status: '0x1', blockNumber: '0x10', logs: [log], gasUsed: '0x5208' },
      eth_getLogs: [log, { ...log, blockNumber: null, transactionHash: null, logIndex: null }],
      eth_getBlockByNumber: { number: '0x10', baseFeePerGas: '0x3b9aca00', hash: '0x' + '33'.repeat(32) },
      eth_feeHistory: { oldestBlock: '0xa', baseFeePerGas: ['0x1', '0x2'], gasUsedRatio: [0.5], reward: [['0x3']] },
      eth_call: '0x' + '00'.repeat(31) + '01',
      eth_sendRawTransaction: '0x' + '44'.repeat(32),
      eth_maxPriorityFeePerGas: '0x59682f00',
    };
    return { jsonrpc: '2.0', id: req.id, result: results[req.method] };
  });
  const r = await c.getTransactionReceipt(new Uint8Array(32).fill(1));
  expect(r!.status).toBe(1);
  expect(r!.blockNumber).toBe(16n);
  expect(r!.logs[0].topics[1].slice(12)).toEqual(new Uint8Array(20).fill(0xcd));
  expect(r!.logs[0].data).toEqual(new Uint8Array([0x12, 0x34]));
  expect(await c.getTransactionReceipt(new Uint8Array(32))).toBeNull();
  const logs = await c.getLogs({ address: ADDR, topics: [new Uint8Array(32).fill(0x11), null, new Uint8Array(32)], fromBlock: 5n, toBlock: 'latest' });
  expect(logs).toHaveLength(2);
  expect(logs[1].blockNumber).toBeNull();
  expect(t.requests.at(-1).params[0]).toEqual({
    address: '0xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3', topics: ['0x' + '11'.repeat(32), null, '0x' + '00'.repeat(32)], fromBlock: '0x5', toBlock: 'latest',
  });
  expect(await c.getBlockByNumber('latest')).toEqual({ number: 16n, baseFeePerGas: 1_000_000_000n });
  expect(await c.feeHistory(1, 'latest', [50])).toEqual({ oldestBlock: 10n, baseFeePerGas: [1n, 2n], gasUsedRatio: [0.5], reward: [[3n]] });
  expect(t.requests.at(-1).params).toEqual(['0x1', 'latest', [50]]);
  expect((await c.call({ to: ADDR, data: new Uint8Array([1]) }))[31]).toBe(1);
  expect(await c.sendRawTransaction(new Uint8Array([2, 0xc0]))).toEqual(new Uint8Array(32).fill(0x44));
  expect(t.requests.at(-1).params).toEqual(['0x02c0']);
  expect(await c.maxPriorityFeePerGas()).toBe(1_500_000_000n);
});

test('malformed structures are bad-response', async () => {
  const bad = [
    ['eth_getTransactionReceipt', { status: '0x2', blockNumber: '0x1', logs: [] }],
    ['eth_getTransactionReceipt', { status: '0x1', blockNumber: '0x1', logs: [{ address: '0x12', topics: [], data: '0x' }] }],
    ['eth_getTransactionReceipt', { status: '0x1', blockNumber: '0x1', logs: [{ address: '0x' + 'ab'.repeat(20), topics: ['0x12'], data: '0x' }] }],
    ['eth_getTransactionReceipt', { status: '0x1', blockNumber: '0x1', logs: [{ address: '0x' + 'ab'.repeat(20), topics: [], data: '0x123' }] }],
    ['eth_getTransactionReceipt', { status: '0x1', blockNumber: '0x1' }],
    ['eth_getTransactionReceipt', []],
    ['eth_sendRawTransaction', '0x1234'],
    ['eth_call', '0xabc'],
    ['eth_feeHistory', { oldestBlock: '0x1', baseFeePerGas: ['0x1'], gasUsedRatio: [1.5] }],
  ] as const;
  for (const [method, result] of bad) {
    const { c } = client(ok(result));
    const p = method === 'eth_getTransactionReceipt' ? c.getTransactionReceipt(new Uint8Array(32).fill(1))
      : method === 'eth_sendRawTransaction' ? c.sendRawTransaction(new Uint8Array([1]))
      : method === 'eth_call' ? c.call({ to: ADDR }) : c.feeHistory(1);
    expect(await code(p)).toBe('bad-response');
  }
});

test('JSON-RPC errors become RpcError with code, message and data', async () => {
  const { c } = client((req) => ({ jsonrpc: '2.0', id: req.id, error: { code: 3, message: 'execution reverted', data: '0xea8e4eb5' } }));
  const e = await c.call({ to: ADDR }).catch((x) => x);
  expect(e).toBeInstanceOf(RpcError);
  expect(e).toBeInstanceOf(IotkxError);
  expect(e.code).toBe('rpc-error');
  expect(e.rpcCode).toBe(3);
  expect(e.rpcMessage).toBe('execution reverted');
  expect(e.data).toBe('0xea8e4eb5');
  expect(await code(client((req) => ({ jsonrpc: '2.0', id: req.id, error: { code: 'x', message: 'm' } })).c.chainId())).toBe('bad-response');
});

test('transport-level failures: HTTP status, size cap, bad JSON, wrong id / version', async () => {
  const raw = (status: number, text: string) => () => ({ status, body: new Uint8Array(Buffer.from(text, 'utf8')) });
  expect(await code(client(raw(500, '{"error":"x"}')).c.chainId())).toBe('http-error');
  expect(await code(client(raw(413, '')).c.chainId())).toBe('http-error');
  // Over 8 KiB: refused before parsing (the body here is not even JSON), whatever the status.
  expect(await code(client(raw(200, 'x'.repeat(MAX_RESPONSE_BYTES + 1))).c.chainId())).toBe('response-too-large');
  expect(await code(client(raw(500, 'x'.repeat(MAX_RESPONSE_BYTES + 1))).c.chainId())).toBe('response-too-large');
  // Exactly 8 KiB is allowed.
  const pad = (req: any) => { const base = JSON.stringify({ jsonrpc: '2.0', id: req.id, result: '0x1' }); return raw(200, base.slice(0, -1) + ' '.repeat(MAX_RESPONSE_BYTES - base.length) + '}')(); };
  expect(await client(pad).c.chainId()).toBe(1n);
  for (const text of ['', 'not json', '[]', 'null', '"0x1"', '\xff']) expect(await code(client(raw(200, text)).c.chainId())).toBe('bad-response');
  expect(await code(client(() => ({ status: 200, body: new Uint8Array([0xc3, 0x28]) })).c.chainId())).toBe('bad-response');
  expect(await code(client((req) => ({ jsonrpc: '2.0', id: req.id + 1, result: '0x1' })).c.chainId())).toBe('bad-response');
  expect(await code(client((req) => ({ jsonrpc: '1.0', id: req.id, result: '0x1' })).c.chainId())).toBe('bad-response');
  expect(await code(client((req) => ({ id: req.id, result: '0x1' })).c.chainId())).toBe('bad-response');
  expect(await code(client((req) => ({ jsonrpc: '2.0', id: String(req.id), result: '0x1' })).c.chainId())).toBe('bad-response');
  expect(await code(client((req) => ({ jsonrpc: '2.0', id: req.id })).c.chainId())).toBe('bad-response');
  expect(await code(client((req) => ({ jsonrpc: '2.0', id: req.id, result: '0x1', error: { code: 1, message: 'm' } })).c.chainId())).toBe('bad-response');
  const throwing: Transport = { request: async () => { throw new Error('ECONNREFUSED'); } };
  expect(await code(new RpcClient(throwing, 'u').chainId())).toBe('transport-error');
});
