import '../helpers/node-random.js';
import { ECIES_CONFIG, decrypt, encrypt } from 'eciesjs';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { nodeRandom } from '../helpers/node-random.js';
import { hkdfSync } from 'node:crypto';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { aeadOpen } from '../../lib/aead.js';
import { unwrapKey, wrapKey, WRAPPED_KEY_BYTES } from '../../lib/ecies.js';

// PROTOCOL.md §2: eciesjs with xchacha20, everything else default. The config is
// global in eciesjs, so this file sets it for itself.
ECIES_CONFIG.symmetricAlgorithm = 'xchacha20';

const receiverSk = secp256k1.utils.randomSecretKey();
const receiverPub = secp256k1.getPublicKey(receiverSk, false);
const K = new Uint8Array(32).map((_, i) => i * 7 + 1);

test('our wrap is 137 bytes and eciesjs decrypts it', () => {
  const wrapped = wrapKey(receiverPub, K, nodeRandom);
  expect(wrapped.length).toBe(WRAPPED_KEY_BYTES);
  expect(WRAPPED_KEY_BYTES).toBe(137);
  expect(wrapped[0]).toBe(4);
  expect(decrypt(receiverSk, wrapped)).toEqual(K);
});

test('eciesjs encrypt opens with our unwrap, for several lengths', () => {
  for (const n of [0, 1, 32, 100]) {
    const msg = new Uint8Array(n).map((_, i) => i ^ 0x5a);
    expect(unwrapKey(receiverSk, encrypt(receiverPub, msg))).toEqual(msg);
  }
});

test('eciesjs output is P(65) || n(24) || tag(16) || ct, checked with independent HKDF and AEAD', () => {
  const wrapped = encrypt(receiverPub, K);
  expect(wrapped.length).toBe(137);
  const P = wrapped.subarray(0, 65);
  const n = wrapped.subarray(65, 89);
  const tag = wrapped.subarray(89, 105);
  const ct = wrapped.subarray(105);
  const S = secp256k1.getSharedSecret(receiverSk, P, false);
  const key = new Uint8Array(hkdfSync('sha256', Buffer.concat([P, S]), Buffer.alloc(0), Buffer.alloc(0), 32));
  expect(xchacha20poly1305(key, n).decrypt(Buffer.concat([ct, tag]))).toEqual(K);
  expect(aeadOpen(key, n, Buffer.concat([ct, tag]))).toEqual(K);
});

test('refuses an off-curve receiver key before wrapping', () => {
  const bad = receiverPub.slice();
  bad[64] ^= 1;
  expect(() => wrapKey(bad, K, nodeRandom)).toThrow(expect.objectContaining({ code: 'bad-point' }));
  expect(() => wrapKey(receiverPub.subarray(0, 33), K, nodeRandom)).toThrow(expect.objectContaining({ code: 'bad-point' }));
  expect(() => wrapKey(secp256k1.getPublicKey(receiverSk, true), K, nodeRandom)).toThrow(expect.objectContaining({ code: 'bad-point' }));
});

test('refuses an off-curve ephemeral point, bit flips and short input', () => {
  const wrapped = wrapKey(receiverPub, K, nodeRandom);
  const offCurve = wrapped.slice();
  offCurve[64] ^= 1;
  expect(() => unwrapKey(receiverSk, offCurve)).toThrow(expect.objectContaining({ code: 'bad-point' }));
  for (let i = 65; i < wrapped.length; i++) {
    const bad = wrapped.slice();
    bad[i] ^= 0x80;
    expect(() => unwrapKey(receiverSk, bad)).toThrow(expect.objectContaining({ code: 'auth-failed' }));
  }
  // A different valid ephemeral point: HKDF input changes, so the tag fails.
  const other = wrapped.slice();
  other.set(secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), false), 0);
  expect(() => unwrapKey(receiverSk, other)).toThrow(expect.objectContaining({ code: 'auth-failed' }));
  expect(() => unwrapKey(receiverSk, wrapped.subarray(0, 104))).toThrow(expect.objectContaining({ code: 'bad-length' }));
  expect(() => unwrapKey(secp256k1.utils.randomSecretKey(), wrapped)).toThrow(expect.objectContaining({ code: 'auth-failed' }));
  expect(unwrapKey(receiverSk, wrapped)).toEqual(K);
});
