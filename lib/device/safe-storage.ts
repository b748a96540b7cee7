/**
 * Power-cut-safe Storage over a raw NVS-like store whose `set` erases the key before
 * it writes (Moddable's `preference` on the ESP32, MODDABLE.md §3): a cut between the
 * two leaves the key missing, so a plain `set` can lose the old value AND the new one.
 *
 * Each logical key `k` lives in two alternating slots `k.0` / `k.1`, each holding
 *   u8 format, u32 counter, value, u32 CRC-32(key ‖ counter ‖ value).
 * A read takes the valid slot with the higher counter. A write goes to the OTHER slot
 * (never the one holding the current value) with counter + 1, then deletes the old
 * slot, so at rest only one copy uses the 24 KiB partition. Whatever step a cut hits,
 * the next read sees the old value or the new one, never neither:
 *   cut after erasing the other slot  → the current slot is untouched: old
 *   cut after writing it              → both valid, higher counter: new
 *   cut after deleting the old slot   → only the new one: new
 * A delete removes the older slot first and the current one last (a cut: old value).
 *
 * A slot that is present but fails its check, with no valid slot beside it, is
 * corruption (flash rot, a foreign writer): `get` throws 'storage-corrupt' rather
 * than report the key missing, so callers can never mistake corruption for "new".
 *
 * The check is CRC-32 (IEEE 802.3), hand-written: it is a few lines, detects every
 * torn or rotted value this needs to catch, and keccak costs ~0.65 ECDH per KiB on
 * XS (XS-NOTES.md). It guards against accidents, not an attacker with flash access
 * (that is NVS/flash encryption's job, see README).
 */
import { IotkxError, check } from '../errors.js';
import type { Storage } from '../platform.js';

/** NVS limits (MODDABLE.md §3): key ≤ 15 characters, value ≤ 4000 bytes. */
export const RAW_MAX_KEY_CHARS = 15;
export const RAW_MAX_VALUE_BYTES = 4000;
/** Slot suffix `.0` / `.1` takes two characters of the 15. */
export const SAFE_MAX_KEY_CHARS = RAW_MAX_KEY_CHARS - 2;
const FORMAT = 1;
/** u8 format + u32 counter + u32 CRC. */
export const SLOT_OVERHEAD = 9;
export const SAFE_MAX_VALUE_BYTES = RAW_MAX_VALUE_BYTES - SLOT_OVERHEAD;

let table: Uint32Array | undefined;
/** CRC-32/ISO-HDLC (reflected polynomial 0xEDB88320), incremental: pass the previous result as `crc`. */
export function crc32(bytes: Uint8Array, crc = 0): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = table[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

function asciiBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

function slotCrc(key: string, body: Uint8Array): number {
  return crc32(body, crc32(asciiBytes(key)));
}

/** Encode one slot of logical `key` (exported for tests and the simulator's inspection tools). */
export function encodeSlotValue(key: string, counter: number, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(SLOT_OVERHEAD + value.length);
  out[0] = FORMAT;
  out[1] = counter >>> 24; out[2] = (counter >>> 16) & 0xff; out[3] = (counter >>> 8) & 0xff; out[4] = counter & 0xff;
  out.set(value, 5);
  const c = slotCrc(key, out.subarray(0, 5 + value.length));
  const at = 5 + value.length;
  out[at] = c >>> 24; out[at + 1] = (c >>> 16) & 0xff; out[at + 2] = (c >>> 8) & 0xff; out[at + 3] = c & 0xff;
  return out;
}

/** Decode a slot: undefined when it fails its check. */
export function decodeSlotValue(key: string, raw: Uint8Array): { counter: number; value: Uint8Array } | undefined {
  if (!(raw instanceof Uint8Array) || raw.length < SLOT_OVERHEAD || raw[0] !== FORMAT) return undefined;
  const at = raw.length - 4;
  const stored = ((raw[at] << 24) >>> 0) + (raw[at + 1] << 16) + (raw[at + 2] << 8) + raw[at + 3];
  if (slotCrc(key, raw.subarray(0, at)) !== stored) return undefined;
  const counter = ((raw[1] << 24) >>> 0) + (raw[2] << 16) + (raw[3] << 8) + raw[4];
  return { counter, value: raw.slice(5, at) };
}

interface Current {
  /** Slot index holding the current value, or -1 when the key is absent. */
  slot: number;
  counter: number;
  /** The other slot may still hold an older copy (a cut after a write). */
  stale: boolean;
}

export class SafeStorage implements Storage {
  private readonly cache = new Map<string, Current>();
  constructor(readonly raw: Storage) {}

  private slotKey(key: string, i: number): string {
    return `${key}.${i}`;
  }

  private checkKey(key: string): void {
    check(typeof key === 'string' && key.length > 0 && key.length <= SAFE_MAX_KEY_CHARS && !key.includes('.'), 'storage-key',
      `storage key "${key}" must be 1..${SAFE_MAX_KEY_CHARS} characters without a dot (NVS keys are ≤ ${RAW_MAX_KEY_CHARS})`);
  }

  /** Read both slots; cache which one is current. */
  private load(key: string): { cur: Current; value?: Uint8Array } {
    this.checkKey(key);
    let best: { slot: number; counter: number; value: Uint8Array } | undefined;
    let present = 0;
    for (let i = 0; i < 2; i++) {
      const raw = this.raw.get(this.slotKey(key, i));
      if (raw === undefined) continue;
      present++;
      const d = decodeSlotValue(key, raw);
      if (d && (!best || d.counter > best.counter)) best = { slot: i, counter: d.counter, value: d.value };
    }
    if (present > 0 && !best) {
      throw new IotkxError('storage-corrupt', `stored "${key}" is corrupt: ${present === 1 ? 'its slot fails' : 'both slots fail'} the CRC check`);
    }
    const cur: Current = best ? { slot: best.slot, counter: best.counter, stale: present === 2 } : { slot: -1, counter: 0, stale: present > 0 };
    this.cache.set(key, cur);
    return { cur, value: best?.value };
  }

  get(key: string): Uint8Array | undefined {
    return this.load(key).value;
  }

  set(key: string, value: Uint8Array): void {
    this.checkKey(key);
    check(value instanceof Uint8Array && value.length <= SAFE_MAX_VALUE_BYTES, 'storage-value',
      `"${key}": ${value?.length} bytes exceeds ${SAFE_MAX_VALUE_BYTES} (NVS ${RAW_MAX_VALUE_BYTES} less ${SLOT_OVERHEAD} bytes of slot header)`);
    const cur = this.cache.get(key) ?? this.load(key).cur;
    check(cur.counter < 0xffffffff, 'storage-exhausted', `"${key}": write counter exhausted`);
    const next = cur.slot === 1 ? 0 : 1;
    const counter = cur.counter + 1;
    this.raw.set(this.slotKey(key, next), encodeSlotValue(key, counter, value));
    // The new value is durable; the old copy is now only taking space.
    this.cache.set(key, { slot: next, counter, stale: cur.slot >= 0 || cur.stale });
    if (cur.slot >= 0 || cur.stale) {
      this.raw.delete(this.slotKey(key, 1 - next));
      this.cache.set(key, { slot: next, counter, stale: false });
    }
  }

  delete(key: string): void {
    this.checkKey(key);
    let cur: Current;
    try {
      cur = this.cache.get(key) ?? this.load(key).cur;
    } catch {
      cur = { slot: 0, counter: 0, stale: true }; // corrupt: delete both slots
    }
    if (cur.slot < 0 && !cur.stale) return;
    // Older copy first, the current one last: a cut in between leaves the old value.
    const first = cur.slot >= 0 ? 1 - cur.slot : 0;
    this.raw.delete(this.slotKey(key, first));
    this.raw.delete(this.slotKey(key, 1 - first));
    this.cache.set(key, { slot: -1, counter: cur.counter, stale: false });
  }
}
