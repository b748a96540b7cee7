/**
 * EIP-712 digests of the two structures iotkx signs (PROTOCOL.md §2, §5.1, §5.4),
 * written out for exactly these types: a general typed-data encoder would be
 * larger than both put together. Type hashes are computed from their type
 * strings on first use (not at load: keccak is not free on XS).
 */
import { keccak_256 } from '@noble/hashes/sha3.js';
import { ascii, bigIntToBytes, bytesToHex, concatBytes } from './bytes.js';
import { check } from './errors.js';
import { parseSignature, recoverAddress, signDigest, signatureBytes } from './signature.js';

/** PROTOCOL.md §2: name "iotkx", version "1". */
export const DOMAIN_NAME = 'iotkx';
export const DOMAIN_VERSION = '1';

/** EIP-712 type strings (encodeType). */
export const EIP712_DOMAIN_TYPE = 'EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)';
export const RECEIVER_KEY_TYPE = 'ReceiverKey(address receiver,uint32 version,bytes encKey)';
export const KEY_ACCEPTANCE_TYPE = 'KeyAcceptance(address device,address receiver,uint64 epoch,bytes32 proof)';

export interface Eip712Domain {
  /** Always "iotkx"/"1" in iotkx/1; other values are refused. */
  name?: string;
  version?: string;
  chainId: bigint;
  verifyingContract: Uint8Array;
}

const memo: Record<string, Uint8Array> = {};
/** keccak of an ASCII string, computed once. */
function hashOf(text: string): Uint8Array {
  return memo[text] ?? (memo[text] = keccak_256(ascii(text)));
}

export function typeHash(typeString: string): Uint8Array {
  return hashOf(typeString).slice();
}

function word(x: bigint, bits: number, what: string): Uint8Array {
  check(typeof x === 'bigint' && x >= 0n && x < 1n << BigInt(bits), 'bad-typed-data', `eip712: ${what} out of range`);
  return bigIntToBytes(x, 32);
}

function address(a: Uint8Array, what: string): Uint8Array {
  check(a instanceof Uint8Array && a.length === 20, 'bad-typed-data', `eip712: ${what} must be 20 bytes`);
  return concatBytes(new Uint8Array(12), a);
}

let lastDomain: { key: string; separator: Uint8Array } | undefined;

/** hashStruct(EIP712Domain); the last one is cached (a device has one domain: 2 keccak blocks saved per digest). */
export function domainSeparator(domain: Eip712Domain): Uint8Array {
  check((domain.name ?? DOMAIN_NAME) === DOMAIN_NAME && (domain.version ?? DOMAIN_VERSION) === DOMAIN_VERSION, 'bad-typed-data', 'eip712: iotkx/1 domain is name "iotkx", version "1"');
  const chainId = word(domain.chainId, 256, 'chainId');
  const contract = address(domain.verifyingContract, 'verifyingContract');
  const key = bytesToHex(concatBytes(chainId, contract));
  if (lastDomain?.key !== key) {
    lastDomain = { key, separator: keccak_256(concatBytes(hashOf(EIP712_DOMAIN_TYPE), hashOf(DOMAIN_NAME), hashOf(DOMAIN_VERSION), chainId, contract)) };
  }
  return lastDomain.separator.slice();
}

/** keccak(0x19 0x01 || domainSeparator || hashStruct(message)) (EIP-712). */
function digest(domain: Eip712Domain, structHash: Uint8Array): Uint8Array {
  return keccak_256(concatBytes(Uint8Array.of(0x19, 0x01), domainSeparator(domain), structHash));
}

/** PROTOCOL.md §5.1: `ReceiverKey(address receiver,uint32 version,bytes encKey)`. */
export function receiverKeyDigest(domain: Eip712Domain, m: { receiver: Uint8Array; version: bigint; encKey: Uint8Array }): Uint8Array {
  check(m.encKey instanceof Uint8Array, 'bad-typed-data', 'eip712: encKey must be bytes');
  return digest(domain, keccak_256(concatBytes(
    hashOf(RECEIVER_KEY_TYPE),
    address(m.receiver, 'receiver'),
    word(m.version, 32, 'version'),
    keccak_256(m.encKey),
  )));
}

/** PROTOCOL.md §5.4: `KeyAcceptance(address device,address receiver,uint64 epoch,bytes32 proof)`. */
export function keyAcceptanceDigest(domain: Eip712Domain, m: { device: Uint8Array; receiver: Uint8Array; epoch: bigint; proof: Uint8Array }): Uint8Array {
  check(m.proof instanceof Uint8Array && m.proof.length === 32, 'bad-typed-data', 'eip712: proof must be 32 bytes');
  return digest(domain, keccak_256(concatBytes(
    hashOf(KEY_ACCEPTANCE_TYPE),
    address(m.device, 'device'),
    address(m.receiver, 'receiver'),
    word(m.epoch, 64, 'epoch'),
    m.proof,
  )));
}

/** 65-byte `r || s || v` (v 27/28, low-s) over an EIP-712 digest. */
export function signTyped(digest: Uint8Array, sk: Uint8Array): Uint8Array {
  return signatureBytes(signDigest(digest, sk));
}

/** The signer's address; strict about the signature's form (PROTOCOL.md §2: high-s, bad v refused). */
export function recoverTypedSigner(digest: Uint8Array, sig65: Uint8Array): Uint8Array {
  return recoverAddress(digest, parseSignature(sig65));
}
