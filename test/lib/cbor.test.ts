import { decode as cborxDecode } from 'cbor-x';
import { randomBytes } from 'node:crypto';
import { decodeCbor, encodeCbor, float16Bits, float16Value } from '../../lib/cbor.js';
import { ENCODE_CASES, REJECT_CASES, describe as show, probe } from '../helpers/cbor-cases.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const unhex = (h: string) => new Uint8Array(Buffer.from(h, 'hex'));

/** cbor-x's view of a value, normalised to ours (Buffer → Uint8Array, 64-bit ints to our number/bigint rule). */
function normalise(v: any): any {
  if (typeof v === 'bigint') return v >= -BigInt(Number.MAX_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  if (typeof v === 'number' && Number.isInteger(v) && !Number.isSafeInteger(v) && Math.abs(v) < 2 ** 64) return v; // lossy in cbor-x; compared by describe below
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (Array.isArray(v)) return v.map(normalise);
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [k, normalise(x)]));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalise(x)]));
  return v;
}

describe.each(ENCODE_CASES)('%s', (_label, value, expected) => {
  test('encodes to the expected bytes and decodes back, as cbor-x reads it too', () => {
    expect(hex(encodeCbor(value))).toBe(expected);
    const decoded = decodeCbor(unhex(expected));
    // Our decoder returns numbers inside the safe range and bigints outside; compare by description.
    const want = typeof value === 'number' && Number.isInteger(value) && !Number.isSafeInteger(value) && value >= -(2 ** 64) && value < 2 ** 64 ? BigInt(value) : value;
    expect(show(decoded)).toBe(show(want));
    const theirs = normalise(cborxDecode(Buffer.from(unhex(expected))));
    if (typeof theirs === 'number' && typeof decoded === 'bigint') expect(BigInt(theirs) === decoded || theirs === Number(decoded)).toBe(true);
    else expect(show(theirs)).toBe(show(decoded));
  });
});

describe.each(REJECT_CASES)('refuses %s', (_label, input, code) => {
  test(`with ${code}`, () => {
    expect(() => decodeCbor(unhex(input))).toThrow(expect.objectContaining({ code }));
  });
});

test('encoder refuses NaN, ±Infinity, undefined, out-of-range bigints and non-plain objects', () => {
  for (const v of [NaN, Infinity, -Infinity, { t: 1, x: NaN }, [Infinity], undefined, { a: undefined }, 2n ** 64n, -(2n ** 64n) - 1n,
    new Map(), new Date(0), () => 1, Symbol('x'), new Uint16Array(2)]) {
    expect(() => encodeCbor(v)).toThrow(expect.objectContaining({ code: 'bad-value' }));
  }
});

test('"__proto__" decodes as an ordinary key, not a prototype', () => {
  const v = decodeCbor(encodeCbor(JSON.parse('{"__proto__": 1}'))) as any;
  expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
  expect(Object.keys(v)).toEqual(['__proto__']);
});

test('float16 conversion is exact for all 65536 bit patterns', () => {
  // Independent reference: DataView has no float16 in Node 20, so decode by the IEEE formula
  // on one side and re-derive bits from the value with our encoder on the other.
  for (let bits = 0; bits < 0x10000; bits++) {
    const e = (bits >> 10) & 0x1f;
    if (e === 0x1f) continue; // NaN/Inf
    const x = float16Value(bits);
    const ref = (bits & 0x8000 ? -1 : 1) * (e === 0 ? (bits & 0x3ff) / 1024 * 2 ** -14 : (1 + (bits & 0x3ff) / 1024) * 2 ** (e - 15));
    expect(Object.is(x, ref)).toBe(true);
    expect(float16Bits(x)).toBe(bits);
  }
  expect(float16Bits(65504)).toBe(0x7bff);
  expect(float16Bits(65505)).toBe(-1);
  expect(float16Bits(65520)).toBe(-1); // rounds to Infinity in binary16: not exact
  expect(float16Bits(2 ** -25)).toBe(-1);
  expect(float16Bits(1 + 2 ** -11)).toBe(-1);
});

/** A random value of the kinds readings hold, with floats of every width. */
function randomValue(depth: number): unknown {
  const r = Math.random();
  const buf = randomBytes(8);
  const dv = new DataView(buf.buffer, buf.byteOffset, 8);
  if (depth > 2 || r < 0.5) {
    switch (Math.floor(Math.random() * 9)) {
      case 0: return Math.floor(Math.random() * 2 ** 40) - 2 ** 39;
      case 1: return dv.getBigUint64(0) - (Math.random() < 0.5 ? 0n : 2n ** 64n);
      case 2: { const f = float16Value(dv.getUint16(0)); return Number.isFinite(f) ? f : 0.5; }
      case 3: { const f = dv.getFloat32(0); return Number.isFinite(f) ? f : -0; }
      case 4: { const f = dv.getFloat64(0); return Number.isFinite(f) ? f : 1.25; }
      case 5: return new Uint8Array(randomBytes(Math.floor(Math.random() * 30)));
      case 6: return String.fromCodePoint(...Array.from({ length: Math.floor(Math.random() * 6) }, () => Math.floor(Math.random() * 0x2ffff) % 0xd800));
      case 7: return [true, false, null][Math.floor(Math.random() * 3)];
      default: return Math.random() * 100 - 50;
    }
  }
  if (r < 0.75) return Array.from({ length: Math.floor(Math.random() * 5) }, () => randomValue(depth + 1));
  const o: Record<string, unknown> = {};
  for (let i = Math.floor(Math.random() * 5); i > 0; i--) o[randomBytes(Math.ceil(Math.random() * 3)).toString('base64url')] = randomValue(depth + 1);
  return o;
}

test('property: random values round-trip, re-encode identically, and cbor-x agrees on the decoding', () => {
  for (let i = 0; i < 2000; i++) {
    const v = randomValue(0);
    const b = encodeCbor(v);
    const d = decodeCbor(b);
    expect(hex(encodeCbor(d))).toBe(hex(b));
    const theirs = cborxDecode(Buffer.from(b));
    // cbor-x returns 64-bit integers beyond 2^53 as lossy numbers or bigints: compare as bigint then.
    expect(show(normalise(theirs)).replace(/(\d+)n/g, '$1')).toBe(show(d).replace(/(\d+)n/g, '$1'));
  }
});

test('property: the decoder accepts only canonical bytes (random mutations)', () => {
  let accepted = 0;
  for (let i = 0; i < 5000; i++) {
    const b = encodeCbor(randomValue(0));
    const m = b.slice();
    for (let k = 1 + Math.floor(Math.random() * 2); k > 0; k--) m[Math.floor(Math.random() * m.length)] ^= 1 << Math.floor(Math.random() * 8);
    let d: unknown;
    try { d = decodeCbor(m); } catch (e: any) {
      expect(['bad-cbor', 'non-deterministic-cbor', 'bad-value']).toContain(e.code);
      continue;
    }
    accepted++;
    expect(hex(encodeCbor(d))).toBe(hex(m));
  }
  expect(accepted).toBeGreaterThan(100);
});

test('probe helper (used on XS) matches the direct results', () => {
  expect(probe(['f98000', '1bffffffffffffffff', 'f97e00'])).toEqual(['f64:8000000000000000', '18446744073709551615n', 'error:bad-value']);
});
