/**
 * XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03), the only AEAD of iotkx/1: key
 * wrap and readings (PROTOCOL.md §2). AES is deliberately absent: its pure-JS
 * tables exceed an ESP32's XS heap (XS-NOTES.md).
 */
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { IotkxError, check } from './errors.js';

export const AEAD_KEY_BYTES = 32;
export const AEAD_NONCE_BYTES = 24;
/** Poly1305 tag, appended to the ciphertext (RFC 8439 §2.8). */
export const AEAD_TAG_BYTES = 16;

function checkKeyNonce(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array | undefined): void {
  check(key instanceof Uint8Array && key.length === AEAD_KEY_BYTES, 'bad-length', 'aead: key must be 32 bytes');
  check(nonce instanceof Uint8Array && nonce.length === AEAD_NONCE_BYTES, 'bad-length', 'aead: nonce must be 24 bytes');
  check(aad === undefined || aad instanceof Uint8Array, 'bad-length', 'aead: aad must be bytes');
}

/** Encrypt and authenticate: returns ciphertext || tag (plaintext length + 16). */
export function aeadSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad?: Uint8Array): Uint8Array {
  checkKeyNonce(key, nonce, aad);
  check(plaintext instanceof Uint8Array, 'bad-length', 'aead: plaintext must be bytes');
  return xchacha20poly1305(key, nonce, aad).encrypt(plaintext);
}

/** Verify and decrypt ciphertext || tag; a wrong key, nonce, aad or any changed byte is 'auth-failed'. */
export function aeadOpen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad?: Uint8Array): Uint8Array {
  checkKeyNonce(key, nonce, aad);
  check(sealed instanceof Uint8Array && sealed.length >= AEAD_TAG_BYTES, 'bad-length', 'aead: sealed data shorter than the tag');
  try {
    return xchacha20poly1305(key, nonce, aad).decrypt(sealed);
  } catch {
    // Lengths were checked above, so the only failure left is the tag.
    throw new IotkxError('auth-failed', 'aead: authentication failed');
  }
}
