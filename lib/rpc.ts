/**
 * A small JSON-RPC 2.0 client for the chain methods a device uses (PROTOCOL.md §8),
 * over the injected Transport. Answers are the relay's assertions (PROTOCOL.md §1):
 * this file only makes sure they are well-formed, small and typed; trust decisions
 * belong to the caller. JSON text goes through lib/bytes (no TextEncoder on the device).
 */
import { addressHex } from './address.js';
import { hexToBytes, toHex, utf8Decode, utf8Encode, type Hex } from './bytes.js';
import { IotkxError, check, nameErrorClass } from './errors.js';
import { MAX_RESPONSE_BYTES, type Transport } from './platform.js';

/** A JSON-RPC error object returned by the node or relay. */
export class RpcError extends IotkxError {
  readonly rpcCode: number;
  readonly rpcMessage: string;
  readonly data: unknown;
  constructor(rpcCode: number, rpcMessage: string, data: unknown) {
    super('rpc-error', `rpc: ${rpcCode} ${rpcMessage}`);
    this.rpcCode = rpcCode;
    this.rpcMessage = rpcMessage;
    this.data = data;
  }
}
nameErrorClass(RpcError, 'RpcError');

const bad = (msg: string) => new IotkxError('bad-response', `rpc: ${msg}`);

/** QUANTITY (Ethereum JSON-RPC spec): 0x, no leading zeros, "0x0" for zero, at most 256 bits. */
const QUANTITY_RE = /^0x(0|[1-9a-fA-F][0-9a-fA-F]{0,63})$/;
/** DATA: 0x and an even number of hex digits. */
const DATA_RE = /^0x([0-9a-fA-F]{2})*$/;

export function parseQuantity(x: unknown, what = 'quantity'): bigint {
  if (typeof x !== 'string' || !QUANTITY_RE.test(x)) throw bad(`${what} is not a hex quantity`);
  return BigInt(x);
}

export function parseData(x: unknown, what = 'data', length?: number): Uint8Array {
  if (typeof x !== 'string' || !DATA_RE.test(x)) throw bad(`${what} is not hex data`);
  const b = hexToBytes(x);
  if (length !== undefined && b.length !== length) throw bad(`${what} must be ${length} bytes`);
  return b;
}

export function quantity(x: bigint | number): Hex {
  const v = BigInt(x);
  check(v >= 0n, 'out-of-range', 'rpc: negative quantity');
  return `0x${v.toString(16)}`;
}

export type BlockTag = 'latest' | 'pending' | 'earliest' | 'safe' | 'finalized' | bigint;
const tag = (b: BlockTag): string => (typeof b === 'bigint' ? quantity(b) : b);

export interface Log {
  address: Uint8Array;
  topics: Uint8Array[];
  data: Uint8Array;
  blockNumber: bigint | null;
  transactionHash: Uint8Array | null;
  logIndex: bigint | null;
}

export interface Receipt {
  status: 0 | 1;
  blockNumber: bigint;
  logs: Log[];
}

export interface FeeHistory {
  oldestBlock: bigint;
  baseFeePerGas: bigint[];
  gasUsedRatio: number[];
  reward?: bigint[][];
}

export interface CallRequest {
  from?: Uint8Array;
  to: Uint8Array;
  data?: Uint8Array;
  value?: bigint;
  gas?: bigint;
}

function obj(x: unknown, what: string): Record<string, unknown> {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) throw bad(`${what} is not an object`);
  return x as Record<string, unknown>;
}

function arr(x: unknown, what: string): unknown[] {
  if (!Array.isArray(x)) throw bad(`${what} is not an array`);
  return x;
}

const nullable = <T>(x: unknown, f: (x: unknown) => T): T | null => (x === null || x === undefined ? null : f(x));

function parseLog(x: unknown): Log {
  const l = obj(x, 'log');
  return {
    address: parseData(l.address, 'log address', 20),
    topics: arr(l.topics, 'log topics').map((t) => parseData(t, 'topic', 32)),
    data: parseData(l.data, 'log data'),
    blockNumber: nullable(l.blockNumber, (v) => parseQuantity(v, 'blockNumber')),
    transactionHash: nullable(l.transactionHash, (v) => parseData(v, 'transactionHash', 32)),
    logIndex: nullable(l.logIndex, (v) => parseQuantity(v, 'logIndex')),
  };
}

function callObject(c: CallRequest): Record<string, string> {
  const o: Record<string, string> = { to: addressHex(c.to) };
  if (c.from) o.from = addressHex(c.from);
  if (c.data) o.data = toHex(c.data);
  if (c.value !== undefined) o.value = quantity(c.value);
  if (c.gas !== undefined) o.gas = quantity(c.gas);
  return o;
}

export class RpcClient {
  private nextId = 1;
  constructor(private readonly transport: Transport, private readonly url: string) {}

  /** One JSON-RPC call; the raw `result`. */
  async request(method: string, params: unknown[] = []): Promise<unknown> {
    const id = this.nextId++;
    const body = utf8Encode(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    let res;
    try {
      res = await this.transport.request('POST', this.url, body, 'application/json');
    } catch (e) {
      if (e instanceof IotkxError) throw e;
      throw new IotkxError('transport-error', `rpc: ${(e as Error)?.message ?? e}`);
    }
    // PROTOCOL.md §5.3: dropped unparsed, whatever the status.
    if (!(res.body instanceof Uint8Array)) throw bad('body is not bytes');
    if (res.body.length > MAX_RESPONSE_BYTES) {
      throw new IotkxError('response-too-large', `rpc: response of ${res.body.length} bytes exceeds ${MAX_RESPONSE_BYTES}`);
    }
    if (res.status !== 200) throw new IotkxError('http-error', `rpc: HTTP ${res.status}`);
    let msg: Record<string, unknown>;
    try {
      msg = obj(JSON.parse(utf8Decode(res.body)), 'response');
    } catch (e) {
      throw e instanceof IotkxError && e.code === 'bad-response' ? e : bad('malformed JSON');
    }
    if (msg.jsonrpc !== '2.0') throw bad('jsonrpc is not "2.0"');
    if (msg.id !== id) throw bad('id does not match the request');
    const hasResult = 'result' in msg;
    const hasError = 'error' in msg;
    if (hasResult === hasError) throw bad('expected exactly one of result and error');
    if (hasError) {
      const err = obj(msg.error, 'error');
      if (typeof err.code !== 'number' || !Number.isInteger(err.code) || typeof err.message !== 'string') throw bad('malformed error object');
      throw new RpcError(err.code, err.message, err.data);
    }
    return msg.result;
  }

  private async q(method: string, params: unknown[] = []): Promise<bigint> {
    return parseQuantity(await this.request(method, params), method);
  }

  chainId(): Promise<bigint> { return this.q('eth_chainId'); }
  blockNumber(): Promise<bigint> { return this.q('eth_blockNumber'); }
  gasPrice(): Promise<bigint> { return this.q('eth_gasPrice'); }
  maxPriorityFeePerGas(): Promise<bigint> { return this.q('eth_maxPriorityFeePerGas'); }

  getTransactionCount(addr: Uint8Array, block: 'pending' | 'latest' = 'pending'): Promise<bigint> {
    return this.q('eth_getTransactionCount', [addressHex(addr), block]);
  }

  getBalance(addr: Uint8Array, block: BlockTag = 'latest'): Promise<bigint> {
    return this.q('eth_getBalance', [addressHex(addr), tag(block)]);
  }

  estimateGas(c: CallRequest): Promise<bigint> {
    return this.q('eth_estimateGas', [callObject(c)]);
  }

  async call(c: CallRequest, block: BlockTag = 'latest'): Promise<Uint8Array> {
    return parseData(await this.request('eth_call', [callObject(c), tag(block)]), 'eth_call result');
  }

  async feeHistory(blockCount: number, newest: BlockTag = 'latest', percentiles: number[] = []): Promise<FeeHistory> {
    const r = obj(await this.request('eth_feeHistory', [quantity(blockCount), tag(newest), percentiles]), 'feeHistory');
    const out: FeeHistory = {
      oldestBlock: parseQuantity(r.oldestBlock, 'oldestBlock'),
      baseFeePerGas: arr(r.baseFeePerGas, 'baseFeePerGas').map((v) => parseQuantity(v, 'baseFeePerGas')),
      gasUsedRatio: arr(r.gasUsedRatio, 'gasUsedRatio').map((v) => {
        if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw bad('gasUsedRatio out of range');
        return v;
      }),
    };
    if (r.reward !== undefined && r.reward !== null) {
      out.reward = arr(r.reward, 'reward').map((row) => arr(row, 'reward').map((v) => parseQuantity(v, 'reward')));
    }
    return out;
  }

  /** The transaction hash the node reports (callers may compare it with keccak(raw)). */
  async sendRawTransaction(raw: Uint8Array): Promise<Uint8Array> {
    return parseData(await this.request('eth_sendRawTransaction', [toHex(raw)]), 'transaction hash', 32);
  }

  async getTransactionReceipt(hash: Uint8Array): Promise<Receipt | null> {
    check(hash instanceof Uint8Array && hash.length === 32, 'bad-hash', 'rpc: transaction hash must be 32 bytes');
    const r = await this.request('eth_getTransactionReceipt', [toHex(hash)]);
    if (r === null) return null;
    const o = obj(r, 'receipt');
    const status = parseQuantity(o.status, 'status');
    if (status > 1n) throw bad('receipt status is not 0 or 1');
    return {
      status: Number(status) as 0 | 1,
      blockNumber: parseQuantity(o.blockNumber, 'blockNumber'),
      logs: arr(o.logs, 'logs').map(parseLog),
    };
  }

  async getLogs(f: { address: Uint8Array; topics?: (Uint8Array | null)[]; fromBlock?: BlockTag; toBlock?: BlockTag }): Promise<Log[]> {
    const filter: Record<string, unknown> = { address: addressHex(f.address) };
    if (f.topics) filter.topics = f.topics.map((t) => (t === null ? null : toHex(t)));
    if (f.fromBlock !== undefined) filter.fromBlock = tag(f.fromBlock);
    if (f.toBlock !== undefined) filter.toBlock = tag(f.toBlock);
    return arr(await this.request('eth_getLogs', [filter]), 'logs').map(parseLog);
  }

  /** Header fields the device uses; null if the node has no such block. */
  async getBlockByNumber(block: BlockTag = 'latest'): Promise<{ number: bigint; baseFeePerGas?: bigint } | null> {
    const r = await this.request('eth_getBlockByNumber', [tag(block), false]);
    if (r === null) return null;
    const o = obj(r, 'block');
    const out: { number: bigint; baseFeePerGas?: bigint } = { number: parseQuantity(o.number, 'number') };
    if (o.baseFeePerGas !== undefined && o.baseFeePerGas !== null) out.baseFeePerGas = parseQuantity(o.baseFeePerGas, 'baseFeePerGas');
    return out;
  }
}
