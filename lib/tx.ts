/**
 * Ethereum transactions the device signs (PROTOCOL.md §2): EIP-1559 (type 2, with an
 * empty access list) and legacy with EIP-155 replay protection. RLP comes from the
 * `rlp` package (no TextEncoder on its byte path: we hand it Uint8Array only).
 * Decoding is strict: it accepts exactly the encodings `signTransaction` produces.
 */
import { decode as rlpDecode, encode as rlpEncode } from 'rlp';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { ADDRESS_BYTES } from './address.js';
import { bigIntToBytes, bytesToBigInt, concatBytes } from './bytes.js';
import { IotkxError, check } from './errors.js';
import { parseSignature, recoverAddress, signDigest, type RecoverableSignature } from './signature.js';

export interface Eip1559Tx {
  type: 'eip1559';
  chainId: bigint;
  nonce: bigint;
  maxPriorityFeePerGas: bigint;
  maxFeePerGas: bigint;
  gas: bigint;
  to: Uint8Array;
  value: bigint;
  data: Uint8Array;
}

export interface LegacyTx {
  type: 'legacy';
  chainId: bigint;
  nonce: bigint;
  gasPrice: bigint;
  gas: bigint;
  to: Uint8Array;
  value: bigint;
  data: Uint8Array;
}

export type Transaction = Eip1559Tx | LegacyTx;

/** EIP-2718 type byte of EIP-1559 transactions. */
export const EIP1559_TYPE = 0x02;
const MAX_UINT256 = (1n << 256n) - 1n;
/** EIP-2681: a nonce is below 2^64 − 1. */
const MAX_NONCE = (1n << 64n) - 2n;

type Rlp = Uint8Array | Rlp[];

/** Minimal big-endian bytes of a non-negative integer; 0 is the empty string (Yellow Paper App. B). */
function uint(x: bigint, name: string, max = MAX_UINT256): Uint8Array {
  check(typeof x === 'bigint' && x >= 0n && x <= max, 'bad-tx', `tx: ${name} out of range`);
  let hex = x === 0n ? '' : x.toString(16);
  if (hex.length & 1) hex = '0' + hex;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function bytesField(b: Uint8Array, name: string): Uint8Array {
  check(b instanceof Uint8Array, 'bad-tx', `tx: ${name} must be bytes`);
  return b;
}

function toField(to: Uint8Array): Uint8Array {
  // Contract creation (empty `to`) is not something a device does.
  check(to instanceof Uint8Array && to.length === ADDRESS_BYTES, 'bad-tx', 'tx: to must be a 20-byte address');
  return to;
}

/** The unsigned fields in wire order (without signature / EIP-155 suffix). */
function fields(tx: Transaction): Rlp[] {
  check(tx !== null && typeof tx === 'object', 'bad-tx', 'tx: expected an object');
  check(typeof tx.chainId === 'bigint' && tx.chainId >= 1n, 'bad-tx', 'tx: chainId must be ≥ 1');
  if (tx.type === 'eip1559') {
    check(tx.maxPriorityFeePerGas <= tx.maxFeePerGas, 'bad-tx', 'tx: maxPriorityFeePerGas above maxFeePerGas');
    return [
      uint(tx.chainId, 'chainId'),
      uint(tx.nonce, 'nonce', MAX_NONCE),
      uint(tx.maxPriorityFeePerGas, 'maxPriorityFeePerGas'),
      uint(tx.maxFeePerGas, 'maxFeePerGas'),
      uint(tx.gas, 'gas'),
      toField(tx.to),
      uint(tx.value, 'value'),
      bytesField(tx.data, 'data'),
      [], // access list: always empty
    ];
  }
  check(tx.type === 'legacy', 'bad-tx', 'tx: type must be eip1559 or legacy');
  return [
    uint(tx.nonce, 'nonce', MAX_NONCE),
    uint(tx.gasPrice, 'gasPrice'),
    uint(tx.gas, 'gas'),
    toField(tx.to),
    uint(tx.value, 'value'),
    bytesField(tx.data, 'data'),
  ];
}

/** The digest the sender signs: keccak(0x02 || rlp(fields)) (EIP-1559) or keccak(rlp(fields || chainId, 0, 0)) (EIP-155). */
export function signingHash(tx: Transaction): Uint8Array {
  const f = fields(tx);
  if (tx.type === 'eip1559') return keccak_256(concatBytes(Uint8Array.of(EIP1559_TYPE), rlpEncode(f)));
  return keccak_256(rlpEncode([...f, uint(tx.chainId, 'chainId'), new Uint8Array(0), new Uint8Array(0)]));
}

function serialize(tx: Transaction, sig: RecoverableSignature): Uint8Array {
  const f = fields(tx);
  const rs = [uint(sig.r, 'r'), uint(sig.s, 's')];
  if (tx.type === 'eip1559') {
    return concatBytes(Uint8Array.of(EIP1559_TYPE), rlpEncode([...f, uint(BigInt(sig.yParity), 'yParity'), ...rs]));
  }
  // EIP-155: v = chainId·2 + 35 + yParity.
  return rlpEncode([...f, uint(tx.chainId * 2n + 35n + BigInt(sig.yParity), 'v'), ...rs]);
}

/** Sign and serialize: the raw bytes for eth_sendRawTransaction. */
export function signTransaction(tx: Transaction, sk: Uint8Array): Uint8Array {
  return serialize(tx, signDigest(signingHash(tx), sk));
}

/** The transaction hash: keccak of the raw signed bytes (EIP-2718 / Yellow Paper). */
export function transactionHash(raw: Uint8Array): Uint8Array {
  check(raw instanceof Uint8Array, 'bad-tx', 'tx: raw must be bytes');
  return keccak_256(raw);
}

/* ---------- strict decoding ---------- */

function rlpList(bytes: Uint8Array): Rlp[] {
  let out: Rlp;
  try {
    out = rlpDecode(bytes) as Rlp; // rejects truncation, trailing bytes, non-minimal lengths
  } catch (e) {
    throw new IotkxError('bad-rlp', `tx: ${(e as Error).message}`);
  }
  check(Array.isArray(out), 'bad-tx', 'tx: expected an RLP list');
  return out;
}

function item(x: Rlp, name: string): Uint8Array {
  check(x instanceof Uint8Array, 'bad-tx', `tx: ${name} must be a byte string`);
  return x;
}

/** Canonical integer: no leading zero byte (so 0 is the empty string), at most 32 bytes. */
function readUint(x: Rlp, name: string, max = MAX_UINT256): bigint {
  const b = item(x, name);
  check(b.length === 0 || b[0] !== 0, 'bad-tx', `tx: ${name} has leading zeros`);
  check(b.length <= 32, 'bad-tx', `tx: ${name} too long`);
  const v = bytesToBigInt(b);
  check(v <= max, 'bad-tx', `tx: ${name} out of range`);
  return v;
}

function readTo(x: Rlp): Uint8Array {
  const b = item(x, 'to');
  check(b.length === ADDRESS_BYTES, 'bad-tx', 'tx: to must be a 20-byte address');
  return b;
}

function sigFrom(r: bigint, s: bigint, yParity: bigint): RecoverableSignature {
  check(yParity === 0n || yParity === 1n, 'bad-tx', 'tx: yParity must be 0 or 1');
  // Reuse the strict 65-byte rules: r, s in [1, n−1], s ≤ n/2 ('high-s').
  const bytes = concatBytes(bigIntToBytes(r, 32), bigIntToBytes(s, 32), Uint8Array.of(27 + Number(yParity)));
  return parseSignature(bytes);
}

export interface DecodedTransaction {
  tx: Transaction;
  from: Uint8Array;
  hash: Uint8Array;
}

/**
 * Parse a raw signed transaction and recover its sender. Refuses: bad or truncated
 * RLP and trailing bytes ('bad-rlp'), wrong field count, non-canonical integers,
 * contract creation, a non-empty access list, a legacy v without EIP-155 ('bad-tx'),
 * types other than legacy and 2 ('unsupported-tx-type'), high-s ('high-s').
 * The result re-serializes to exactly `raw`.
 */
export function decodeTransaction(raw: Uint8Array): DecodedTransaction {
  check(raw instanceof Uint8Array && raw.length > 0, 'bad-rlp', 'tx: empty input');
  let tx: Transaction;
  let sig: RecoverableSignature;
  if (raw[0] === EIP1559_TYPE) {
    const l = rlpList(raw.subarray(1));
    check(l.length === 12, 'bad-tx', 'tx: an EIP-1559 transaction has 12 fields');
    const access = l[8];
    check(Array.isArray(access) && access.length === 0, 'bad-tx', 'tx: only an empty access list is supported');
    tx = {
      type: 'eip1559',
      chainId: readUint(l[0], 'chainId'),
      nonce: readUint(l[1], 'nonce', MAX_NONCE),
      maxPriorityFeePerGas: readUint(l[2], 'maxPriorityFeePerGas'),
      maxFeePerGas: readUint(l[3], 'maxFeePerGas'),
      gas: readUint(l[4], 'gas'),
      to: readTo(l[5]),
      value: readUint(l[6], 'value'),
      data: item(l[7], 'data'),
    };
    sig = sigFrom(readUint(l[10], 'r'), readUint(l[11], 's'), readUint(l[9], 'yParity'));
  } else if (raw[0] >= 0xc0) {
    const l = rlpList(raw);
    check(l.length === 9, 'bad-tx', 'tx: a legacy transaction has 9 fields');
    const v = readUint(l[6], 'v');
    // v = 27/28 is a pre-EIP-155 signature, replayable on every chain: refused.
    check(v >= 37n, 'bad-tx', 'tx: legacy transaction without EIP-155 chain id');
    const yParity = (v - 35n) & 1n;
    tx = {
      type: 'legacy',
      chainId: (v - 35n - yParity) / 2n,
      nonce: readUint(l[0], 'nonce', MAX_NONCE),
      gasPrice: readUint(l[1], 'gasPrice'),
      gas: readUint(l[2], 'gas'),
      to: readTo(l[3]),
      value: readUint(l[4], 'value'),
      data: item(l[5], 'data'),
    };
    sig = sigFrom(readUint(l[7], 'r'), readUint(l[8], 's'), yParity);
  } else {
    throw new IotkxError('unsupported-tx-type', `tx: unsupported transaction type ${raw[0]}`);
  }
  check(tx.chainId >= 1n, 'bad-tx', 'tx: chainId must be ≥ 1');
  if (tx.type === 'eip1559') {
    check(tx.maxPriorityFeePerGas <= tx.maxFeePerGas, 'bad-tx', 'tx: maxPriorityFeePerGas above maxFeePerGas');
  }
  const from = recoverAddress(signingHash(tx), sig);
  // Nothing was accepted that the encoder would write differently.
  const again = serialize(tx, sig);
  check(again.length === raw.length && again.every((b, i) => b === raw[i]), 'bad-tx', 'tx: non-canonical encoding');
  return { tx, from, hash: keccak_256(raw) };
}
