/**
 * The sealed-reading envelope (PROTOCOL.md §7): deterministic CBOR array
 * `[1, device (bstr 20), epoch, seq, nonce (bstr 24), ciphertext||tag (bstr)]`.
 * Decoding is strict so that one reading has exactly one byte form.
 */
import { AEAD_NONCE_BYTES, AEAD_TAG_BYTES } from './aead.js';
import { decodeCbor, encodeCbor } from './cbor.js';
import { IotkxError, check } from './errors.js';

/** §7: the envelope's first element. */
export const ENVELOPE_VERSION = 1;
/** §9: the relay answers 413 to an envelope over 4 KiB; a device never makes one. */
export const MAX_ENVELOPE_BYTES = 4096;
const U64_MAX = (1n << 64n) - 1n;

export interface Envelope {
  device: Uint8Array;
  epoch: bigint;
  seq: bigint;
  nonce: Uint8Array;
  /** ciphertext || tag */
  ciphertext: Uint8Array;
}

function checkFields(e: Envelope): void {
  check(e.device instanceof Uint8Array && e.device.length === 20, 'bad-envelope', 'envelope: device must be 20 bytes');
  for (const [name, v] of [['epoch', e.epoch], ['seq', e.seq]] as const) {
    check(typeof v === 'bigint' && v >= 1n && v <= U64_MAX, 'bad-envelope', `envelope: ${name} must be in [1, 2^64 − 1]`);
  }
  check(e.nonce instanceof Uint8Array && e.nonce.length === AEAD_NONCE_BYTES, 'bad-envelope', 'envelope: nonce must be 24 bytes');
  check(e.ciphertext instanceof Uint8Array && e.ciphertext.length >= AEAD_TAG_BYTES, 'bad-envelope', 'envelope: ciphertext shorter than its tag');
}

export function encodeEnvelope(e: Envelope): Uint8Array {
  checkFields(e);
  const bytes = encodeCbor([ENVELOPE_VERSION, e.device, e.epoch, e.seq, e.nonce, e.ciphertext]);
  check(bytes.length <= MAX_ENVELOPE_BYTES, 'envelope-too-large', `envelope: ${bytes.length} bytes, over ${MAX_ENVELOPE_BYTES}`);
  return bytes;
}

/**
 * Strict decode. Over 4 KiB is 'envelope-too-large' (the relay's 413), CBOR in a
 * non-deterministic form 'non-deterministic-cbor', anything else wrong 'bad-envelope'.
 */
export function decodeEnvelope(bytes: Uint8Array): Envelope {
  check(bytes instanceof Uint8Array, 'bad-envelope', 'envelope: expected bytes');
  check(bytes.length <= MAX_ENVELOPE_BYTES, 'envelope-too-large', `envelope: ${bytes.length} bytes, over ${MAX_ENVELOPE_BYTES}`);
  let v;
  try {
    v = decodeCbor(bytes);
  } catch (e) {
    if (e instanceof IotkxError && e.code === 'non-deterministic-cbor') throw e;
    throw new IotkxError('bad-envelope', `envelope: ${(e as Error).message}`);
  }
  check(Array.isArray(v) && v.length === 6, 'bad-envelope', 'envelope: not an array of 6 items');
  check(v[0] === ENVELOPE_VERSION, 'bad-envelope', 'envelope: version is not 1');
  const int = (x: unknown) => (typeof x === 'bigint' || Number.isInteger(x) ? BigInt(x as number | bigint) : -1n);
  const e: Envelope = {
    device: v[1] as Uint8Array,
    epoch: int(v[2]),
    seq: int(v[3]),
    nonce: v[4] as Uint8Array,
    ciphertext: v[5] as Uint8Array,
  };
  checkFields(e);
  return e;
}
