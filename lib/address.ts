/**
 * Ethereum addresses: derivation from a public key (PROTOCOL.md §2), EIP-55
 * mixed-case checksums, and strict parsing of the text forms PROTOCOL.md §9 allows.
 */
import { keccak_256 } from '@noble/hashes/sha3.js';
import { ascii, bytesToHex, hexToBytes, type Hex } from './bytes.js';
import { check } from './errors.js';

/** An address is 20 bytes (Yellow Paper §4.1). */
export const ADDRESS_BYTES = 20;

/** `keccak(X || Y)[12..32]` of a 65-byte uncompressed public key `0x04 || X || Y` (PROTOCOL.md §2). */
export function addressOf(pub65: Uint8Array): Uint8Array {
  check(pub65 instanceof Uint8Array && pub65.length === 65 && pub65[0] === 0x04, 'bad-point', 'address: expected a 65-byte uncompressed public key');
  return keccak_256(pub65.subarray(1)).slice(12);
}

function assertAddress(addr: Uint8Array): void {
  check(addr instanceof Uint8Array && addr.length === ADDRESS_BYTES, 'bad-address', 'address: expected 20 bytes');
}

/** 0x-prefixed lowercase hex (the form JSON-RPC and PROTOCOL.md §9 use on the wire). */
export function addressHex(addr: Uint8Array): Hex {
  assertAddress(addr);
  return `0x${bytesToHex(addr)}`;
}

/** EIP-55: a hex letter is upper case iff the matching nibble of keccak(lowercase hex) is ≥ 8. */
function checksummed(lowerHex: string): string {
  const h = keccak_256(ascii(lowerHex));
  let out = '0x';
  for (let i = 0; i < lowerHex.length; i++) {
    const c = lowerHex[i];
    const nibble = (h[i >> 1] >> (i & 1 ? 0 : 4)) & 0x0f;
    out += nibble >= 8 ? c.toUpperCase() : c;
  }
  return out;
}

/** EIP-55 checksummed text of an address given as bytes or as any accepted text form. */
export function toChecksumAddress(addr: Uint8Array | string): string {
  const bytes = typeof addr === 'string' ? parseAddress(addr) : addr;
  assertAddress(bytes);
  return checksummed(bytesToHex(bytes));
}

const ADDRESS_RE = /^0x[0-9a-fA-F]{40}$/;

/**
 * Parse `0x` + 40 hex digits: all lower case, all upper case, or EIP-55 mixed case.
 * A mixed-case string whose checksum is wrong is a typo, refused ('bad-address').
 */
export function parseAddress(s: string): Uint8Array {
  check(typeof s === 'string' && ADDRESS_RE.test(s), 'bad-address', 'address: expected 0x and 40 hex digits');
  const body = s.slice(2);
  const lower = body.toLowerCase();
  if (body !== lower && body !== body.toUpperCase()) {
    check(checksummed(lower) === s, 'bad-address', 'address: EIP-55 checksum mismatch');
  }
  return hexToBytes(lower);
}
