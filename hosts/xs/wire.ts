/**
 * The message format between Node and an XS worker: JSON, with Uint8Array as
 * {"$b": "<hex>"} and bigint as {"$n": "<decimal>"}. Portable on purpose: it is
 * bundled into the worker, which has no TextEncoder on the device build.
 */
import { bytesToHex, hexToBytes, utf8Decode, utf8Encode } from '../../lib/bytes.js';

function replace(this: unknown, _key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return { $b: bytesToHex(value) };
  if (typeof value === 'bigint') return { $n: value.toString() };
  return value;
}

function revive(_key: string, value: unknown): unknown {
  if (value && typeof value === 'object') {
    const v = value as Record<string, unknown>;
    if (typeof v.$b === 'string' && Object.keys(v).length === 1) return hexToBytes(v.$b);
    if (typeof v.$n === 'string' && Object.keys(v).length === 1) return BigInt(v.$n);
  }
  return value;
}

export function encodeMessage(value: unknown): Uint8Array {
  return utf8Encode(JSON.stringify(value, replace));
}

export function decodeMessage(bytes: Uint8Array): any {
  return JSON.parse(utf8Decode(bytes), revive);
}

/** What a worker answers to a call: a value, or a typed error. */
export type Reply = { ok: unknown } | { error: { name: string; code?: string; message: string } };
