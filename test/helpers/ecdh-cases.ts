/**
 * Turns Wycheproof ECDH tests (DER SubjectPublicKeyInfo keys) into EcdhCases on the
 * host. Only the two DER forms a named-curve secp256k1 key has (RFC 5480 §2) are
 * decoded; anything else (explicit parameters, other curves, malformed ASN.1) is
 * "not decodable" and must be refused. Compressed points are decompressed with
 * noble (an independent curve implementation) into the 65-byte form lib/ takes.
 */
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { bigIntToBytes, bytesToBigInt, hexToBytes } from '../../lib/bytes.js';
import type { EcdhCase } from './crypto-vectors.js';

// SEQUENCE { SEQUENCE { id-ecPublicKey, secp256k1 }, BIT STRING (0 unused bits) }
const UNCOMPRESSED_PREFIX = '3056301006072a8648ce3d020106052b8104000a034200';
const COMPRESSED_PREFIX = '3036301006072a8648ce3d020106052b8104000a032200';

export function decodeSpki(der: string): Uint8Array | null {
  let point: string | undefined;
  if (der.startsWith(UNCOMPRESSED_PREFIX) && der.length === UNCOMPRESSED_PREFIX.length + 130) point = der.slice(UNCOMPRESSED_PREFIX.length);
  if (der.startsWith(COMPRESSED_PREFIX) && der.length === COMPRESSED_PREFIX.length + 66) point = der.slice(COMPRESSED_PREFIX.length);
  if (!point) return null;
  if (point.startsWith('04')) return hexToBytes(point); // lib/ must judge this one itself
  try {
    return secp256k1.Point.fromBytes(hexToBytes(point)).toBytes(false);
  } catch {
    return null;
  }
}

export function ecdhCases(file: any): EcdhCase[] {
  const cases: EcdhCase[] = [];
  for (const g of file.testGroups) for (const t of g.tests) {
    cases.push({
      tcId: t.tcId,
      pub: decodeSpki(t.public),
      priv: bigIntToBytes(bytesToBigInt(hexToBytes(t.private)), 32),
      shared: hexToBytes(t.shared),
      result: t.result,
    });
  }
  return cases;
}
