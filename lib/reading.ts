/**
 * Sealed readings (PROTOCOL.md §7): the measurement is deterministic CBOR, sealed
 * with XChaCha20-Poly1305 under the data key, bound by its AAD to (device, epoch,
 * seq), and carried in an envelope (lib/envelope.ts).
 */
import { aeadOpen, aeadSeal, AEAD_NONCE_BYTES } from './aead.js';
import { ascii, concatBytes, equalBytes, u64be } from './bytes.js';
import { decodeCbor, encodeCbor, type CborValue } from './cbor.js';
import { IotkxError, check } from './errors.js';
import { decodeEnvelope, encodeEnvelope, type Envelope } from './envelope.js';
import type { Random } from './platform.js';

/** §7: aad = "iotkx/1/reading" || device(20) || u64be(epoch) || u64be(seq). */
const READING_LABEL = ascii('iotkx/1/reading');

export type ReadingValues = { [key: string]: CborValue };

export interface Reading {
  device: Uint8Array;
  epoch: bigint;
  seq: bigint;
  values: ReadingValues;
}

export interface SealInput extends Reading {
  dataKey: Uint8Array;
  random: Random;
}

function readingAad(device: Uint8Array, epoch: bigint, seq: bigint): Uint8Array {
  return concatBytes(READING_LABEL, device, u64be(epoch), u64be(seq));
}

function isInteger(x: unknown): boolean {
  return typeof x === 'bigint' || Number.isInteger(x);
}

function isPlainMap(v: unknown): v is ReadingValues {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * Seal one reading into envelope bytes. `values` must be a map with an integer
 * `t`; NaN/±Infinity anywhere are refused ('bad-reading').
 * nonce = u64be(seq) || 16 random bytes (§7: unique if either the seq high-water
 * mark or the RNG holds).
 */
export function sealReading(input: SealInput): Uint8Array {
  const { dataKey, device, epoch, seq, values, random } = input;
  // The envelope's own checks, first, so that u64be and the AAD only see valid fields.
  check(device instanceof Uint8Array && device.length === 20, 'bad-envelope', 'reading: device must be 20 bytes');
  for (const v of [epoch, seq]) check(typeof v === 'bigint' && v >= 1n && v < 1n << 64n, 'bad-envelope', 'reading: epoch and seq must be in [1, 2^64 − 1]');
  check(isPlainMap(values), 'bad-reading', 'reading: values must be a map');
  check(isInteger(values.t), 'bad-reading', 'reading: values.t must be an integer (unix seconds)');
  let plaintext: Uint8Array;
  try {
    plaintext = encodeCbor(values);
  } catch (e) {
    throw new IotkxError('bad-reading', `reading: ${(e as Error).message}`);
  }
  const tail = random.bytes(AEAD_NONCE_BYTES - 8);
  check(tail instanceof Uint8Array && tail.length === AEAD_NONCE_BYTES - 8, 'bad-random', 'reading: random source returned a wrong length');
  const nonce = concatBytes(u64be(seq), tail);
  const ciphertext = aeadSeal(dataKey, nonce, plaintext, readingAad(device, epoch, seq));
  return encodeEnvelope({ device, epoch, seq, nonce, ciphertext });
}

/**
 * Open an envelope (bytes or already decoded). Order: the nonce must start with
 * u64be(seq) ('bad-nonce'), then the tag ('auth-failed'), then the plaintext must
 * be a deterministic CBOR map with an integer `t` and no NaN/±Infinity ('bad-reading').
 */
export function openReading(dataKey: Uint8Array, envelope: Uint8Array | Envelope): Reading {
  const e = envelope instanceof Uint8Array ? decodeEnvelope(envelope) : envelope;
  if (!(envelope instanceof Uint8Array)) encodeEnvelope(e); // same checks as a decoded one
  check(equalBytes(e.nonce.subarray(0, 8), u64be(e.seq)), 'bad-nonce', 'reading: nonce does not start with u64be(seq)');
  const plaintext = aeadOpen(dataKey, e.nonce, e.ciphertext, readingAad(e.device, e.epoch, e.seq));
  let values: CborValue;
  try {
    values = decodeCbor(plaintext);
  } catch (err) {
    throw new IotkxError('bad-reading', `reading: ${(err as Error).message}`);
  }
  check(isPlainMap(values), 'bad-reading', 'reading: plaintext is not a map');
  check(isInteger(values.t), 'bad-reading', 'reading: t missing or not an integer');
  return { device: e.device, epoch: e.epoch, seq: e.seq, values };
}
