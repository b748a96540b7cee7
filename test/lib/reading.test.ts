import '../helpers/node-random.js';
import { decode as cborxDecode } from 'cbor-x';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { nodeRandom } from '../helpers/node-random.js';
import { fixedRandom } from '../helpers/crypto-vectors.js';
import { encodeCbor } from '../../lib/cbor.js';
import { decodeEnvelope, encodeEnvelope, MAX_ENVELOPE_BYTES, type Envelope } from '../../lib/envelope.js';
import { openReading, sealReading } from '../../lib/reading.js';

const dataKey = new Uint8Array(32).map((_, i) => i + 100);
const device = new Uint8Array(20).map((_, i) => 0xd0 + i);
const values = { t: 1700000000, temp: 21.5, rh: 40.25 };
const u64 = (x: bigint) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(x); return b; };
const seal = (over: Partial<Parameters<typeof sealReading>[0]> = {}) =>
  sealReading({ dataKey, device, epoch: 3n, seq: 7n, values, random: nodeRandom, ...over });
const code = (c: string) => expect.objectContaining({ code: c });

test('round trip, and an independent opener (cbor-x + noble AEAD) reads the same reading', () => {
  const env = seal();
  expect(openReading(dataKey, env)).toEqual({ device, epoch: 3n, seq: 7n, values });
  const [version, dev, epoch, seq, nonce, ct] = cborxDecode(Buffer.from(env));
  expect([version, Number(epoch), Number(seq)]).toEqual([1, 3, 7]);
  expect(Buffer.from(nonce.subarray(0, 8))).toEqual(u64(7n));
  const aad = Buffer.concat([Buffer.from('iotkx/1/reading'), dev, u64(3n), u64(7n)]);
  const pt = xchacha20poly1305(dataKey, new Uint8Array(nonce), aad).decrypt(new Uint8Array(ct));
  expect(cborxDecode(Buffer.from(pt))).toEqual(values);
  expect(Buffer.from(pt)).toEqual(Buffer.from(encodeCbor(values)));
});

test('an envelope built by hand (independent code) opens', () => {
  const nonce = Buffer.concat([u64(9n), Buffer.alloc(16, 0xab)]);
  const aad = Buffer.concat([Buffer.from('iotkx/1/reading'), device, u64(1n), u64(9n)]);
  // {"t": 1} as CBOR: a1 61 74 01
  const ct = xchacha20poly1305(dataKey, nonce, aad).encrypt(Uint8Array.of(0xa1, 0x61, 0x74, 0x01));
  const env = Buffer.concat([Buffer.from([0x86, 0x01, 0x54]), device, Buffer.from([0x01, 0x09, 0x58, 0x18]), nonce, Buffer.from([0x54]), ct]);
  expect(openReading(dataKey, new Uint8Array(env))).toEqual({ device, epoch: 1n, seq: 9n, values: { t: 1 } });
});

test('fixed Random gives fixed bytes; nonce is u64be(seq) || 16 random bytes', () => {
  const a = seal({ random: fixedRandom(5) });
  expect(a).toEqual(seal({ random: fixedRandom(5) }));
  const e = decodeEnvelope(a);
  expect(Buffer.from(e.nonce)).toEqual(Buffer.concat([u64(7n), fixedRandom(5).bytes(16)]));
});

test('tampering with any byte fails', () => {
  const env = seal();
  for (let i = 0; i < env.length; i++) {
    const bad = env.slice();
    bad[i] ^= 0x01;
    expect(() => openReading(dataKey, bad)).toThrow();
  }
  // Changes that keep the envelope well-formed are authentication failures.
  const e = decodeEnvelope(env);
  const variants: Envelope[] = [
    { ...e, device: e.device.map((b, i) => (i === 0 ? b ^ 1 : b)) },
    { ...e, epoch: 4n },
    { ...e, nonce: e.nonce.map((b, i) => (i === 23 ? b ^ 1 : b)) },
    { ...e, ciphertext: e.ciphertext.map((b, i) => (i === 0 ? b ^ 1 : b)) },
    { ...e, ciphertext: e.ciphertext.map((b, i, a) => (i === a.length - 1 ? b ^ 1 : b)) },
  ];
  for (const v of variants) {
    expect(() => openReading(dataKey, v)).toThrow(code('auth-failed'));
    expect(() => openReading(dataKey, encodeEnvelope(v))).toThrow(code('auth-failed'));
  }
  expect(() => openReading(new Uint8Array(32), env)).toThrow(code('auth-failed'));
});

test('a nonce that does not start with u64be(seq) is refused before authentication', () => {
  const e = decodeEnvelope(seal());
  expect(() => openReading(dataKey, { ...e, seq: 8n })).toThrow(code('bad-nonce'));
  expect(() => openReading(dataKey, { ...e, nonce: e.nonce.map((b, i) => (i === 7 ? b ^ 1 : b)) })).toThrow(code('bad-nonce'));
});

test('seal refuses readings without an integer t, with NaN/Infinity, or not a map', () => {
  for (const v of [{}, { t: 1.5 }, { t: '1' }, { t: 1, temp: NaN }, { t: 1, x: [Infinity] }, { t: 1, x: -Infinity }, [1], null, new Map([['t', 1]])]) {
    expect(() => seal({ values: v as any })).toThrow(code('bad-reading'));
  }
  expect(() => seal({ seq: 0n })).toThrow(code('bad-envelope'));
  expect(() => seal({ epoch: 2n ** 64n })).toThrow(code('bad-envelope'));
  expect(() => seal({ device: device.subarray(1) })).toThrow(code('bad-envelope'));
  expect(openReading(dataKey, seal({ values: { t: 2n ** 63n, big: -(2n ** 64n) }, epoch: 2n ** 64n - 1n, seq: 2n ** 64n - 1n })).values)
    .toEqual({ t: 2n ** 63n, big: -(2n ** 64n) });
});

test('open refuses authentic plaintexts that break the reading rules', () => {
  const sealRaw = (pt: Uint8Array, seq = 1n) => {
    const nonce = Buffer.concat([u64(seq), Buffer.alloc(16, 1)]);
    const aad = Buffer.concat([Buffer.from('iotkx/1/reading'), device, u64(1n), u64(seq)]);
    return { device, epoch: 1n, seq, nonce: new Uint8Array(nonce), ciphertext: xchacha20poly1305(dataKey, nonce, aad).encrypt(pt) };
  };
  const h = (x: string) => new Uint8Array(Buffer.from(x, 'hex'));
  for (const pt of ['83010203', 'a0', 'a16174f93e00', 'a161746131', 'a2617401617af97e00', 'a2617401617af97c00', 'a161741801', 'a2617a01617401', '', 'a1617401ff']) {
    expect(() => openReading(dataKey, sealRaw(h(pt)))).toThrow(code('bad-reading'));
  }
  expect(openReading(dataKey, sealRaw(h('a1617401'))).values).toEqual({ t: 1 });
});

describe('envelope decoding is strict', () => {
  const e = decodeEnvelope(seal());
  const enc = (items: unknown[]) => encodeCbor(items);
  const base = [1, e.device, 3, 7, e.nonce, e.ciphertext];
  const cases: [string, Uint8Array, string][] = [
    ['version 2', enc([2, ...base.slice(1)]), 'bad-envelope'],
    ['version 0', enc([0, ...base.slice(1)]), 'bad-envelope'],
    ['5 items', enc(base.slice(0, 5)), 'bad-envelope'],
    ['7 items', enc([...base, 0]), 'bad-envelope'],
    ['a map', encodeCbor({ v: 1 }), 'bad-envelope'],
    ['device 19 bytes', enc([1, e.device.subarray(1), ...base.slice(2)]), 'bad-envelope'],
    ['device as text', enc([1, 'x'.repeat(20), ...base.slice(2)]), 'bad-envelope'],
    ['epoch 0', enc([1, e.device, 0, ...base.slice(3)]), 'bad-envelope'],
    ['seq 0', enc([1, e.device, 3, 0, ...base.slice(4)]), 'bad-envelope'],
    ['seq negative', enc([1, e.device, 3, -1, ...base.slice(4)]), 'bad-envelope'],
    ['seq float', enc([1, e.device, 3, 7.5, ...base.slice(4)]), 'bad-envelope'],
    ['seq 2^64 (float)', enc([1, e.device, 3, 2 ** 64, ...base.slice(4)]), 'bad-envelope'],
    ['nonce 23 bytes', enc([...base.slice(0, 4), e.nonce.subarray(1), e.ciphertext]), 'bad-envelope'],
    ['ciphertext 15 bytes', enc([...base.slice(0, 5), e.ciphertext.subarray(0, 15)]), 'bad-envelope'],
    ['trailing byte', new Uint8Array([...enc(base), 0]), 'bad-envelope'],
    ['tagged', new Uint8Array([0xc0, ...enc(base)]), 'bad-envelope'],
    ['truncated', enc(base).subarray(0, 30), 'bad-envelope'],
    ['seq in a long form', (() => { const b = enc(base); const i = 1 + 1 + 21 + 1; expect(b[i]).toBe(7); return new Uint8Array([...b.subarray(0, i), 0x18, 7, ...b.subarray(i + 1)]); })(), 'non-deterministic-cbor'],
    ['over 4 KiB', enc([...base.slice(0, 5), new Uint8Array(MAX_ENVELOPE_BYTES)]), 'envelope-too-large'],
  ];
  test.each(cases)('%s', (_label, bytes, c) => {
    expect(() => decodeEnvelope(bytes)).toThrow(code(c));
  });
  test('the well-formed base decodes', () => {
    expect(decodeEnvelope(enc(base))).toEqual(e);
  });
  test('encode refuses a plaintext that would exceed 4 KiB', () => {
    expect(() => seal({ values: { t: 1, blob: new Uint8Array(4100) } })).toThrow(code('envelope-too-large'));
  });
});
