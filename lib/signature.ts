/**
 * Recoverable secp256k1 ECDSA over 32-byte digests, as Ethereum uses it:
 * RFC 6979 deterministic nonces, low-s (EIP-2), 65-byte `r || s || v` with
 * v ∈ {27, 28} (PROTOCOL.md §2). The curve comes from lib/secp256k1.ts.
 */
import { addressOf } from './address.js';
import { bigIntToBytes, bytesToBigInt, concatBytes } from './bytes.js';
import { IotkxError, check } from './errors.js';
import { CURVE_ORDER, HALF_ORDER, curve, isValidSecretKey } from './secp256k1.js';

export interface RecoverableSignature {
  r: bigint;
  s: bigint;
  /** Parity of R's y coordinate (the recovery id; 0 or 1 on secp256k1 in practice). */
  yParity: 0 | 1;
}

/** `r(32) || s(32) || v(1)` (PROTOCOL.md §2). */
export const SIGNATURE_BYTES = 65;

function assertDigest(digest: Uint8Array): void {
  check(digest instanceof Uint8Array && digest.length === 32, 'bad-digest', 'signature: digest must be 32 bytes');
}

/**
 * Refuse scalars outside [1, n−1] ('bad-signature') and s > n/2 ('high-s', EIP-2;
 * the contract refuses those too, PROTOCOL.md §2).
 */
export function assertSignatureScalars(r: bigint, s: bigint): void {
  check(typeof r === 'bigint' && r > 0n && r < CURVE_ORDER, 'bad-signature', 'signature: r out of range');
  check(typeof s === 'bigint' && s > 0n && s < CURVE_ORDER, 'bad-signature', 'signature: s out of range');
  check(s <= HALF_ORDER, 'high-s', 'signature: s > n/2 (EIP-2)');
}

/** Sign a 32-byte digest (no prehash), RFC 6979 nonce (no extra entropy), low-s. */
export function signDigest(digest: Uint8Array, sk: Uint8Array): RecoverableSignature {
  assertDigest(digest);
  check(isValidSecretKey(sk), 'bad-key', 'signature: invalid secret key');
  const c = curve();
  // 'recovered' format is recovery(1) || r(32) || s(32) in noble 2.x.
  const bytes = c.sign(digest, sk, { prehash: false, lowS: true, extraEntropy: false, format: 'recovered' });
  const sig = c.Signature.fromBytes(bytes, 'recovered');
  // A recovery id of 2 or 3 (r ≥ n) has probability ~2^-128 and has no Ethereum encoding.
  check(sig.recovery === 0 || sig.recovery === 1, 'bad-signature', 'signature: unencodable recovery id');
  return { r: sig.r, s: sig.s, yParity: sig.recovery };
}

/** 65 bytes `r || s || v`, v = 27 + yParity. */
export function signatureBytes(sig: RecoverableSignature): Uint8Array {
  assertSignatureScalars(sig.r, sig.s);
  check(sig.yParity === 0 || sig.yParity === 1, 'bad-signature', 'signature: yParity must be 0 or 1');
  return concatBytes(bigIntToBytes(sig.r, 32), bigIntToBytes(sig.s, 32), Uint8Array.of(27 + sig.yParity));
}

/** Strict parse of `r || s || v`: 65 bytes, v ∈ {27, 28}, r and s in [1, n−1], s ≤ n/2. */
export function parseSignature(bytes: Uint8Array): RecoverableSignature {
  check(bytes instanceof Uint8Array && bytes.length === SIGNATURE_BYTES, 'bad-signature', 'signature: expected 65 bytes');
  const v = bytes[64];
  check(v === 27 || v === 28, 'bad-signature', 'signature: v must be 27 or 28');
  const r = bytesToBigInt(bytes.subarray(0, 32));
  const s = bytesToBigInt(bytes.subarray(32, 64));
  assertSignatureScalars(r, s);
  return { r, s, yParity: (v - 27) as 0 | 1 };
}

/** The 65-byte uncompressed public key that signed `digest`. */
export function recoverPublicKey(digest: Uint8Array, sig: Uint8Array | RecoverableSignature): Uint8Array {
  assertDigest(digest);
  const { r, s, yParity } = sig instanceof Uint8Array ? parseSignature(sig) : sig;
  assertSignatureScalars(r, s);
  check(yParity === 0 || yParity === 1, 'bad-signature', 'signature: yParity must be 0 or 1');
  try {
    return new (curve().Signature)(r, s, yParity).recoverPublicKey(digest).toBytes(false);
  } catch {
    // No curve point has x = r, or the recovered point is infinity.
    throw new IotkxError('bad-signature', 'signature: no public key recovers from it');
  }
}

/** The 20-byte address that signed `digest`. */
export function recoverAddress(digest: Uint8Array, sig: Uint8Array | RecoverableSignature): Uint8Array {
  return addressOf(recoverPublicKey(digest, sig));
}

/**
 * Plain verification against a known public key under the same rules (low-s,
 * scalars in range); used where no recovery id exists (e.g. DER test vectors).
 */
export function verifyDigest(digest: Uint8Array, sig: { r: bigint; s: bigint }, pub65: Uint8Array): boolean {
  assertDigest(digest);
  assertSignatureScalars(sig.r, sig.s);
  const compact = concatBytes(bigIntToBytes(sig.r, 32), bigIntToBytes(sig.s, 32));
  try {
    return curve().verify(compact, digest, pub65, { prehash: false, lowS: true, format: 'compact' });
  } catch {
    return false;
  }
}
