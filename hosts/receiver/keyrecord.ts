// The receiver key record (PROTOCOL.md §5.1): EIP-712 ReceiverKey signed with the ACCOUNT key, published with
// setReceiverKey; rotation publishes version + 1 and keeps every older e until it is erased (§5.6).
import { getAddress, type Hex } from 'viem';
import { hexToBytes, toHex } from '../../lib/bytes.js';
import { receiverKeyDigest, signTyped } from '../../lib/eip712.js';
import type { ReceiverChain } from './chain.js';
import { addEncryptionKey, saveKeyFile, type EncKey, type ReceiverKeys } from './keys.js';
import type { Store } from './store.js';

export function domainOf(chain: ReceiverChain) {
  return { chainId: BigInt(chain.chainId), verifyingContract: hexToBytes(chain.contract) };
}

/** Records which E a version published (also learned from ReceiverKeySet logs by the watcher). */
export function recordKeyVersion(store: Store, version: number, encKey: Hex): void {
  store.db.prepare('INSERT INTO key_versions (version, enc_key) VALUES (?, ?) ON CONFLICT(version) DO UPDATE SET enc_key = excluded.enc_key')
    .run(version, encKey.toLowerCase());
}

/**
 * The secret e for offers made under `version`. The chain's record of that version (key_versions, from
 * ReceiverKeySet) decides which public key it was; a local label is used only when the chain's is unknown.
 */
export function encKeyFor(keys: ReceiverKeys, store: Store, version: number): EncKey | undefined {
  const row = store.db.prepare('SELECT enc_key FROM key_versions WHERE version = ?').get(version) as { enc_key: string } | undefined;
  if (row) return keys.encKeys.find((k) => toHex(k.publicKey) === row.enc_key);
  return keys.encKeys.find((k) => k.version === version);
}

/** Publishes `k` as the next version and waits for the receipt. The version is written to the key file first. */
export async function publishEncKey(chain: ReceiverChain, keys: ReceiverKeys, store: Store, k: EncKey): Promise<number> {
  const current = await chain.receiverKey();
  if (current.version > 0 && current.encKey.toLowerCase() === toHex(k.publicKey)) {
    k.version = current.version;
    if (!k.fromEnv && keys.path) saveKeyFile(keys);
    recordKeyVersion(store, current.version, current.encKey);
    return current.version;
  }
  const version = current.version + 1;
  k.version = version;
  if (!k.fromEnv && keys.path) saveKeyFile(keys);
  const digest = receiverKeyDigest(domainOf(chain), { receiver: keys.address, version: BigInt(version), encKey: k.publicKey });
  const sig = toHex(signTyped(digest, keys.accountKey));
  const tx = await chain.sign(chain.setReceiverKeyData(toHex(k.publicKey), sig));
  await chain.broadcast(tx.raw);
  const receipt = await chain.client.waitForTransactionReceipt({ hash: tx.hash });
  if (receipt.status !== 'success') throw new Error(`setReceiverKey reverted in ${tx.hash}`);
  recordKeyVersion(store, version, toHex(k.publicKey));
  return version;
}

/**
 * At start: make sure the chain holds one of our keys. Publishes a key-file key that was never published
 * (first start, or a rotation interrupted before its transaction), else labels the current one.
 */
export async function ensureKeyPublished(chain: ReceiverChain, keys: ReceiverKeys, store: Store): Promise<number> {
  const current = await chain.receiverKey();
  const mine = keys.encKeys.find((k) => current.version > 0 && toHex(k.publicKey) === current.encKey.toLowerCase());
  if (mine) {
    if (mine.version !== current.version) {
      mine.version = current.version;
      if (!mine.fromEnv && keys.path) saveKeyFile(keys);
    }
    recordKeyVersion(store, current.version, current.encKey);
  }
  // A key-file key with no version, or labelled with a version the chain has not reached, was never published.
  const pending = [...keys.encKeys].reverse().find((k) => !k.fromEnv && (k.version === null || k.version > current.version));
  if (pending) return publishEncKey(chain, keys, store, pending);
  if (!mine && current.version === 0) {
    const envKey = keys.encKeys.find((k) => k.fromEnv);
    if (envKey) return publishEncKey(chain, keys, store, envKey);
    throw new Error('no encryption key to publish');
  }
  if (!mine) throw new Error(`the chain's key record (version ${current.version}) is none of this receiver's encryption keys`);
  return current.version;
}

/** §5.1/§5.6 rotation: a fresh e (written to the key file first), published as version + 1. */
export async function rotateEncKey(chain: ReceiverChain, keys: ReceiverKeys, store: Store): Promise<number> {
  const k = addEncryptionKey(keys);
  return publishEncKey(chain, keys, store, k);
}

export const checksum = (a: string) => getAddress(a);
