import '../helpers/node-random.js';
import { getAddress, recoverAddress as viemRecoverAddress, toHex, keccak256, hexToBytes } from 'viem';
import { privateKeyToAccount, publicKeyToAddress, sign as viemSign } from 'viem/accounts';
import { addressHex, addressOf, parseAddress, toChecksumAddress } from '../../lib/address.js';
import { parseSignature, recoverAddress, signDigest, signatureBytes } from '../../lib/signature.js';
import { CURVE_ORDER, HALF_ORDER, getPublicKey } from '../../lib/secp256k1.js';
import { IotkxError } from '../../lib/errors.js';
import { wycheproof } from '../helpers/vectors.js';
import { SECRET_KEYS, wycheproofFailures } from './eth-cases.js';

function code(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return e instanceof IotkxError ? e.code : `not-iotkx: ${e}`; }
  return undefined;
}

const keys = [...SECRET_KEYS, ...Array.from({ length: 20 }, (_, i) => hexToBytes(keccak256(new Uint8Array([i]))))];

test('addressOf and EIP-55 match viem publicKeyToAddress / getAddress', () => {
  for (const sk of keys) {
    const pub = getPublicKey(sk);
    const expected = publicKeyToAddress(toHex(pub));
    expect(toChecksumAddress(addressOf(pub))).toBe(expected);
    expect(addressHex(addressOf(pub))).toBe(expected.toLowerCase());
    expect(toChecksumAddress(expected.toLowerCase())).toBe(getAddress(expected.toLowerCase()));
  }
});

test('EIP-55 spec examples', () => {
  // From the EIP-55 text.
  for (const a of ['0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed', '0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359',
    '0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB', '0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb']) {
    expect(toChecksumAddress(parseAddress(a))).toBe(a);
  }
});

test('parseAddress accepts lower, upper and EIP-55; refuses bad checksum and malformed input', () => {
  const a = '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed';
  const bytes = hexToBytes(a.toLowerCase() as any);
  expect(parseAddress(a)).toEqual(bytes);
  expect(parseAddress(a.toLowerCase())).toEqual(bytes);
  expect(parseAddress('0x' + a.slice(2).toUpperCase())).toEqual(bytes);
  expect(code(() => parseAddress('0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed'))).toBe('bad-address');
  for (const s of ['', '5aaeb6053f3e94c9b9a09f33669435e7ef1beaed', '0x5aaeb6053f3e94c9b9a09f33669435e7ef1beae',
    '0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaedd', '0X5aaeb6053f3e94c9b9a09f33669435e7ef1beaed', '0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaeg']) {
    expect(code(() => parseAddress(s))).toBe('bad-address');
  }
  expect(code(() => addressOf(new Uint8Array(64)))).toBe('bad-point');
});

test('signatures equal viem sign (RFC 6979, low-s) and recover like viem recoverAddress', async () => {
  for (const [i, sk] of keys.entries()) {
    const digest = hexToBytes(keccak256(new Uint8Array([i, 1, 2])));
    const sig = signDigest(digest, sk);
    expect(sig.s <= HALF_ORDER).toBe(true);
    const bytes = signatureBytes(sig);
    const theirs = await viemSign({ hash: toHex(digest), privateKey: toHex(sk), to: 'hex' });
    expect(toHex(bytes)).toBe(theirs);
    const account = privateKeyToAccount(toHex(sk));
    expect(addressHex(recoverAddress(digest, bytes))).toBe(account.address.toLowerCase());
    expect(addressHex(recoverAddress(digest, sig))).toBe(account.address.toLowerCase());
    expect((await viemRecoverAddress({ hash: toHex(digest), signature: theirs })).toLowerCase()).toBe(account.address.toLowerCase());
    expect(parseSignature(bytes)).toEqual(sig);
  }
});

test('parseSignature refuses wrong length, bad v, high-s, zero and ≥ n scalars', () => {
  const digest = new Uint8Array(32).fill(9);
  const good = signatureBytes(signDigest(digest, keys[0]));
  const withV = (v: number) => { const b = good.slice(); b[64] = v; return b; };
  expect(code(() => parseSignature(good.slice(0, 64)))).toBe('bad-signature');
  expect(code(() => parseSignature(new Uint8Array([...good, 0])))).toBe('bad-signature');
  for (const v of [0, 1, 26, 29, 37]) expect(code(() => parseSignature(withV(v)))).toBe('bad-signature');
  const { r, s } = parseSignature(good);
  const mk = (r: bigint, s: bigint) => hexToBytes(`0x${r.toString(16).padStart(64, '0')}${s.toString(16).padStart(64, '0')}1b`);
  expect(code(() => parseSignature(mk(r, CURVE_ORDER - s)))).toBe('high-s');
  expect(code(() => parseSignature(mk(r, HALF_ORDER + 1n)))).toBe('high-s');
  expect(parseSignature(mk(r, HALF_ORDER)).s).toBe(HALF_ORDER);
  expect(code(() => parseSignature(mk(0n, s)))).toBe('bad-signature');
  expect(code(() => parseSignature(mk(r, 0n)))).toBe('bad-signature');
  expect(code(() => parseSignature(mk(CURVE_ORDER, s)))).toBe('bad-signature');
  expect(code(() => parseSignature(mk((1n << 256n) - 1n, s)))).toBe('bad-signature');
  expect(code(() => signDigest(new Uint8Array(31), keys[0]))).toBe('bad-digest');
  expect(code(() => signDigest(digest, new Uint8Array(32)))).toBe('bad-key');
});

test('Wycheproof ecdsa_secp256k1_sha256_bitcoin: every valid passes, every invalid is refused', () => {
  const file = wycheproof('ecdsa_secp256k1_sha256_bitcoin_test.json');
  const results = file.testGroups.flatMap((g: any) => g.tests.map((t: any) => t.result));
  expect(results.filter((r: string) => r === 'acceptable')).toHaveLength(0);
  expect(results.length).toBe(463);
  expect(wycheproofFailures(file)).toEqual([]);
});
