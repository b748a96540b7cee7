/**
 * Byte helpers. Hex and concatenation come from @noble/hashes; text encoding is
 * hand-written because the device has no global TextEncoder (MODDABLE.md §3).
 */
import { bytesToHex, concatBytes, hexToBytes as nobleHexToBytes } from '@noble/hashes/utils.js';
import { IotkxError, check } from './errors.js';

export { bytesToHex, concatBytes };

export type Hex = `0x${string}`;

/** Parse hex with or without 0x; odd length or a non-hex digit is an error. */
export function hexToBytes(hex: string): Uint8Array {
  check(typeof hex === 'string', 'bad-hex', 'hex: expected a string');
  const body = hex.startsWith('0x') || hex.startsWith('0X') ? hex.slice(2) : hex;
  try {
    return nobleHexToBytes(body);
  } catch (e) {
    throw new IotkxError('bad-hex', `hex: ${(e as Error).message}`);
  }
}

/** 0x-prefixed lowercase hex, the form PROTOCOL.md §9 uses for byte strings. */
export function toHex(bytes: Uint8Array): Hex {
  return `0x${bytesToHex(bytes)}`;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** `u64be(x)` of PROTOCOL.md: x as 8 big-endian bytes; x must be in [0, 2^64 − 1]. */
export function u64be(x: bigint): Uint8Array {
  check(typeof x === 'bigint' && x >= 0n && x < 1n << 64n, 'out-of-range', `u64be: ${x} is not a uint64`);
  const out = new Uint8Array(8);
  for (let i = 7; i >= 0; i--) {
    out[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}

/** Big-endian unsigned bytes to bigint (empty is 0). */
export function bytesToBigInt(bytes: Uint8Array): bigint {
  let x = 0n;
  for (let i = 0; i < bytes.length; i++) x = (x << 8n) | BigInt(bytes[i]);
  return x;
}

/** bigint to big-endian bytes, exactly `length` long. */
export function bigIntToBytes(x: bigint, length: number): Uint8Array {
  check(x >= 0n && x < 1n << BigInt(8 * length), 'out-of-range', `${x} does not fit in ${length} bytes`);
  const out = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}

/** ASCII text (protocol labels such as "iotkx/1/data"); anything else is an error. */
export function ascii(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    check(c < 0x80, 'bad-text', 'ascii: non-ASCII character');
    out[i] = c;
  }
  return out;
}

/** UTF-8 encode (well-formed strings only; lone surrogates are refused). */
export function utf8Encode(text: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = text.charCodeAt(i + 1);
      check(d >= 0xdc00 && d <= 0xdfff, 'bad-text', 'utf8: lone surrogate');
      c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
      i++;
    } else check(c < 0xdc00 || c > 0xdfff, 'bad-text', 'utf8: lone surrogate');
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return Uint8Array.from(out);
}

/** Strict UTF-8 decode: overlong forms, surrogates and truncated sequences are refused. */
export function utf8Decode(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    let c: number;
    let n: number;
    if (b < 0x80) { c = b; n = 0; }
    else if (b >= 0xc2 && b < 0xe0) { c = b & 0x1f; n = 1; }
    else if (b >= 0xe0 && b < 0xf0) { c = b & 0x0f; n = 2; }
    else if (b >= 0xf0 && b < 0xf5) { c = b & 0x07; n = 3; }
    else throw new IotkxError('bad-text', 'utf8: invalid lead byte');
    check(i + n < bytes.length, 'bad-text', 'utf8: truncated sequence');
    for (let k = 1; k <= n; k++) {
      const x = bytes[i + k];
      check((x & 0xc0) === 0x80, 'bad-text', 'utf8: invalid continuation byte');
      c = (c << 6) | (x & 0x3f);
    }
    check(!(n === 2 && c < 0x800) && !(n === 3 && (c < 0x10000 || c > 0x10ffff)), 'bad-text', 'utf8: overlong or out of range');
    check(c < 0xd800 || c > 0xdfff, 'bad-text', 'utf8: surrogate code point');
    s += String.fromCodePoint(c);
    i += n + 1;
  }
  return s;
}
