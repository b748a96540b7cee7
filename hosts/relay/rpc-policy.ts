/**
 * What the relay lets through to the chain (PROTOCOL.md §8): thirteen methods, and for
 * those that name a target, only the deployed KeyExchange contract. Each check returns a
 * refusal (JSON-RPC code and message) or nothing; a refused call is never forwarded.
 */
import { parseAddress } from '../../lib/address.js';
import { bytesToHex, hexToBytes } from '../../lib/bytes.js';
import { decodeTransaction } from '../../lib/tx.js';

/** JSON-RPC 2.0 §5.1 error codes, plus -32005 ("limit exceeded", EIP-1474) and -32000 (server error range). */
export const RPC_PARSE_ERROR = -32700;
export const RPC_INVALID_REQUEST = -32600;
export const RPC_METHOD_NOT_FOUND = -32601;
export const RPC_INVALID_PARAMS = -32602;
export const RPC_INTERNAL_ERROR = -32603;
export const RPC_UPSTREAM_ERROR = -32000;
export const RPC_LIMIT_EXCEEDED = -32005;

/** PROTOCOL.md §8: exactly these, and no others. */
export const ALLOWED_METHODS: ReadonlySet<string> = new Set([
  'eth_chainId',
  'eth_blockNumber',
  'eth_getBlockByNumber',
  'eth_getTransactionCount',
  'eth_getBalance',
  'eth_gasPrice',
  'eth_maxPriorityFeePerGas',
  'eth_feeHistory',
  'eth_estimateGas',
  'eth_call',
  'eth_sendRawTransaction',
  'eth_getTransactionReceipt',
  'eth_getLogs',
]);

/**
 * Deepest params nesting we forward. The deepest legitimate shape is an access list in a
 * call object: params → call → accessList → entry → storageKeys (5). A hostile 64 KiB body
 * can nest ~32k deep, which would blow the stack when re-serialised.
 */
export const MAX_PARAMS_DEPTH = 6;

export interface Refusal {
  code: number;
  message: string;
}

export interface Deployment {
  chainId: bigint;
  /** Contract address, 0x + 40 lowercase hex. */
  contract: string;
}

const refuse = (message: string): Refusal => ({ code: RPC_INVALID_PARAMS, message });

function depthWithin(value: unknown, max: number): boolean {
  // Iterative, so the check itself cannot overflow the stack.
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (d > max) return false;
    for (const child of Object.values(v as object)) stack.push([child, d + 1]);
  }
  return true;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isString = (v: unknown): v is string => typeof v === 'string';
const isBlockRef = (v: unknown) => isString(v) || isObject(v); // tag/number, or EIP-1898 {blockHash|blockNumber}

/**
 * Spellings of a contract address already found valid (lower, upper, EIP-55 case): at most
 * three per contract, so the hot path skips the keccak of the checksum check. Only
 * strings that passed the full check are remembered, so the answer never changes.
 */
const validSpellings = new Map<string, string>();

/** True if `v` is an address text (lower, upper or valid EIP-55 case) equal to the contract. */
function isContract(v: unknown, d: Deployment): boolean {
  if (!isString(v)) return false;
  if (v === d.contract || validSpellings.get(v) === d.contract) return true;
  try {
    const ok = `0x${bytesToHex(parseAddress(v))}` === d.contract;
    if (ok && validSpellings.size < 64) validSpellings.set(v, d.contract);
    return ok;
  } catch {
    return false;
  }
}

function arity(params: unknown[], min: number, max: number): Refusal | undefined {
  if (params.length < min || params.length > max) {
    return refuse(min === max ? `expected ${min} params, got ${params.length}` : `expected ${min} to ${max} params, got ${params.length}`);
  }
  return undefined;
}

function checkCallObject(params: unknown[], d: Deployment): Refusal | undefined {
  // A third param (state / block overrides) could run arbitrary code at the contract's address: refused.
  const bad = arity(params, 1, 2);
  if (bad) return bad;
  if (!isObject(params[0])) return refuse('the call must be an object');
  if (!isContract(params[0].to, d)) return refuse(`calls are restricted to the contract ${d.contract}`);
  if (params.length === 2 && !isBlockRef(params[1])) return refuse('bad block parameter');
  return undefined;
}

function checkLogs(params: unknown[], d: Deployment): Refusal | undefined {
  const bad = arity(params, 1, 1);
  if (bad) return bad;
  const f = params[0];
  if (!isObject(f)) return refuse('the filter must be an object');
  const a = f.address;
  const single = Array.isArray(a) ? (a.length === 1 ? a[0] : undefined) : a;
  if (!isContract(single, d)) return refuse(`logs are restricted to the single address ${d.contract}`);
  return undefined;
}

function checkRawTx(params: unknown[], d: Deployment): Refusal | undefined {
  const bad = arity(params, 1, 1);
  if (bad) return bad;
  const raw = params[0];
  if (!isString(raw) || !/^0x([0-9a-fA-F]{2})+$/.test(raw)) return refuse('the raw transaction must be 0x-prefixed hex');
  let decoded;
  try {
    decoded = decodeTransaction(hexToBytes(raw));
  } catch (e) {
    return refuse(`undecodable transaction: ${(e as Error).message}`);
  }
  const { tx } = decoded;
  if (tx.chainId !== d.chainId) return refuse(`transaction for chain ${tx.chainId}, this relay serves chain ${d.chainId}`);
  if (`0x${bytesToHex(tx.to)}` !== d.contract) return refuse(`transactions are restricted to the contract ${d.contract}`);
  return undefined;
}

/** Per-method shape and target checks; `params` is already known to be an array. */
export function checkParams(method: string, params: unknown[], d: Deployment): Refusal | undefined {
  if (!depthWithin(params, MAX_PARAMS_DEPTH)) return refuse('params nested too deeply');
  switch (method) {
    case 'eth_chainId':
    case 'eth_blockNumber':
    case 'eth_gasPrice':
    case 'eth_maxPriorityFeePerGas':
      return arity(params, 0, 0);
    case 'eth_getBlockByNumber':
      return arity(params, 1, 2) ??
        (!isString(params[0]) ? refuse('block must be a tag or a hex number') : undefined) ??
        (params.length === 2 && typeof params[1] !== 'boolean' ? refuse('second param must be a boolean') : undefined);
    case 'eth_getTransactionCount':
    case 'eth_getBalance':
      return arity(params, 1, 2) ??
        (!isString(params[0]) ? refuse('address must be a string') : undefined) ??
        (params.length === 2 && !isBlockRef(params[1]) ? refuse('bad block parameter') : undefined);
    case 'eth_feeHistory':
      return arity(params, 2, 3) ??
        (!isString(params[0]) && typeof params[0] !== 'number' ? refuse('block count must be a number') : undefined) ??
        (!isString(params[1]) ? refuse('newest block must be a tag or a hex number') : undefined) ??
        (params.length === 3 && !(Array.isArray(params[2]) && params[2].length <= 100 && params[2].every((p) => typeof p === 'number'))
          ? refuse('reward percentiles must be at most 100 numbers')
          : undefined);
    case 'eth_estimateGas':
    case 'eth_call':
      return checkCallObject(params, d);
    case 'eth_sendRawTransaction':
      return checkRawTx(params, d);
    case 'eth_getTransactionReceipt':
      return arity(params, 1, 1) ?? (!isString(params[0]) ? refuse('transaction hash must be a string') : undefined);
    case 'eth_getLogs':
      return checkLogs(params, d);
    default:
      return { code: RPC_METHOD_NOT_FOUND, message: `method ${method} is not offered by this relay` };
  }
}
