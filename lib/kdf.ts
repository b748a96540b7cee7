/**
 * HKDF-SHA256 (RFC 5869), the one KDF of iotkx/1: the ECIES key (PROTOCOL.md §2)
 * and the reading data key (§7). A thin wrapper so failures carry an IotkxError code.
 */
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { check } from './errors.js';

/** RFC 5869 §2.3: L ≤ 255·HashLen. */
export const HKDF_SHA256_MAX_LENGTH = 255 * 32;

/** HKDF-SHA256; an absent salt is HashLen zero bytes, an absent info is empty (RFC 5869 §2.2–2.3). */
export function hkdfSha256(ikm: Uint8Array, salt: Uint8Array | undefined, info: Uint8Array | undefined, length: number): Uint8Array {
  check(ikm instanceof Uint8Array, 'bad-length', 'hkdf: ikm must be bytes');
  check(salt === undefined || salt instanceof Uint8Array, 'bad-length', 'hkdf: salt must be bytes');
  check(info === undefined || info instanceof Uint8Array, 'bad-length', 'hkdf: info must be bytes');
  check(Number.isSafeInteger(length) && length >= 1 && length <= HKDF_SHA256_MAX_LENGTH, 'bad-length', `hkdf: output length ${length} outside 1..${HKDF_SHA256_MAX_LENGTH}`);
  return hkdf(sha256, ikm, salt, info, length);
}
