/**
 * ECIES key wrap, byte-compatible with eciesjs 0.5 configured
 * `symmetricAlgorithm = "xchacha20"` and every other option at its default
 * (PROTOCOL.md §2): uncompressed ephemeral key, HKDF over uncompressed points.
 * Built on lib/secp256k1 rather than eciesjs itself: eciesjs pulls its own curve
 * with the default base table (522 KB retained on XS) and AES, neither of which
 * fits the device (XS-NOTES.md).
 *
 * Wire form, as eciesjs's utils/symmetric.js writes it: P(65) || n(24) || tag(16) || ct.
 */
import { aeadOpen, aeadSeal, AEAD_NONCE_BYTES, AEAD_TAG_BYTES } from './aead.js';
import { concatBytes } from './bytes.js';
import { check } from './errors.js';
import { hkdfSha256 } from './kdf.js';
import type { Random } from './platform.js';
import { assertPublicKey, getPublicKey, randomSecretKey, sharedPoint } from './secp256k1.js';

const POINT_BYTES = 65;
/** Shortest wrapped message: an empty plaintext. */
export const ECIES_OVERHEAD = POINT_BYTES + AEAD_NONCE_BYTES + AEAD_TAG_BYTES;
/** A wrapped 32-byte K: 137 bytes (PROTOCOL.md §2). */
export const WRAPPED_KEY_BYTES = ECIES_OVERHEAD + 32;

/** key = HKDF-SHA256(ikm = P || S, no salt, no info, L = 32) — eciesjs utils/hash.js getSharedKey. */
function wrapKeyOf(ephemeralPub: Uint8Array, shared: Uint8Array): Uint8Array {
  return hkdfSha256(concatBytes(ephemeralPub, shared), undefined, undefined, 32);
}

/**
 * Wrap `plaintext` (K) for the receiver's encryption key. The receiver key is
 * refused ('bad-point') before anything is derived. The ephemeral key comes from
 * the installed RNG (lib/secp256k1), the nonce from `random`.
 */
export function wrapKey(receiverPub: Uint8Array, plaintext: Uint8Array, random: Random): Uint8Array {
  assertPublicKey(receiverPub, 'ECIES receiver key');
  check(plaintext instanceof Uint8Array, 'bad-length', 'ecies: plaintext must be bytes');
  const k = randomSecretKey();
  const P = getPublicKey(k);
  const key = wrapKeyOf(P, sharedPoint(k, receiverPub));
  k.fill(0);
  const nonce = random.bytes(AEAD_NONCE_BYTES);
  check(nonce instanceof Uint8Array && nonce.length === AEAD_NONCE_BYTES, 'bad-random', 'ecies: random source returned a wrong length');
  const sealed = aeadSeal(key, nonce, plaintext);
  key.fill(0);
  const ct = sealed.subarray(0, sealed.length - AEAD_TAG_BYTES);
  const tag = sealed.subarray(sealed.length - AEAD_TAG_BYTES);
  return concatBytes(P, nonce, tag, ct);
}

/**
 * Unwrap with the receiver's encryption secret key. An ephemeral point off the
 * curve is 'bad-point' (reject reason 1, PROTOCOL.md §2); a failed tag 'auth-failed'.
 */
export function unwrapKey(secretKey: Uint8Array, wrapped: Uint8Array): Uint8Array {
  check(wrapped instanceof Uint8Array && wrapped.length >= ECIES_OVERHEAD, 'bad-length', `ecies: wrapped key shorter than ${ECIES_OVERHEAD} bytes`);
  const P = wrapped.subarray(0, POINT_BYTES);
  assertPublicKey(P, 'ECIES ephemeral key');
  const nonce = wrapped.subarray(POINT_BYTES, POINT_BYTES + AEAD_NONCE_BYTES);
  const tag = wrapped.subarray(POINT_BYTES + AEAD_NONCE_BYTES, ECIES_OVERHEAD);
  const ct = wrapped.subarray(ECIES_OVERHEAD);
  const key = wrapKeyOf(P, sharedPoint(secretKey, P));
  try {
    return aeadOpen(key, nonce, concatBytes(ct, tag));
  } finally {
    key.fill(0);
  }
}
