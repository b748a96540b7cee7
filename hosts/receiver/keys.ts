// The receiver's secrets (PROTOCOL.md §1, §2): the account key `r` (signs EIP-712 records and transactions)
// and the encryption key pairs (e, E) by version (§5.1, §5.6: every retired e stays until it is erased, so
// offers made under an older version can still be unwrapped). `e` is separate from `r` (§2 SHOULD).
//
// Sources, in order: the key file (JSON, mode 0600), then the environment:
//   IOTKX_RECEIVER_KEY      0x + 64 hex: the account key (overrides the file's)
//   IOTKX_RECEIVER_ENC_KEY  0x + 64 hex (one key, its version learned from the chain by its public key),
//                           or "1:0x..,2:0x.." (versioned list). Env keys are read-only: rotation needs a file.
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync, chmodSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { addressOf } from '../../lib/address.js';
import { hexToBytes, toHex } from '../../lib/bytes.js';
import { getPublicKey, isValidSecretKey } from '../../lib/secp256k1.js';
import { ensureRandom } from './random.js';

/** Key file format tag; a file with another tag is refused rather than guessed at. */
export const KEY_FILE_FORMAT = 'iotkx-receiver-keys/1';

export interface EncKey {
  /** On-chain version (§5.1) once published; null while not yet published. */
  version: number | null;
  secretKey: Uint8Array;
  publicKey: Uint8Array;
  /** From IOTKX_RECEIVER_ENC_KEY: never published automatically, its version is learned from the chain. */
  fromEnv?: boolean;
}

export interface ReceiverKeys {
  accountKey: Uint8Array;
  address: Uint8Array;
  encKeys: EncKey[];
  /** Where changes (rotation, erasure) are written; undefined when every key came from the environment. */
  path?: string;
  /** The key file's own account key (an IOTKX_RECEIVER_KEY override is never written to the file). */
  fileAccountKey?: Uint8Array;
}

interface KeyFileJson {
  format: string;
  accountKey: string;
  encKeys: { version: number | null; secretKey: string }[];
}

function freshSecretKey(): Uint8Array {
  ensureRandom();
  for (;;) {
    const sk = new Uint8Array(randomBytes(32));
    if (isValidSecretKey(sk)) return sk;
  }
}

function parseSecret(hex: string, what: string): Uint8Array {
  if (!/^0x[0-9a-fA-F]{64}$/.test(hex)) throw new Error(`${what}: expected 0x + 64 hex digits`);
  const sk = hexToBytes(hex);
  ensureRandom();
  if (!isValidSecretKey(sk)) throw new Error(`${what}: not a valid secp256k1 secret key`);
  return sk;
}

function encKeyOf(version: number | null, secretKey: Uint8Array): EncKey {
  return { version, secretKey, publicKey: getPublicKey(secretKey) };
}

/** Writes `text` to `path` atomically (temp file with mode 0600, fsync, rename). */
export function writeSecretFile(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

/** Creates the key file (fresh r and one unpublished e) if absent; returns the keys it holds. */
export function initReceiverKeys(path: string): ReceiverKeys {
  if (!existsSync(path)) {
    const json: KeyFileJson = {
      format: KEY_FILE_FORMAT,
      accountKey: toHex(freshSecretKey()),
      encKeys: [{ version: null, secretKey: toHex(freshSecretKey()) }],
    };
    writeSecretFile(path, JSON.stringify(json, null, 2) + '\n');
  }
  return readKeyFile(path);
}

export function readKeyFile(path: string): ReceiverKeys {
  const json = JSON.parse(readFileSync(path, 'utf8')) as KeyFileJson;
  if (json.format !== KEY_FILE_FORMAT || typeof json.accountKey !== 'string' || !Array.isArray(json.encKeys)) {
    throw new Error(`${path}: not an ${KEY_FILE_FORMAT} key file`);
  }
  const accountKey = parseSecret(json.accountKey, `${path} accountKey`);
  const encKeys = json.encKeys.map((k, i) => {
    if (k.version !== null && !(Number.isInteger(k.version) && k.version >= 1 && k.version < 2 ** 32)) {
      throw new Error(`${path}: encKeys[${i}].version must be null or a uint32 ≥ 1`);
    }
    return encKeyOf(k.version, parseSecret(k.secretKey, `${path} encKeys[${i}]`));
  });
  return { accountKey, address: addressOf(getPublicKey(accountKey)), encKeys, path, fileAccountKey: accountKey };
}

export function saveKeyFile(keys: ReceiverKeys): void {
  if (!keys.path) throw new Error('receiver keys came from the environment: rotation and erasure need a key file');
  const json: KeyFileJson = {
    format: KEY_FILE_FORMAT,
    accountKey: toHex(keys.fileAccountKey ?? keys.accountKey),
    encKeys: keys.encKeys.filter((k) => !k.fromEnv).map((k) => ({ version: k.version, secretKey: toHex(k.secretKey) })),
  };
  writeSecretFile(keys.path, JSON.stringify(json, null, 2) + '\n');
}

/**
 * Loads the keys: the key file at `path` (created if absent and `create` is set), overridden or supplied by
 * IOTKX_RECEIVER_KEY / IOTKX_RECEIVER_ENC_KEY from `env`.
 */
export function loadReceiverKeys(opts: { path?: string; env?: NodeJS.ProcessEnv; create?: boolean }): ReceiverKeys {
  const env = opts.env ?? {};
  let keys: ReceiverKeys | undefined;
  if (opts.path && (existsSync(opts.path) || opts.create !== false)) {
    keys = opts.create === false ? readKeyFile(opts.path) : initReceiverKeys(opts.path);
  }
  const envAccount = env.IOTKX_RECEIVER_KEY;
  const envEnc = env.IOTKX_RECEIVER_ENC_KEY;
  if (!keys) {
    if (!envAccount || !envEnc) throw new Error('no receiver keys: give a key file or set IOTKX_RECEIVER_KEY and IOTKX_RECEIVER_ENC_KEY');
    const accountKey = parseSecret(envAccount, 'IOTKX_RECEIVER_KEY');
    keys = { accountKey, address: addressOf(getPublicKey(accountKey)), encKeys: [] };
  } else if (envAccount) {
    keys.accountKey = parseSecret(envAccount, 'IOTKX_RECEIVER_KEY');
    keys.address = addressOf(getPublicKey(keys.accountKey));
  }
  if (envEnc) {
    for (const item of envEnc.split(',').map((s) => s.trim()).filter(Boolean)) {
      const m = /^(?:(\d+):)?(0x[0-9a-fA-F]{64})$/.exec(item);
      if (!m) throw new Error('IOTKX_RECEIVER_ENC_KEY: expected 0x<64 hex> or a list "<version>:0x<64 hex>,..."');
      const k = { ...encKeyOf(m[1] ? Number(m[1]) : null, parseSecret(m[2], 'IOTKX_RECEIVER_ENC_KEY')), fromEnv: true };
      if (!keys.encKeys.some((x) => toHex(x.publicKey) === toHex(k.publicKey))) keys.encKeys.push(k);
    }
  }
  if (keys.encKeys.some((k) => toHex(k.secretKey) === toHex(keys!.accountKey))) {
    // §2 allows e = r but says SHOULD differ; we keep them apart so erasing e never touches r.
    throw new Error('the encryption key equals the account key: iotkx/1 keeps them separate (PROTOCOL.md §2)');
  }
  return keys;
}

/** Adds a fresh unpublished encryption key (written to the key file before anything is published). */
export function addEncryptionKey(keys: ReceiverKeys): EncKey {
  const k = encKeyOf(null, freshSecretKey());
  keys.encKeys.push(k);
  saveKeyFile(keys);
  return k;
}

/** Erases the secret e of `version` from the key file (§5.6: erase retired e). */
export function eraseEncryptionKey(keys: ReceiverKeys, version: number): boolean {
  const before = keys.encKeys.length;
  const kept = keys.encKeys.filter((k) => k.version !== version);
  for (const k of keys.encKeys) if (k.version === version) k.secretKey.fill(0);
  keys.encKeys = kept;
  if (kept.length !== before) saveKeyFile(keys);
  return kept.length !== before;
}
