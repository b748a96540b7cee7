/**
 * Identifiers and key derivations of iotkx/1: channelId (PROTOCOL.md §3), the key
 * confirmation proof and its commitment (§5.3), and the reading data key (§7).
 */
import { keccak_256 } from '@noble/hashes/sha3.js';
import { ascii, bigIntToBytes, concatBytes, u64be } from './bytes.js';
import { check } from './errors.js';
import { hkdfSha256 } from './kdf.js';

/** §5.3: proof = keccak("iotkx/1/confirm" || K || channelId || u64be(epoch)). */
const CONFIRM_LABEL = ascii('iotkx/1/confirm');
/** §7: dataKey = HKDF-SHA256(ikm = K, salt = channelId, info = "iotkx/1/data", L = 32). */
const DATA_LABEL = ascii('iotkx/1/data');

function bytesOf(x: Uint8Array, length: number, what: string): Uint8Array {
  check(x instanceof Uint8Array && x.length === length, 'bad-length', `${what} must be ${length} bytes`);
  return x;
}

/** An address as an ABI word: 12 zero bytes then the 20 address bytes. */
function addressWord(a: Uint8Array, what: string): Uint8Array {
  const w = new Uint8Array(32);
  w.set(bytesOf(a, 20, what), 12);
  return w;
}

/** §3: keccak(abi.encode(uint256 chainId, address contract, address device, address receiver)). */
export function channelId(chainId: bigint, contract: Uint8Array, device: Uint8Array, receiver: Uint8Array): Uint8Array {
  check(typeof chainId === 'bigint' && chainId >= 0n && chainId < 1n << 256n, 'out-of-range', 'channelId: chainId is not a uint256');
  return keccak_256(concatBytes(
    bigIntToBytes(chainId, 32),
    addressWord(contract, 'contract address'),
    addressWord(device, 'device address'),
    addressWord(receiver, 'receiver address'),
  ));
}

/** §5.3: what the receiver reveals in acceptKey to prove it unwrapped K. */
export function proofOf(K: Uint8Array, channel: Uint8Array, epoch: bigint): Uint8Array {
  return keccak_256(concatBytes(CONFIRM_LABEL, bytesOf(K, 32, 'K'), bytesOf(channel, 32, 'channelId'), u64be(epoch)));
}

/** §5.3: commitment = keccak(proof), published in offerKey. */
export function commitmentOf(proof: Uint8Array): Uint8Array {
  return keccak_256(bytesOf(proof, 32, 'proof'));
}

/** §7: the key that seals readings of one (channel, epoch). */
export function dataKeyOf(K: Uint8Array, channel: Uint8Array): Uint8Array {
  return hkdfSha256(bytesOf(K, 32, 'K'), bytesOf(channel, 32, 'channelId'), DATA_LABEL, 32);
}
