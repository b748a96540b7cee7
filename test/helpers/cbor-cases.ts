/**
 * Deterministic-CBOR cases shared by the Node and XS tests (portable: values such
 * as −0 and NaN cannot cross the JSON boundary to XS, so both sides build them here).
 */
import { decodeCbor } from '../../lib/cbor.js';
import { bytesToHex } from '../../lib/bytes.js';

/** [label, value, expected hex]: encode(value) must equal hex and decode(hex) must give value back. */
export const ENCODE_CASES: [string, unknown, string][] = [
  // RFC 8949 Appendix A, the examples that are already deterministic under §4.2.1 and PROTOCOL.md §2.
  ['0', 0, '00'], ['1', 1, '01'], ['10', 10, '0a'], ['23', 23, '17'], ['24', 24, '1818'], ['25', 25, '1819'],
  ['100', 100, '1864'], ['1000', 1000, '1903e8'], ['1000000', 1000000, '1a000f4240'],
  ['1000000000000', 1000000000000, '1b000000e8d4a51000'],
  ['2^64-1 (bigint)', 18446744073709551615n, '1bffffffffffffffff'],
  ['-2^64 (bigint)', -18446744073709551616n, '3bffffffffffffffff'],
  ['-1', -1, '20'], ['-10', -10, '29'], ['-100', -100, '3863'], ['-1000', -1000, '3903e7'],
  ['-0.0', -0, 'f98000'], ['1.1', 1.1, 'fb3ff199999999999a'], ['1.5', 1.5, 'f93e00'],
  ['3.4028234663852886e38', 3.4028234663852886e38, 'fa7f7fffff'], ['1e300', 1.0e300, 'fb7e37e43c8800759c'],
  ['5.960464477539063e-8', 5.960464477539063e-8, 'f90001'], ['0.00006103515625', 0.00006103515625, 'f90400'],
  ['-4.1', -4.1, 'fbc010666666666666'],
  ['false', false, 'f4'], ['true', true, 'f5'], ['null', null, 'f6'],
  ["h''", new Uint8Array(0), '40'], ["h'01020304'", Uint8Array.of(1, 2, 3, 4), '4401020304'],
  ['""', '', '60'], ['"a"', 'a', '6161'], ['"IETF"', 'IETF', '6449455446'], ['"\\"\\\\"', '"\\', '62225c'],
  ['"\\u00fc"', '\u00fc', '62c3bc'], ['"\\u6c34"', '\u6c34', '63e6b0b4'], ['"\\ud800\\udd51"', '\ud800\udd51', '64f0908591'],
  ['[]', [], '80'], ['[1,2,3]', [1, 2, 3], '83010203'], ['[1,[2,3],[4,5]]', [1, [2, 3], [4, 5]], '8301820203820405'],
  ['[1..25]', Array.from({ length: 25 }, (_, i) => i + 1), '98190102030405060708090a0b0c0d0e0f101112131415161718181819'],
  ['{}', {}, 'a0'], ['{"a":1,"b":[2,3]}', { a: 1, b: [2, 3] }, 'a26161016162820203'],
  ['["a",{"b":"c"}]', ['a', { b: 'c' }], '826161a161626163'],
  ['{"a".."e"}', { e: 'E', d: 'D', c: 'C', b: 'B', a: 'A' }, 'a56161614161626142616361436164614461656145'],
  // Key order: by encoded bytes, so shorter keys first, whatever JS's own order.
  ['{"aa":1,"b":2}', { aa: 1, b: 2 }, 'a261620262616101'],
  ['{"10":1,"9":2}', { 10: 1, 9: 2 }, 'a261390262313001'],
  ['{"b":1,"a":2,"":3}', { b: 1, a: 2, '': 3 }, 'a36003616102616201'],
  // Integer boundaries (shortest head).
  ['255', 255, '18ff'], ['256', 256, '190100'], ['65535', 65535, '19ffff'], ['65536', 65536, '1a00010000'],
  ['2^32-1', 4294967295, '1affffffff'], ['2^32', 4294967296, '1b0000000100000000'],
  ['-24', -24, '37'], ['-25', -25, '3818'], ['-256', -256, '38ff'], ['-257', -257, '390100'],
  ['2^53 (number)', 2 ** 53, '1b0020000000000000'], ['2^53+2 (number)', 2 ** 53 + 2, '1b0020000000000002'],
  ['2^64-2048 (number)', 2 ** 64 - 2048, '1bfffffffffffff800'], ['-2^64 (number)', -(2 ** 64), '3bffffffffffffffff'],
  ['2^64 (number, float)', 2 ** 64, 'fa5f800000'], ['-(2^64+4096) (float)', -(2 ** 64 + 4096), 'fbc3f0000000000001'],
  ['1e19 (number, integer)', 1e19, '1b8ac7230489e80000'],
  // Float widths: every boundary.
  ['0.5', 0.5, 'f93800'], ['-0.5', -0.5, 'f9b800'], ['1023.5 (f16 max step 0.5)', 1023.5, 'f963ff'],
  ['2047.5 (f16 step is 1 there)', 2047.5, 'fa44fff000'], ['65504.5', 65504.5, 'fa477fe080'], ['1024.5', 1024.5, 'fa44801000'],
  ['2^-24 (f16 min subnormal)', 2 ** -24, 'f90001'], ['-2^-24', -(2 ** -24), 'f98001'], ['3·2^-24', 3 * 2 ** -24, 'f90003'],
  ['1023·2^-24 (f16 max subnormal)', 1023 * 2 ** -24, 'f903ff'], ['2^-14 (f16 min normal)', 2 ** -14, 'f90400'],
  ['2^-25 (below f16)', 2 ** -25, 'fa33000000'], ['3·2^-25 (f16 subnormal needs one more bit)', 3 * 2 ** -25, 'fa33c00000'],
  ['(1+2^-10)·2^-14', (1 + 2 ** -10) * 2 ** -14, 'f90401'], ['(1+2^-11)·2^-14', (1 + 2 ** -11) * 2 ** -14, 'fa38801000'],
  ['32767.5', 32767.5, 'fa46ffff00'], ['0.1', 0.1, 'fb3fb999999999999a'], ['fround(0.1)', Math.fround(0.1), 'fa3dcccccd'],
  ['1/3', 1 / 3, 'fb3fd5555555555555'], ['100000.5', 100000.5, 'fa47c35040'], ['16777216.5', 16777216.5, 'fb4170000008000000'],
  ['2^-149 (f32 min subnormal)', 2 ** -149, 'fa00000001'], ['2^-126 (f32 min normal)', 2 ** -126, 'fa00800000'],
  ['2^-150 (below f32)', 2 ** -150, 'fb3690000000000000'], ['2^128 (above f32)', 2 ** 128, 'fb47f0000000000000'],
  ['f32 max', 3.4028234663852886e38, 'fa7f7fffff'], ['5e-324', 5e-324, 'fb0000000000000001'],
  ['f64 max', Number.MAX_VALUE, 'fb7fefffffffffffff'], ['-1e-7', -1e-7, 'fbbe7ad7f29abcaf48'],
  ['a reading', { temp: 21.5, rh: 40.25, t: 1700000000 }, 'a361741a6553f100627268f951086474656d70f94d60'],
];

/** [label, hex, expected code]: decode must refuse. */
export const REJECT_CASES: [string, string, string][] = [
  ['24 in 1 byte < 24', '1817', 'non-deterministic-cbor'], ['1 in 2 bytes', '190001', 'non-deterministic-cbor'],
  ['255 in 2 bytes', '1900ff', 'non-deterministic-cbor'], ['65535 in 4 bytes', '1a0000ffff', 'non-deterministic-cbor'],
  ['2^32-1 in 8 bytes', '1b00000000ffffffff', 'non-deterministic-cbor'], ['-1 in 1 byte', '3800', 'non-deterministic-cbor'],
  ['bstr length long', '580100', 'non-deterministic-cbor'], ['tstr length long', '780161', 'non-deterministic-cbor'],
  ['array length long', '980100', 'non-deterministic-cbor'], ['map length long', 'b800', 'non-deterministic-cbor'],
  ['indefinite bstr', '5fff', 'non-deterministic-cbor'], ['indefinite tstr', '7fff', 'non-deterministic-cbor'],
  ['indefinite array', '9f01ff', 'non-deterministic-cbor'], ['indefinite map', 'bf616101ff', 'non-deterministic-cbor'],
  ['unsorted keys', 'a2616201616102', 'non-deterministic-cbor'], ['longer key first', 'a262616101616202', 'non-deterministic-cbor'],
  ['duplicate keys', 'a2616101616102', 'non-deterministic-cbor'],
  ['+0.0 (integral float)', 'f90000', 'non-deterministic-cbor'], ['1.0 as f16', 'f93c00', 'non-deterministic-cbor'],
  ['1.5 as f32', 'fa3fc00000', 'non-deterministic-cbor'], ['1.5 as f64', 'fb3ff8000000000000', 'non-deterministic-cbor'],
  ['fround(0.1) as f64', 'fb3fb99999a0000000', 'non-deterministic-cbor'], ['100000.0 as f32', 'fa47c35000', 'non-deterministic-cbor'],
  ['-0.0 as f32', 'fa80000000', 'non-deterministic-cbor'], ['-0.0 as f64', 'fb8000000000000000', 'non-deterministic-cbor'],
  ['2^64-2^40 as f32 (integral, in range)', 'fa5f7fffff', 'non-deterministic-cbor'], ['-2^64 as f32', 'fadf800000', 'non-deterministic-cbor'],
  ['f16 subnormal as f32', 'fa33800000', 'non-deterministic-cbor'],
  ['NaN', 'f97e00', 'bad-value'], ['Infinity', 'f97c00', 'bad-value'], ['-Infinity', 'f9fc00', 'bad-value'],
  ['NaN f64', 'fb7ff8000000000000', 'bad-value'],
  ['trailing bytes', '0000', 'bad-cbor'], ['empty', '', 'bad-cbor'], ['truncated head', '1901', 'bad-cbor'],
  ['truncated tstr', '6261', 'bad-cbor'], ['truncated array', '8201', 'bad-cbor'], ['truncated map', 'a16161', 'bad-cbor'],
  ['huge length', '5bffffffffffffffff', 'bad-cbor'], ['reserved info 28', '1c', 'bad-cbor'], ['reserved info 30 in map', 'be', 'bad-cbor'],
  ['tag 0', 'c06161', 'bad-cbor'], ['bignum tag', 'c24101', 'bad-cbor'], ['undefined', 'f7', 'bad-cbor'],
  ['simple 16', 'f0', 'bad-cbor'], ['simple 32 (2 bytes)', 'f820', 'bad-cbor'], ['lone break', 'ff', 'bad-cbor'],
  ['overlong UTF-8', '62c080', 'bad-cbor'], ['invalid UTF-8', '61ff', 'bad-cbor'], ['surrogate in UTF-8', '63eda080', 'bad-cbor'],
  ['integer key', 'a10102', 'bad-cbor'], ['bstr key', 'a1416101', 'bad-cbor'],
  ['nested 17 deep', '81'.repeat(17) + '00', 'bad-cbor'],
];

/**
 * A description of a decoded value that keeps what JSON would lose (−0, bigint vs
 * number, bytes vs array), so Node and XS results compare as strings. Keys are listed
 * sorted by JS order, so the description does not depend on insertion order.
 */
export function describe(v: unknown): string {
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v) && !Object.is(v, -0)) return String(v);
    // Floats by their bits: XS and V8 print some doubles differently (2^-25 ends …313e-8 on XS, …312e-8 on V8).
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v);
    return `f64:${bytesToHex(b)}`;
  }
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return JSON.stringify(v);
  if (v instanceof Uint8Array) return `h'${bytesToHex(v)}'`;
  if (Array.isArray(v)) return `[${v.map(describe).join(',')}]`;
  if (v && typeof v === 'object') return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${describe((v as any)[k])}`).join(',')}}`;
  return String(v);
}

/** Decode each hex: the value's description, or the error code. */
export function probe(hexes: string[]): string[] {
  return hexes.map((hex) => {
    try {
      const b = new Uint8Array(hex.length / 2);
      for (let i = 0; i < b.length; i++) b[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
      return describe(decodeCbor(b));
    } catch (e: any) {
      return `error:${e?.code}`;
    }
  });
}
