import '../helpers/node-random.js';
import { hkdfSync } from 'node:crypto';
import { wycheproof } from '../helpers/vectors.js';
import { runAeadVectors, runEcdhCases, runHkdfVectors } from '../helpers/crypto-vectors.js';
import { ecdhCases } from '../helpers/ecdh-cases.js';
import { hkdfSha256 } from '../../lib/kdf.js';
import { aeadOpen, aeadSeal } from '../../lib/aead.js';

const count = (file: any, result: string) =>
  file.testGroups.reduce((n: number, g: any) => n + g.tests.filter((t: any) => t.result === result).length, 0);

describe('HKDF-SHA256', () => {
  test('Wycheproof hkdf_sha256: every valid vector matches, every invalid one is refused', () => {
    const file = wycheproof('hkdf_sha256_test.json');
    expect(count(file, 'valid')).toBeGreaterThan(80);
    expect(runHkdfVectors(file)).toEqual([]);
  });

  test('absent salt equals 32 zero bytes (RFC 5869 §2.2), against node:crypto', () => {
    const ikm = new Uint8Array(65).fill(3);
    const ours = hkdfSha256(ikm, undefined, undefined, 32);
    expect(Buffer.from(ours)).toEqual(Buffer.from(hkdfSync('sha256', ikm, Buffer.alloc(32), Buffer.alloc(0), 32)));
  });

  test('refuses lengths outside 1..8160', () => {
    expect(() => hkdfSha256(new Uint8Array(1), undefined, undefined, 8161)).toThrow(expect.objectContaining({ code: 'bad-length' }));
    expect(() => hkdfSha256(new Uint8Array(1), undefined, undefined, 0)).toThrow(expect.objectContaining({ code: 'bad-length' }));
  });
});

describe('XChaCha20-Poly1305', () => {
  test('Wycheproof xchacha20_poly1305: valid vectors seal and open, invalid ones are refused', () => {
    const file = wycheproof('xchacha20_poly1305_test.json');
    expect(count(file, 'invalid')).toBeGreaterThan(60);
    expect(runAeadVectors(file)).toEqual([]);
  });

  test('codes: wrong key/nonce length is bad-length, any flipped bit auth-failed', () => {
    const key = new Uint8Array(32).fill(1);
    const nonce = new Uint8Array(24).fill(2);
    const aad = Uint8Array.of(9);
    const sealed = aeadSeal(key, nonce, Uint8Array.of(1, 2, 3), aad);
    expect(sealed.length).toBe(19);
    expect(() => aeadSeal(key.subarray(1), nonce, sealed)).toThrow(expect.objectContaining({ code: 'bad-length' }));
    expect(() => aeadOpen(key, nonce.subarray(1), sealed)).toThrow(expect.objectContaining({ code: 'bad-length' }));
    expect(() => aeadOpen(key, nonce, sealed.subarray(0, 15))).toThrow(expect.objectContaining({ code: 'bad-length' }));
    for (let i = 0; i < sealed.length * 8; i++) {
      const bad = sealed.slice();
      bad[i >> 3] ^= 1 << (i & 7);
      expect(() => aeadOpen(key, nonce, bad, aad)).toThrow(expect.objectContaining({ code: 'auth-failed' }));
    }
    expect(() => aeadOpen(key, nonce, sealed)).toThrow(expect.objectContaining({ code: 'auth-failed' }));
    expect(aeadOpen(key, nonce, sealed, aad)).toEqual(Uint8Array.of(1, 2, 3));
  });
});

describe('ECDH through lib/secp256k1', () => {
  test('Wycheproof ecdh_secp256k1: valid shared secrets match, invalid keys are refused', () => {
    const cases = ecdhCases(wycheproof('ecdh_secp256k1_test.json'));
    const { failed, refusedByUs } = runEcdhCases(cases);
    expect(failed).toEqual([]);
    // The off-curve points in the standard DER form reach lib/ and are refused there.
    const offCurve = cases.filter((c) => c.result === 'invalid' && c.pub).map((c) => c.tcId);
    expect(offCurve.length).toBe(18);
    expect(refusedByUs).toEqual(expect.arrayContaining(offCurve));
    expect(cases.filter((c) => c.result === 'valid').length).toBeGreaterThan(470);
  });
});
