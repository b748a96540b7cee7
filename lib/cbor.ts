/**
 * Deterministically encoded CBOR (RFC 8949 §4.2.1) as PROTOCOL.md §2 defines it:
 * preferred serialisation, definite lengths, map keys sorted by the bytewise order
 * of their encodings, integral numbers in [−2^64, 2^64 − 1] as major type 0/1,
 * every other number (−0.0 included) as the shortest float16/32/64 that holds it
 * exactly. The decoder accepts exactly what the encoder can produce:
 * `encodeCbor(decodeCbor(b))` equals `b` for every `b` it accepts.
 *
 * Hand-written rather than cbor-x (checked: cbor-x 1.6.9) because cbor-x
 * - never writes float16 and its `useFloat32` "fit" mode rounds (0.1 became the
 *   float32 0x3dcccccd), otherwise writes float64;
 * - writes −0 as the integer 0 and 2^53 as a float64;
 * - keeps object keys in insertion order (and tags objects as records by default);
 * - decodes non-shortest integers, unsorted keys and indefinite lengths silently;
 * - calls `new TextEncoder()` at load (absent on the device) and is ~41 KB minified.
 * This file needs ~5 KB and no globals.
 *
 * Values: number, bigint (integers only; the decoder returns a bigint only outside
 * the safe-integer range), string, Uint8Array, array, plain object with string
 * keys, true, false, null. No tags, no undefined, no other simple values.
 */
import { utf8Decode, utf8Encode } from './bytes.js';
import { IotkxError, check } from './errors.js';

export type CborValue = number | bigint | string | Uint8Array | boolean | null | CborValue[] | { [key: string]: CborValue };

const U64_MAX = (1n << 64n) - 1n;
/** Nesting bound: readings and envelopes are flat; this keeps the device's stack safe. */
export const CBOR_MAX_DEPTH = 16;

// ---------------------------------------------------------------- float widths

/** float16 bits of `x` if float16 holds it exactly, else -1 (IEEE 754 binary16). */
export function float16Bits(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  let a = Math.abs(x);
  if (a === 0) return sign;
  if (!(a <= 65504)) return -1; // largest finite binary16; also NaN
  if (a < 2 ** -14) {
    // subnormal: a = m · 2^−24, m in 1..1023 (scaling by a power of two is exact)
    const m = a * 2 ** 24;
    return Number.isInteger(m) ? sign | m : -1;
  }
  let e = -14;
  while (a >= 2 ** (e + 1)) e++;
  const m = (a / 2 ** e - 1) * 1024; // exact: a / 2^e in [1, 2)
  return Number.isInteger(m) ? sign | ((e + 15) << 10) | m : -1;
}

/** The value of float16 bits (exact). */
export function float16Value(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const e = (bits >> 10) & 0x1f;
  const m = bits & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1024 + m) * 2 ** (e - 25);
}

/** Does the number have to be written as an integer (major type 0/1)? */
function isCborInteger(x: number): boolean {
  return Number.isInteger(x) && !Object.is(x, -0) && x >= -(2 ** 64) && x < 2 ** 64;
}

// ---------------------------------------------------------------- encoder

class Writer {
  private buf = new Uint8Array(64);
  length = 0;
  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }
  byte(b: number): void {
    this.ensure(1);
    this.buf[this.length++] = b;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

/** Head with the shortest argument (RFC 8949 §4.2.1 "preferred serialization"). */
function head(w: Writer, major: number, arg: number | bigint): void {
  const m = major << 5;
  if (typeof arg === 'number' && arg < 24) return w.byte(m | arg);
  const n = BigInt(arg);
  let size: number;
  if (n < 0x100n) { w.byte(m | 24); size = 1; }
  else if (n < 0x10000n) { w.byte(m | 25); size = 2; }
  else if (n < 0x100000000n) { w.byte(m | 26); size = 4; }
  else { w.byte(m | 27); size = 8; }
  for (let i = size - 1; i >= 0; i--) w.byte(Number((n >> BigInt(8 * i)) & 0xffn));
}

function writeInteger(w: Writer, n: bigint): void {
  check(n >= -(U64_MAX + 1n) && n <= U64_MAX, 'bad-value', `cbor: integer ${n} outside [−2^64, 2^64 − 1]`);
  if (n >= 0n) head(w, 0, n < 24n ? Number(n) : n);
  else head(w, 1, -1n - n < 24n ? Number(-1n - n) : -1n - n);
}

function writeFloat(w: Writer, x: number): void {
  check(Number.isFinite(x), 'bad-value', 'cbor: NaN and ±Infinity are not allowed (PROTOCOL.md §7)');
  const h = float16Bits(x);
  if (h >= 0) {
    w.byte(0xf9);
    w.byte(h >> 8);
    w.byte(h & 0xff);
    return;
  }
  const single = Math.fround(x) === x;
  const b = new Uint8Array(single ? 4 : 8);
  const view = new DataView(b.buffer);
  if (single) view.setFloat32(0, x);
  else view.setFloat64(0, x);
  w.byte(single ? 0xfa : 0xfb);
  w.bytes(b);
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

function isPlainObject(v: object): v is Record<string, unknown> {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function write(w: Writer, v: unknown, depth: number): void {
  check(depth <= CBOR_MAX_DEPTH, 'bad-value', 'cbor: nested too deeply');
  if (v === null) return w.byte(0xf6);
  if (v === false) return w.byte(0xf4);
  if (v === true) return w.byte(0xf5);
  if (typeof v === 'number') return isCborInteger(v) ? writeInteger(w, BigInt(v)) : writeFloat(w, v);
  if (typeof v === 'bigint') return writeInteger(w, v);
  if (typeof v === 'string') {
    const b = utf8Encode(v);
    head(w, 3, b.length);
    return w.bytes(b);
  }
  if (v instanceof Uint8Array) {
    head(w, 2, v.length);
    return w.bytes(v);
  }
  if (Array.isArray(v)) {
    head(w, 4, v.length);
    for (const item of v) write(w, item, depth + 1);
    return;
  }
  if (typeof v === 'object' && isPlainObject(v)) {
    // Keys sort by their encoded bytes (RFC 8949 §4.2.1), i.e. shorter first, then bytewise.
    const entries = Object.keys(v).map((k) => {
      const kw = new Writer();
      write(kw, k, depth + 1);
      return { key: kw.result(), value: v[k] };
    });
    entries.sort((a, b) => compareBytes(a.key, b.key));
    head(w, 5, entries.length);
    for (const e of entries) {
      w.bytes(e.key);
      write(w, e.value, depth + 1);
    }
    return;
  }
  throw new IotkxError('bad-value', `cbor: cannot encode ${typeof v === 'object' ? 'this object' : typeof v}`);
}

/** Deterministic CBOR of `value`; NaN, ±Infinity, undefined and unsupported types are 'bad-value'. */
export function encodeCbor(value: unknown): Uint8Array {
  const w = new Writer();
  write(w, value, 0);
  return w.result();
}

// ---------------------------------------------------------------- decoder

const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function nonDet(message: string): never {
  throw new IotkxError('non-deterministic-cbor', `cbor: ${message}`);
}
function bad(message: string): never {
  throw new IotkxError('bad-cbor', `cbor: ${message}`);
}

class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}
  byte(): number {
    if (this.pos >= this.buf.length) bad('truncated');
    return this.buf[this.pos++];
  }
  take(n: number): Uint8Array {
    if (n > this.buf.length - this.pos) bad('truncated');
    const out = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  uint(size: number): bigint {
    let n = 0n;
    for (let i = 0; i < size; i++) n = (n << 8n) | BigInt(this.byte());
    return n;
  }
}

/** The argument of a head for majors 0–5, refusing a longer form than needed. */
function argument(r: Reader, info: number): bigint {
  if (info < 24) return BigInt(info);
  if (info === 31) nonDet('indefinite length');
  if (info > 27) bad(`reserved additional information ${info}`);
  const size = 1 << (info - 24);
  const n = r.uint(size);
  const min = size === 1 ? 24n : 1n << BigInt(4 * size); // 1 byte ≥ 24, 2 ≥ 2^8, 4 ≥ 2^16, 8 ≥ 2^32
  if (n < min) nonDet('integer or length not in its shortest form');
  return n;
}

function toNumberOrBigInt(n: bigint): number | bigint {
  return n >= -SAFE && n <= SAFE ? Number(n) : n;
}

/** A length that cannot exceed what is left (every item takes at least one byte). */
function length(r: Reader, info: number): number {
  const n = argument(r, info);
  if (n > BigInt(r.buf.length - r.pos)) bad('length beyond the end of the input');
  return Number(n);
}

function readFloat(r: Reader, info: number): number {
  let x: number;
  if (info === 25) {
    x = float16Value(Number(r.uint(2)));
  } else {
    const b = r.take(info === 26 ? 4 : 8);
    const view = new DataView(b.buffer);
    x = info === 26 ? view.getFloat32(0) : view.getFloat64(0);
  }
  if (!Number.isFinite(x)) throw new IotkxError('bad-value', 'cbor: NaN and ±Infinity are not allowed (PROTOCOL.md §7)');
  if (isCborInteger(x)) nonDet('integral float (must be an integer)');
  if (info > 25 && float16Bits(x) >= 0) nonDet('float fits in float16');
  if (info === 27 && Math.fround(x) === x) nonDet('float fits in float32');
  return x;
}

function read(r: Reader, depth: number): CborValue {
  if (depth > CBOR_MAX_DEPTH) bad('nested too deeply');
  const ib = r.byte();
  const major = ib >> 5;
  const info = ib & 0x1f;
  switch (major) {
    case 0:
      return toNumberOrBigInt(argument(r, info));
    case 1:
      return toNumberOrBigInt(-1n - argument(r, info));
    case 2:
      return r.take(length(r, info));
    case 3: {
      const b = r.take(length(r, info));
      try {
        return utf8Decode(b);
      } catch {
        return bad('invalid UTF-8 in a text string');
      }
    }
    case 4: {
      const n = length(r, info);
      const out: CborValue[] = [];
      for (let i = 0; i < n; i++) out.push(read(r, depth + 1));
      return out;
    }
    case 5: {
      const n = length(r, info);
      const out: { [key: string]: CborValue } = {};
      let prev: Uint8Array | undefined;
      for (let i = 0; i < n; i++) {
        const start = r.pos;
        if (r.buf[start] >> 5 !== 3) bad('map key is not a text string');
        const key = read(r, depth + 1) as string;
        const encoded = r.buf.subarray(start, r.pos);
        if (prev && compareBytes(prev, encoded) >= 0) nonDet('map keys unsorted or duplicated');
        prev = encoded;
        // defineProperty: a key "__proto__" must stay data, not set the prototype.
        Object.defineProperty(out, key, { value: read(r, depth + 1), enumerable: true, writable: true, configurable: true });
      }
      return out;
    }
    case 6:
      return bad('tags are not allowed');
    default:
      if (info === 20) return false;
      if (info === 21) return true;
      if (info === 22) return null;
      if (info >= 25 && info <= 27) return readFloat(r, info);
      if (info === 31) return bad('unexpected break');
      return bad(`simple value ${info === 24 ? r.byte() : info} is not allowed`);
  }
}

/**
 * Decode one deterministically encoded CBOR item that fills `bytes` exactly.
 * Valid CBOR in another form is 'non-deterministic-cbor'; malformed or unsupported
 * input (truncated, trailing bytes, tags, undefined, invalid UTF-8) is 'bad-cbor';
 * NaN/±Infinity is 'bad-value'.
 */
export function decodeCbor(bytes: Uint8Array): CborValue {
  check(bytes instanceof Uint8Array, 'bad-cbor', 'cbor: expected bytes');
  const r = new Reader(bytes);
  const value = read(r, 0);
  if (r.pos !== bytes.length) bad('trailing bytes after the item');
  return value;
}
