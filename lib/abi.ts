/**
 * The Solidity ABI subset iotkx needs (PROTOCOL.md §4): static uint8/uint32/uint64/
 * uint256/address/bool/bytes32 and dynamic `bytes`, as flat parameter lists.
 * Hand-written on purpose: viem's encoder is ~76 KB minified and micro-eth-signer's
 * abi ~38 KB, and both call `new TextEncoder()` at load, which the device lacks
 * (XS-NOTES.md); this file is a few hundred lines over Uint8Array.
 * Decoding is canonical-only: every offset must point exactly where the encoder
 * would put it, padding must be zero, and no byte may be left over.
 */
import { keccak_256 } from '@noble/hashes/sha3.js';
import { ascii, bigIntToBytes, bytesToBigInt, concatBytes } from './bytes.js';
import { check } from './errors.js';

export type AbiType = 'uint8' | 'uint32' | 'uint64' | 'uint256' | 'address' | 'bool' | 'bytes32' | 'bytes';
/** bigint for uintN, boolean for bool, Uint8Array for address (20), bytes32 (32) and bytes. */
export type AbiValue = bigint | boolean | Uint8Array;

const WORD = 32;
const BITS: Record<string, number> = { uint8: 8, uint32: 32, uint64: 64, uint256: 256 };

function isType(t: string): t is AbiType {
  return t in BITS || t === 'address' || t === 'bool' || t === 'bytes32' || t === 'bytes';
}

/** keccak(signature)[0..4], e.g. selector("enroll(address,address)"). */
export function selector(signature: string): Uint8Array {
  return keccak_256(ascii(signature)).slice(0, 4);
}

/** Split "name(t1,t2)" into its parameter types; only the supported types are accepted. */
export function parseSignatureTypes(signature: string): AbiType[] {
  const m = /^[A-Za-z_$][A-Za-z0-9_$]*\(([a-z0-9,]*)\)$/.exec(signature);
  check(m !== null, 'bad-abi', `abi: malformed signature ${signature}`);
  if (m[1] === '') return [];
  const types = m[1].split(',');
  for (const t of types) check(isType(t), 'bad-abi', `abi: unsupported type ${t}`);
  return types as AbiType[];
}

function encodeWord(type: AbiType, v: AbiValue): Uint8Array {
  if (type in BITS) {
    check(typeof v === 'bigint' && v >= 0n && v < 1n << BigInt(BITS[type]), 'bad-abi', `abi: ${type} out of range`);
    return bigIntToBytes(v, WORD);
  }
  if (type === 'bool') {
    check(typeof v === 'boolean', 'bad-abi', 'abi: bool expects a boolean');
    return bigIntToBytes(v ? 1n : 0n, WORD);
  }
  if (type === 'address') {
    check(v instanceof Uint8Array && v.length === 20, 'bad-abi', 'abi: address expects 20 bytes');
    return concatBytes(new Uint8Array(12), v);
  }
  check(type === 'bytes32' && v instanceof Uint8Array && v.length === 32, 'bad-abi', `abi: ${type} expects 32 bytes`);
  return v;
}

function padded(b: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(b.length / WORD) * WORD);
  out.set(b);
  return out;
}

/** abi.encode(values) for a flat list of supported types. */
export function encodeParams(types: readonly AbiType[], values: readonly AbiValue[]): Uint8Array {
  check(types.length === values.length, 'bad-abi', 'abi: value count does not match types');
  const heads: Uint8Array[] = [];
  const tails: Uint8Array[] = [];
  let tailOffset = types.length * WORD;
  types.forEach((type, i) => {
    const v = values[i];
    if (type === 'bytes') {
      check(v instanceof Uint8Array, 'bad-abi', 'abi: bytes expects a Uint8Array');
      heads.push(bigIntToBytes(BigInt(tailOffset), WORD));
      const tail = concatBytes(bigIntToBytes(BigInt(v.length), WORD), padded(v));
      tails.push(tail);
      tailOffset += tail.length;
    } else heads.push(encodeWord(type, v));
  });
  return concatBytes(...heads, ...tails);
}

/** selector || abi.encode(values); types come from the signature. */
export function encodeFunctionCall(signature: string, values: readonly AbiValue[]): Uint8Array {
  return encodeCall(selector(signature), parseSignatureTypes(signature), values);
}

/** As encodeFunctionCall, with a precomputed selector (saves a keccak on the device). */
export function encodeCall(sel: Uint8Array, types: readonly AbiType[], values: readonly AbiValue[]): Uint8Array {
  check(sel instanceof Uint8Array && sel.length === 4, 'bad-abi', 'abi: selector must be 4 bytes');
  return concatBytes(sel, encodeParams(types, values));
}

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** Decode one 32-byte word of a static type; upper padding must be zero, bool 0 or 1. */
export function decodeWord(type: AbiType, word: Uint8Array): AbiValue {
  check(word instanceof Uint8Array && word.length === WORD, 'bad-abi', 'abi: a word is 32 bytes');
  if (type in BITS) {
    const pad = WORD - BITS[type] / 8;
    check(isZero(word.subarray(0, pad)), 'bad-abi', `abi: ${type} has non-zero high bytes`);
    return bytesToBigInt(word);
  }
  if (type === 'bool') {
    check(isZero(word.subarray(0, 31)) && word[31] <= 1, 'bad-abi', 'abi: bool is not 0 or 1');
    return word[31] === 1;
  }
  if (type === 'address') {
    check(isZero(word.subarray(0, 12)), 'bad-abi', 'abi: address has non-zero high bytes');
    return word.slice(12);
  }
  check(type === 'bytes32', 'bad-abi', `abi: ${type} is not a static type`);
  return word.slice();
}

/** A word as a length or offset: must fit comfortably in a JS number. */
function readSize(data: Uint8Array, at: number, what: string): number {
  check(at + WORD <= data.length, 'bad-abi', `abi: ${what} beyond the data`);
  const w = data.subarray(at, at + WORD);
  check(isZero(w.subarray(0, 28)), 'bad-abi', `abi: ${what} too large`);
  return ((w[28] << 24) | (w[29] << 16) | (w[30] << 8) | w[31]) >>> 0;
}

/**
 * Strict abi.decode: exactly the canonical encoding of `types` (tails in order,
 * each offset where the encoder puts it, zero padding, no trailing bytes).
 */
export function decodeParams(types: readonly AbiType[], data: Uint8Array): AbiValue[] {
  check(data instanceof Uint8Array, 'bad-abi', 'abi: data must be bytes');
  const headSize = types.length * WORD;
  check(data.length >= headSize, 'bad-abi', 'abi: data shorter than its head');
  let cursor = headSize;
  const out: AbiValue[] = [];
  types.forEach((type, i) => {
    if (type !== 'bytes') {
      out.push(decodeWord(type, data.subarray(i * WORD, (i + 1) * WORD)));
      return;
    }
    const offset = readSize(data, i * WORD, 'offset');
    check(offset === cursor, 'bad-abi', 'abi: offset out of place');
    const length = readSize(data, offset, 'length');
    const start = offset + WORD;
    const end = start + Math.ceil(length / WORD) * WORD;
    check(end <= data.length, 'bad-abi', 'abi: bytes beyond the data');
    check(isZero(data.subarray(start + length, end)), 'bad-abi', 'abi: non-zero padding');
    out.push(data.slice(start, start + length));
    cursor = end;
  });
  check(cursor === data.length, 'bad-abi', 'abi: trailing bytes');
  return out;
}

/** Decode the return data of a call (alias of decodeParams for readability at call sites). */
export function decodeResult(types: readonly AbiType[], data: Uint8Array): AbiValue[] {
  return decodeParams(types, data);
}

