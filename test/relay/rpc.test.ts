// The relay's JSON-RPC proxy (PROTOCOL.md §8, §9) over real HTTP against a real anvil:
// every allowed method forwards, every refusal has its exact code and is never forwarded.
import '../helpers/node-random.js';
import { privateKeyToAccount } from 'viem/accounts';
import { encodeFunctionData, keccak256, type Hex } from 'viem';
import { startAnvil, type Anvil } from '../../hosts/chain/anvil.js';
import { connect, deployKeyExchange } from '../../hosts/chain/deploy.js';
import { loadArtifact } from '../../contracts/artifact.js';
import { startRelay, type Relay } from '../../hosts/relay/server.js';
import { OTHER, call, postJson, request, waitReceipt } from './helpers.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let anvil: Anvil;
let relay: Relay;
let rpcUrl: string;
let contract: Hex;
const tmp = mkdtempSync(join(tmpdir(), 'relay-rpc-'));
const { abi } = loadArtifact();
const ttlCall = encodeFunctionData({ abi, functionName: 'offerTtlBlocks' });

beforeAll(async () => {
  anvil = await startAnvil();
  const s = await connect(anvil.rpcUrl, anvil.accounts[0].privateKey);
  contract = (await deployKeyExchange(s, 50)).address; // EIP-55 mixed case: the relay compares case-insensitively
  relay = await startRelay({ upstreamUrl: anvil.rpcUrl, chainId: anvil.chainId, contract, dbPath: join(tmp, 'r.db'), logLevel: 'silent' });
  rpcUrl = `${relay.url}/rpc`;
});
afterAll(async () => {
  await relay?.stop();
  await anvil?.stop();
});

const signer = () => privateKeyToAccount(anvil.accounts[1].privateKey);
async function nonceOf(addr: string): Promise<bigint> {
  return BigInt((await call(anvil.rpcUrl, 'eth_getTransactionCount', [addr, 'latest'])).result);
}
async function rawTx(over: Record<string, unknown> = {}): Promise<Hex> {
  const acct = signer();
  return acct.signTransaction({
    type: 'eip1559', chainId: anvil.chainId, nonce: Number(await nonceOf(acct.address)), to: contract, data: ttlCall,
    gas: 100_000n, maxFeePerGas: 10_000_000_000n, maxPriorityFeePerGas: 1_000_000_000n, ...over,
  } as any);
}

describe('allowed methods forward', () => {
  // Answers that do not change between two back-to-back reads of an idle chain.
  const stable: Array<[string, () => unknown[]]> = [
    ['eth_chainId', () => []],
    ['eth_blockNumber', () => []],
    ['eth_getBlockByNumber', () => ['0x1', false]],
    ['eth_getTransactionCount', () => [anvil.accounts[0].address, 'latest']],
    ['eth_getBalance', () => [anvil.accounts[0].address, 'latest']],
    ['eth_gasPrice', () => []],
    ['eth_maxPriorityFeePerGas', () => []],
    ['eth_feeHistory', () => ['0x2', 'latest', [50]]],
    ['eth_estimateGas', () => [{ from: anvil.accounts[0].address, to: contract, data: ttlCall }]],
    ['eth_call', () => [{ to: contract, data: ttlCall }, 'latest']],
    ['eth_getLogs', () => [{ address: contract, fromBlock: '0x0', toBlock: 'latest' }]],
    ['eth_getTransactionReceipt', () => [`0x${'00'.repeat(32)}`]],
  ];
  test.each(stable)('%s: same answer as anvil directly', async (method, params) => {
    const via = await call(rpcUrl, method, params());
    const direct = await call(anvil.rpcUrl, method, params());
    expect(via.error).toBeUndefined();
    expect(via.result).toEqual(direct.result);
  });

  test('eth_call really reaches the contract (offerTtlBlocks = 50)', async () => {
    const r = await call(rpcUrl, 'eth_call', [{ to: contract.toLowerCase(), data: ttlCall }, 'latest']);
    expect(BigInt(r.result)).toBe(50n);
  });

  test('eth_getLogs with a one-element address list is allowed', async () => {
    const r = await call(rpcUrl, 'eth_getLogs', [{ address: [contract], fromBlock: '0x0' }]);
    expect(r.result).toEqual([]);
  });

  test('eth_sendRawTransaction (EIP-1559 and EIP-155 legacy, signed by viem) is mined, receipt via the relay', async () => {
    for (const over of [{}, { type: 'legacy', gasPrice: 10_000_000_000n, maxFeePerGas: undefined, maxPriorityFeePerGas: undefined }]) {
      const raw = await rawTx(over);
      const sent = await call(rpcUrl, 'eth_sendRawTransaction', [raw]);
      expect(sent.result).toBe(keccak256(raw));
      const receipt = await waitReceipt(rpcUrl, sent.result);
      expect(receipt.status).toBe('0x1');
      expect(receipt.to).toBe(contract.toLowerCase());
    }
  });

  test('caller ids come back unchanged (string, number, null), upstream errors are relayed as JSON-RPC errors', async () => {
    const r = await postJson(rpcUrl, [
      { jsonrpc: '2.0', id: 'abc', method: 'eth_chainId' },
      { jsonrpc: '2.0', id: null, method: 'eth_chainId', params: [] },
      { jsonrpc: '2.0', id: 7.5, method: 'eth_chainId', params: [] },
      { jsonrpc: '2.0', id: 7.5, method: 'eth_getBlockByNumber', params: ['not-a-block', false] },
    ]);
    expect(r.json.map((a: any) => a.id)).toEqual(['abc', null, 7.5, 7.5]);
    expect(r.json.slice(0, 3).map((a: any) => BigInt(a.result))).toEqual([31337n, 31337n, 31337n]);
    expect(typeof r.json[3].error.code).toBe('number');
    expect(r.json[3].result).toBeUndefined();
  });
});

describe('refusals', () => {
  const err = async (body: unknown) => {
    const r = await postJson(rpcUrl, body);
    expect(r.status).toBe(200);
    return r.json;
  };
  const one = (method: string, params?: unknown) => ({ jsonrpc: '2.0', id: 1, method, ...(params === undefined ? {} : { params }) });

  test.each(['eth_accounts', 'eth_sendTransaction', 'eth_sign', 'anvil_setBalance', 'evm_mine', 'debug_traceCall',
    'eth_getStorageAt', 'eth_getCode', 'eth_subscribe', 'net_version', '__proto__', 'constructor', 'hasOwnProperty', ''])(
    'method %p → -32601', async (m) => {
      const r = await err(one(m, []));
      expect(r).toEqual({ jsonrpc: '2.0', id: 1, error: { code: -32601, message: expect.any(String) } });
    });

  test('a refused method is never forwarded (anvil_setBalance, eth_sendTransaction, evm_mine leave the chain as it was)', async () => {
    const victim = anvil.accounts[5].address;
    const before = (await call(anvil.rpcUrl, 'eth_getBalance', [victim, 'latest'])).result;
    const height = (await call(anvil.rpcUrl, 'eth_blockNumber')).result;
    const nonce = await nonceOf(anvil.accounts[5].address);
    await err(one('anvil_setBalance', [victim, '0x1']));
    await err(one('evm_mine', []));
    await err(one('eth_sendTransaction', [{ from: victim, to: contract, data: ttlCall }]));
    expect((await call(anvil.rpcUrl, 'eth_getBalance', [victim, 'latest'])).result).toBe(before);
    expect((await call(anvil.rpcUrl, 'eth_blockNumber')).result).toBe(height);
    expect(await nonceOf(victim)).toBe(nonce);
  });

  const badParams: Array<[string, string, () => unknown]> = [
    ['eth_call to another address', 'eth_call', () => [{ to: OTHER, data: ttlCall }, 'latest']],
    ['eth_call without to', 'eth_call', () => [{ data: ttlCall }]],
    ['eth_call with state overrides', 'eth_call', () => [{ to: contract, data: ttlCall }, 'latest', { [contract]: { code: '0x00' } }]],
    ['eth_call with a bad-checksum address', 'eth_call', () => [{ to: contract.replace(/[a-f]/, (c) => c.toUpperCase()) === contract ? contract.toLowerCase().replace(/[a-f]/, (c) => c.toUpperCase()) : contract.replace(/[a-f]/, (c) => c.toUpperCase()), data: ttlCall }]],
    ['eth_call with object params', 'eth_call', () => ({ to: contract })],
    ['eth_estimateGas to another address', 'eth_estimateGas', () => [{ to: OTHER }]],
    ['eth_estimateGas for a contract creation', 'eth_estimateGas', () => [{ data: '0x6000' }]],
    ['eth_getLogs without address', 'eth_getLogs', () => [{ fromBlock: '0x0' }]],
    ['eth_getLogs for another address', 'eth_getLogs', () => [{ address: OTHER }]],
    ['eth_getLogs for two addresses', 'eth_getLogs', () => [{ address: [contract, OTHER] }]],
    ['eth_getLogs with an empty address list', 'eth_getLogs', () => [{ address: [] }]],
    ['eth_chainId with params', 'eth_chainId', () => [1]],
    ['eth_getBalance with 3 params', 'eth_getBalance', () => [OTHER, 'latest', 1]],
    ['eth_sendRawTransaction of garbage', 'eth_sendRawTransaction', () => ['0xdeadbeef']],
    ['eth_sendRawTransaction of non-hex', 'eth_sendRawTransaction', () => ['hello']],
    ['eth_sendRawTransaction with no params', 'eth_sendRawTransaction', () => []],
  ];
  test.each(badParams)('%s → -32602', async (_name, method, params) => {
    const r = await err(one(method, params()));
    expect(r.error.code).toBe(-32602);
    expect(r.id).toBe(1);
  });

  test('params nested 30 000 deep (a 60 KB body) → -32602, and the relay survives', async () => {
    const deep = '['.repeat(30_000) + ']'.repeat(30_000);
    const r = await err(`{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":[${deep}]}`);
    expect(r.error.code).toBe(-32602);
    expect(BigInt((await call(rpcUrl, 'eth_chainId')).result)).toBe(31337n);
  });

  test('raw transactions for another chain, another target, or without EIP-155 are refused and not mined', async () => {
    const acct = signer();
    const n0 = await nonceOf(acct.address);
    const cases = [
      await rawTx({ chainId: 1 }),
      await rawTx({ to: OTHER }),
      await rawTx({ type: 'legacy', chainId: 5, gasPrice: 10_000_000_000n, maxFeePerGas: undefined, maxPriorityFeePerGas: undefined }),
      // pre-EIP-155 legacy (v = 27/28) is replayable on every chain
      await acct.signTransaction({ type: 'legacy', nonce: Number(n0), to: contract, gas: 100_000n, gasPrice: 10_000_000_000n, data: ttlCall } as any),
    ];
    for (const raw of cases) {
      const r = await err(one('eth_sendRawTransaction', [raw]));
      expect(r.error.code).toBe(-32602);
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(await nonceOf(acct.address)).toBe(n0);
  });

  test('unparsable JSON → -32700, id null', async () => {
    for (const body of ['{', '', 'nul', '{"jsonrpc":"2.0",', Buffer.from([0x5b, 0xff, 0x5d])]) {
      const r = await request(rpcUrl, 'POST', body, { 'content-type': 'application/json' });
      expect(r.status).toBe(200);
      expect(r.json).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32700, message: expect.any(String) } });
    }
  });

  test.each([
    ['wrong version', { jsonrpc: '1.0', id: 1, method: 'eth_chainId' }, 1],
    ['no version', { id: 1, method: 'eth_chainId' }, 1],
    ['missing method', { jsonrpc: '2.0', id: 2 }, 2],
    ['method not a string', { jsonrpc: '2.0', id: 2, method: 5 }, 2],
    ['params not structured', { jsonrpc: '2.0', id: 3, method: 'eth_chainId', params: 'x' }, 3],
    ['object id', { jsonrpc: '2.0', id: {}, method: 'eth_chainId' }, null],
    ['boolean id', { jsonrpc: '2.0', id: true, method: 'eth_chainId' }, null],
    ['notification (no id)', { jsonrpc: '2.0', method: 'eth_chainId' }, null],
    ['a number', 5, null],
    ['a string', '"eth_chainId"', null],
    ['null', null, null],
  ])('%s → -32600', async (_name, body, id) => {
    const r = await err(body);
    expect(r).toEqual({ jsonrpc: '2.0', id, error: { code: -32600, message: expect.any(String) } });
  });

  test('batch: over 20 calls → one error object (id null, -32600); empty → -32600; 20 → 20 answers', async () => {
    const batch = (n: number) => Array.from({ length: n }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'eth_chainId' }));
    expect(await err(batch(21))).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32600, message: expect.any(String) } });
    expect(await err(batch(1000))).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32600, message: expect.any(String) } });
    expect(await err([])).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32600, message: expect.any(String) } });
    const ok = await err(batch(20));
    expect(ok).toHaveLength(20);
    expect(ok.map((a: any) => [a.id, BigInt(a.result)])).toEqual(Array.from({ length: 20 }, (_, i) => [i, 31337n]));
  });

  test('mixed batch: order and (repeated) ids kept, each entry judged alone', async () => {
    const r = await err([
      { jsonrpc: '2.0', id: 1, method: 'eth_blockNumber' },
      { jsonrpc: '2.0', id: 1, method: 'eth_accounts' },
      5,
      { jsonrpc: '2.0', id: 'x', method: 'eth_call', params: [{ to: OTHER }] },
      { jsonrpc: '2.0', id: 1, method: 'eth_chainId' },
    ]);
    expect(r.map((a: any) => [a.id, a.error?.code ?? 'ok'])).toEqual([[1, 'ok'], [1, -32601], [null, -32600], ['x', -32602], [1, 'ok']]);
    expect(BigInt(r[4].result)).toBe(31337n);
  });
});

describe('HTTP-level limits', () => {
  test('a body over 64 KiB → 413, with Content-Length or streamed chunked; exactly 64 KiB is served', async () => {
    const call1 = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId' });
    const exact = call1 + ' '.repeat(64 * 1024 - call1.length);
    const ok = await postJson(rpcUrl, exact);
    expect(ok.status).toBe(200);
    expect(BigInt(ok.json.result)).toBe(31337n);
    const over = await postJson(rpcUrl, exact + ' ');
    expect(over.status).toBe(413);
    expect(over.json.error.code).toBe(-32600);
  });

  test('a streamed body is cut at the limit: the relay answers 413 without reading the rest', async () => {
    const http = await import('node:http');
    const { status, sent } = await new Promise<{ status: number; sent: number }>((resolve, reject) => {
      let sent = 0;
      const req = http.request(rpcUrl, { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        resolve({ status: res.statusCode!, sent });
        req.destroy();
      });
      req.on('error', (e) => (sent > 0 ? undefined : reject(e)));
      const chunk = Buffer.alloc(16 * 1024, 0x20);
      const pump = () => {
        // Keep writing (up to 64 MiB) until the server answers; it must answer long before.
        while (!req.destroyed && sent < 64 * 1024 * 1024) {
          sent += chunk.length;
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
      };
      pump();
    });
    expect(status).toBe(413);
    expect(sent).toBeLessThan(64 * 1024 * 1024);
  });

  test('unknown path 404, wrong method 405, both in the error shape', async () => {
    const a = await request(`${relay.url}/nope`, 'GET');
    expect(a.status).toBe(404);
    expect(a.json).toEqual({ error: 'not-found', message: expect.any(String) });
    const b = await request(rpcUrl, 'GET');
    expect(b.status).toBe(405);
    expect(b.json.error).toBe('method-not-allowed');
  });

  test('healthz reports the upstream; metrics count calls', async () => {
    const h = await request(`${relay.url}/healthz`, 'GET');
    expect(h.status).toBe(200);
    expect(h.json).toEqual({ ok: true, upstream: true });
    const m = await request(`${relay.url}/metrics`, 'GET');
    expect(m.status).toBe(200);
    expect(m.text).toMatch(/iotkx_relay_rpc_calls_total\{method="eth_chainId",outcome="ok"\} \d+/);
    expect(m.text).toMatch(/iotkx_relay_rpc_calls_total\{method="other",outcome="refused"\} \d+/);
    expect(m.text).toMatch(/iotkx_relay_http_requests_total\{route="rpc",status="413"\} \d+/);
  });
});
