/**
 * The on-device readings queue: seal each reading (PROTOCOL.md §7), hold the sealed
 * envelopes in a bounded queue, and drain them in order to the relay (`POST
 * /v1/readings`, §9). Envelopes live in RAM while the relay acknowledges promptly and
 * are spilled to the injected Storage (NVS on the ESP32) when it does not, so flash is
 * written only for what must survive (issue 18 "Flash wear").
 *
 * Storage layout (NVS: keys ≤ 15 characters, values ≤ 4000 B, a 24 KiB partition):
 *   q0 … q{N−1}  a ring of N slots; each holds a batch of spilled envelopes:
 *                u8 format, u32 gen, then (u16 length, envelope bytes)*, ≤ slotBytes in all
 *   qs           counters: u8 format, u32 sent, u32 droppedFull, u32 refused[, u32 resealed]
 * Default N = 8 slots of ≤ 1024 B: 8 KiB for ~64 readings of {t, temp, rh} (~110 B each),
 * beside ~1.3 KiB of engine records; NVS needs the rest (32-B entries with a header per
 * blob chunk, and one free page for its own garbage collection).
 *
 * Decisions:
 * - RAM first. A new envelope joins the RAM tail; a drain that the relay acknowledges
 *   removes it there, and nothing is written (steady state: no queue write at all). RAM
 *   is spilled in ONE write when a drain fails (the relay did not acknowledge: at once,
 *   not after a delay), when it holds `ramEnvelopes` (default 8, a slot's worth), or
 *   when the next envelope would not fit a slot: appended to the newest slot while they
 *   fit, else as a new slot (after a failed drain only if there is no slot yet: the
 *   rest waits for a full batch), so the small spills of an outage do not shrink what
 *   the ring holds. §7: an unacknowledged reading lost to a power cut is an allowed
 *   gap; a cut loses at most the readings sealed since the last failed drain or spill
 *   (fewer than ramEnvelopes; the device drains every tick with a reading, so with a
 *   reachable relay that is the reading of the current tick). An acknowledged reading
 *   is the relay's to keep: the device needs no record of it.
 * - Every spill is ONE Storage.set (and a slot is deleted with one delete). There is no
 *   head/tail record: each slot carries a generation number, generation g lives in slot
 *   g mod N, so the newest slot is the highest generation and the oldest the lowest. A
 *   power cut therefore never leaves head/tail pointers disagreeing with the slots.
 * - When the ring is full, the next spill overwrites the OLDEST slot: its envelopes (a
 *   batch of readings) are dropped and counted (`droppedFull`). Old readings are the
 *   least useful, and slot granularity keeps drop-oldest to a single write.
 * - Spilled envelopes drain first (they are older than RAM's). A slot is deleted once
 *   every envelope in it was acknowledged; a partly acknowledged slot is NOT rewritten
 *   (the acknowledged front is remembered in RAM): a reboot resends those few, which the
 *   relay answers 200 duplicate (and the receiver dedups by seq, §7).
 * - seq comes from engine.reserveSeq() before sealing, which persists the high-water
 *   mark ahead of use (§7, a write every SEQ_BLOCK readings): a power cut after sealing
 *   loses that reading (a gap), never reuses its seq.
 * - Only what the relay acknowledged is deleted: 202 (stored) and 200 (duplicate).
 *   400/413 mean the relay will never take that envelope: it is dropped and counted
 *   (`refused`). 409 too-many-variants means someone squatted that (device, epoch,
 *   seq) with junk bodies (anyone can, seqs are predictable): §7 says re-seal the same
 *   measurement under the device's next seq. The queue opens the envelope with the key
 *   of its epoch (the active or the previous one, which the engine keeps while the
 *   queue holds its envelopes), seals its plaintext again under the active key and a
 *   freshly reserved seq, puts it in the same place (in RAM, or one slot write) and
 *   sends it again; the measurement keeps its `t`. At most MAX_RESEALS_PER_DRAIN
 *   re-seals per drain, then the drain stops ('squatted') and the device backs off, so
 *   a relay that answers 409 to everything cannot make the device burn seqs and flash
 *   in a loop. An envelope that cannot be re-sealed (no active key: revoked) stops the
 *   drain and stays. Anything else (network error, 5xx, other statuses) stops the
 *   drain; the envelope stays and is retried later. The relay may lie (§1); receipt is
 *   all the device can check, so an acknowledged envelope is gone from the device.
 * - The counters (for the console, §6 `status`) are persisted with a drain that
 *   refused or re-sealed something, a spill that dropped a slot, a failed drain after
 *   acknowledgements, and otherwise once per STATS_EVERY_SENT acknowledgements: a power
 *   cut or reboot may lose the latest `sent` counts (fewer than STATS_EVERY_SENT).
 */
import { IotkxError, check } from '../errors.js';
import { decodeEnvelope } from '../envelope.js';
import { dataKeyOf } from '../ids.js';
import type { Random, Storage, Transport } from '../platform.js';
import { openReading, sealReading } from '../reading.js';

/** NVS limits (MODDABLE.md §3). */
const MAX_KEY_CHARS = 15;
const MAX_VALUE_BYTES = 4000;
/** Slot keys are q0..q15 (short: every NVS key costs an entry). */
export const MAX_SLOTS = 16;
export const DEFAULT_SLOTS = 8;
export const DEFAULT_SLOT_BYTES = 1024;
/** Envelopes sent per drain() call, so one tick stays short. */
export const DEFAULT_MAX_PER_DRAIN = 32;
/** Envelopes held in RAM at most before a spill (8 × ~114 B fit a 1 KiB slot). */
export const DEFAULT_RAM_ENVELOPES = 8;
/** Counters are persisted at least once per this many acknowledgements. */
export const STATS_EVERY_SENT = 256;
const KEY_STATS = 'qs';
const FORMAT = 1;
const SLOT_HEADER = 5; // u8 format + u32 gen
/** §9: 202 stored, 200 duplicate; 400 malformed, 413 too large; 409 too many variants (re-sealed, §7). */
const ACKED = [200, 202];
const REFUSED = [400, 413];
const SQUATTED = 409;
/** Re-seals (409) per drain() call before it stops with 'squatted' (and the device backs off). */
export const MAX_RESEALS_PER_DRAIN = 16;

type EpochKey = { epoch: bigint; K: Uint8Array; channelId: Uint8Array };

/** What the queue needs from the device engine (DeviceEngine has all of it). */
export interface SealingKeys {
  readonly address: Uint8Array;
  activeKey(): EpochKey | undefined;
  /** The previous epoch's key while the queue still holds its envelopes (to re-seal them on a 409). */
  previousKey?(): EpochKey | undefined;
  reserveSeq(): { epoch: bigint; seq: bigint };
}

export interface QueueOptions {
  slots?: number;
  slotBytes?: number;
  maxPerDrain?: number;
  /** Most envelopes held in RAM only before they are spilled to storage as one slot (1 = spill every reading). */
  ramEnvelopes?: number;
}

export interface QueueCounters {
  /** Envelopes held now. */
  queued: number;
  /** Acknowledged by the relay (202 or 200), ever. */
  sent: number;
  /** Dropped: droppedFull + refused. */
  dropped: number;
  /** Dropped as the oldest when the queue was full. */
  droppedFull: number;
  /** Dropped because the relay refused them for good (400/413). */
  refused: number;
  /** Re-sealed under a new seq after a 409 (their seq was squatted), ever. */
  resealed: number;
}

export interface DrainResult {
  sent: number;
  refused: number;
  /** Re-sealed under a new seq after a 409 (§7). */
  resealed: number;
  /** Why the drain stopped before emptying the queue: null (empty or per-call limit reached), else the cause. */
  stopped: null | string;
  remaining: number;
}

interface Slot {
  gen: number;
  envs: Uint8Array[];
  bytes: number;
  /** Envelopes at the front already acknowledged (or refused) since boot: RAM only, never written. */
  done: number;
}

function u32(out: number[], x: number): void {
  out.push((x >>> 24) & 0xff, (x >>> 16) & 0xff, (x >>> 8) & 0xff, x & 0xff);
}
function readU32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) >>> 0) + (b[at + 1] << 16) + (b[at + 2] << 8) + b[at + 3];
}

/* Hand-written codec: a few lines, and the slot must stay a flat byte string for NVS. */
export function encodeSlot(gen: number, envs: Uint8Array[]): Uint8Array {
  let n = SLOT_HEADER;
  for (const e of envs) n += 2 + e.length;
  const out = new Uint8Array(n);
  out[0] = FORMAT;
  out[1] = (gen >>> 24) & 0xff; out[2] = (gen >>> 16) & 0xff; out[3] = (gen >>> 8) & 0xff; out[4] = gen & 0xff;
  let at = SLOT_HEADER;
  for (const e of envs) {
    out[at++] = e.length >> 8; out[at++] = e.length & 0xff;
    out.set(e, at); at += e.length;
  }
  return out;
}

export function decodeSlot(b: Uint8Array): { gen: number; envs: Uint8Array[] } {
  check(b.length >= SLOT_HEADER && b[0] === FORMAT, 'bad-record', 'queue slot: bad header');
  const gen = readU32(b, 1);
  const envs: Uint8Array[] = [];
  let at = SLOT_HEADER;
  while (at < b.length) {
    check(at + 2 <= b.length, 'bad-record', 'queue slot: truncated length');
    const n = (b[at] << 8) | b[at + 1];
    at += 2;
    check(n > 0 && at + n <= b.length, 'bad-record', 'queue slot: truncated envelope');
    envs.push(b.slice(at, at + n));
    at += n;
  }
  return { gen, envs };
}

/** §9 readings endpoint beside the JSON-RPC one: `<base>/rpc` → `<base>/v1/readings`; a URL without `/rpc` is the base. */
export function readingsUrl(relayUrl: string): string {
  let base = relayUrl;
  while (base.endsWith('/')) base = base.slice(0, -1);
  if (base.endsWith('/rpc')) base = base.slice(0, -4);
  return `${base}/v1/readings`;
}

function isFiniteValues(values: Record<string, number>): boolean {
  for (const k in values) if (typeof values[k] !== 'number' || !Number.isFinite(values[k])) return false;
  return true;
}

export class ReadingQueue {
  private readonly storage: Storage;
  private readonly transport: Transport;
  readonly slots: number;
  readonly slotBytes: number;
  readonly ramEnvelopes: number;
  private readonly maxPerDrain: number;
  /** Slot index → contents (a mirror of storage). */
  private readonly ring = new Map<number, Slot>();
  /** Envelopes newer than every slot, not written anywhere (lost to a power cut: a gap, §7). */
  private ram: Uint8Array[] = [];
  private ramBytes = 0;
  private stats = { sent: 0, droppedFull: 0, refused: 0, resealed: 0 };
  private sentUnsaved = 0;
  private draining = false;
  private keyCache: { epoch: bigint; K: Uint8Array; dataKey: Uint8Array } | undefined;
  /** The keys and RNG of the last seal(): what drain() re-seals with when not given them. */
  private sealer: { keys: SealingKeys; random: Random } | undefined;

  constructor(storage: Storage, transport: Transport, opts: QueueOptions = {}) {
    this.storage = storage;
    this.transport = transport;
    this.slots = opts.slots ?? DEFAULT_SLOTS;
    this.slotBytes = opts.slotBytes ?? DEFAULT_SLOT_BYTES;
    this.maxPerDrain = opts.maxPerDrain ?? DEFAULT_MAX_PER_DRAIN;
    this.ramEnvelopes = opts.ramEnvelopes ?? DEFAULT_RAM_ENVELOPES;
    check(Number.isInteger(this.slots) && this.slots >= 2 && this.slots <= MAX_SLOTS, 'bad-option', `queue: slots must be 2..${MAX_SLOTS}`);
    check(Number.isInteger(this.slotBytes) && this.slotBytes >= 256 && this.slotBytes <= MAX_VALUE_BYTES, 'bad-option', `queue: slotBytes must be 256..${MAX_VALUE_BYTES}`);
    check(Number.isInteger(this.maxPerDrain) && this.maxPerDrain >= 1, 'bad-option', 'queue: maxPerDrain must be ≥ 1');
    check(Number.isInteger(this.ramEnvelopes) && this.ramEnvelopes >= 1 && this.ramEnvelopes <= 64, 'bad-option', 'queue: ramEnvelopes must be 1..64');
    this.load();
  }

  private key(i: number): string {
    const k = `q${i}`;
    check(k.length <= MAX_KEY_CHARS, 'bad-record', 'queue: key too long');
    return k;
  }

  private load(): void {
    for (let i = 0; i < this.slots; i++) {
      const b = this.storage.get(this.key(i));
      if (!b) continue;
      try {
        const s = decodeSlot(b);
        // A slot in the wrong place or empty cannot come from this code: discard it.
        if (s.gen % this.slots !== i || s.envs.length === 0) throw new IotkxError('bad-record', 'queue slot misplaced');
        this.ring.set(i, { gen: s.gen, envs: s.envs, bytes: b.length, done: 0 });
      } catch {
        this.storage.delete(this.key(i));
      }
    }
    const st = this.storage.get(KEY_STATS);
    if (st && (st.length === 13 || st.length === 17) && st[0] === FORMAT) {
      this.stats = { sent: readU32(st, 1), droppedFull: readU32(st, 5), refused: readU32(st, 9), resealed: st.length === 17 ? readU32(st, 13) : 0 };
    }
  }

  private saveStats(): void {
    const out = [FORMAT];
    u32(out, this.stats.sent); u32(out, this.stats.droppedFull); u32(out, this.stats.refused); u32(out, this.stats.resealed);
    this.storage.set(KEY_STATS, Uint8Array.from(out));
    this.sentUnsaved = 0;
  }

  /** Slots oldest first. */
  private ordered(): Array<[number, Slot]> {
    return [...this.ring.entries()].sort((a, b) => a[1].gen - b[1].gen);
  }

  private writeSlot(i: number, s: { gen: number; envs: Uint8Array[] }): void {
    const v = encodeSlot(s.gen, s.envs);
    check(v.length <= MAX_VALUE_BYTES, 'bad-record', 'queue slot over the NVS value limit');
    this.storage.set(this.key(i), v); // the one write of the operation; the mirror follows only if it succeeded
    this.ring.set(i, { gen: s.gen, envs: s.envs, bytes: v.length, done: 0 });
  }

  private removeSlot(i: number): void {
    this.storage.delete(this.key(i));
    this.ring.delete(i);
  }

  /** Append one sealed envelope: to RAM, spilled with the rest of RAM once ramEnvelopes are held. */
  enqueue(envelope: Uint8Array): void {
    check(envelope.length > 0 && SLOT_HEADER + 2 + envelope.length <= this.slotBytes, 'reading-too-large',
      `queue: a ${envelope.length}-byte envelope does not fit a ${this.slotBytes}-byte slot`);
    if (this.ram.length > 0 && SLOT_HEADER + this.ramBytes + 2 + envelope.length > this.slotBytes) this.spill();
    this.ram.push(envelope);
    this.ramBytes += 2 + envelope.length;
    if (this.ram.length >= this.ramEnvelopes) this.spill();
  }

  /**
   * Write RAM's envelopes to storage (one Storage write): appended to the newest slot if
   * they fit, else as a new slot. When the ring is full, the oldest slot is dropped and counted.
   */
  spill(afterFailure = false): void {
    if (this.ram.length === 0) return;
    const all = this.ordered();
    const tail = all.length ? all[all.length - 1] : undefined;
    if (tail) {
      // Room in the newest slot (a failed drain spilled a few): append there, so early
      // small spills of an outage do not shrink how many readings the ring holds.
      const kept = tail[1].envs.slice(tail[1].done);
      let bytes = SLOT_HEADER + this.ramBytes;
      for (const e of kept) bytes += 2 + e.length;
      if (bytes <= this.slotBytes) {
        this.writeSlot(tail[0], { gen: tail[1].gen, envs: [...kept, ...this.ram] });
        this.ram = [];
        this.ramBytes = 0;
        return;
      }
      // After a failed drain, a few envelopes that no longer fit the newest slot wait in RAM for
      // a full batch (ramEnvelopes) instead of starting a small slot: slots stay full, the ring holds
      // ~slots × ramEnvelopes readings through an outage, and a cut still loses fewer than ramEnvelopes.
      if (afterFailure) return;
    }
    const gen = tail ? tail[1].gen + 1 : 0;
    check(gen <= 0xffffffff, 'queue-exhausted', 'queue: generation counter exhausted');
    const i = gen % this.slots;
    const oldest = this.ring.get(i); // gen − slots: necessarily the oldest slot held
    this.writeSlot(i, { gen, envs: this.ram });
    this.ram = [];
    this.ramBytes = 0;
    if (oldest) {
      this.stats.droppedFull += oldest.envs.length - oldest.done;
      this.saveStats();
    }
  }

  /**
   * Seal `values` (e.g. {temp, rh}) with `t` = unix seconds under the active key and
   * enqueue it (§7). Throws 'no-active-key' when there is none, 'bad-reading' for a
   * non-finite value (checked before a seq is reserved).
   */
  seal(keys: SealingKeys, random: Random, tSec: number, values: Record<string, number>): { epoch: bigint; seq: bigint } {
    check(isFiniteValues(values) && Number.isInteger(tSec), 'bad-reading', 'reading: values must be finite numbers and t an integer');
    const key = keys.activeKey();
    if (!key) throw new IotkxError('no-active-key', 'no active key to seal with');
    this.sealer = { keys, random };
    const sealed = this.sealNew(keys, random, key, { ...values, t: tSec });
    this.enqueue(sealed.envelope);
    return { epoch: sealed.epoch, seq: sealed.seq };
  }

  /** Seal a plaintext map under the active key and a freshly reserved seq. */
  private sealNew(keys: SealingKeys, random: Random, key: EpochKey, values: Record<string, unknown>): { envelope: Uint8Array; epoch: bigint; seq: bigint } {
    const { epoch, seq } = keys.reserveSeq(); // persists the high-water mark ahead of use (§7)
    check(epoch === key.epoch, 'no-active-key', 'active key changed while sealing');
    const envelope = sealReading({ dataKey: this.dataKey(key), device: keys.address, epoch, seq, values: values as never, random });
    return { envelope, epoch, seq };
  }

  private dataKey(key: EpochKey): Uint8Array {
    if (this.keyCache && this.keyCache.epoch === key.epoch && this.keyCache.K === key.K) return this.keyCache.dataKey;
    const dataKey = dataKeyOf(key.K, key.channelId);
    // Cache the active epoch's key only: a re-seal opens the previous epoch's envelopes now and then.
    if (!this.keyCache || this.keyCache.epoch <= key.epoch) this.keyCache = { epoch: key.epoch, K: key.K, dataKey };
    return dataKey;
  }

  /**
   * §7: the relay refused `env` with 409 (its seq squatted): the same measurement sealed
   * under the active key and the next seq; 'lost' if it does not open (never one of
   * ours, or its epoch's key is gone); undefined if it cannot be sealed now (no active key).
   */
  private reseal(env: Uint8Array, sealer: { keys: SealingKeys; random: Random } | undefined): Uint8Array | 'lost' | undefined {
    const active = sealer?.keys.activeKey();
    if (!sealer || !active) return undefined;
    let values: Record<string, unknown>;
    try {
      const e = decodeEnvelope(env);
      const prev = sealer.keys.previousKey?.();
      const key = e.epoch === active.epoch ? active : prev && prev.epoch === e.epoch ? prev : undefined;
      if (!key) return 'lost';
      values = openReading(this.dataKey(key), e).values as Record<string, unknown>;
    } catch {
      return 'lost';
    }
    return this.sealNew(sealer.keys, sealer.random, active, values).envelope;
  }

  /** Queued envelopes, oldest first (spilled, then RAM). */
  envelopes(): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (const [, s] of this.ordered()) out.push(...s.envs.slice(s.done));
    out.push(...this.ram);
    return out;
  }

  get size(): number {
    let n = this.ram.length;
    for (const s of this.ring.values()) n += s.envs.length - s.done;
    return n;
  }

  /** Envelopes held in RAM only (lost to a power cut). */
  get unsaved(): number {
    return this.ram.length;
  }

  /** Does the queue still hold an envelope of `epoch`? (The previous key is released only once none is left.) */
  holdsEpoch(epoch: bigint): boolean {
    for (const e of this.envelopes()) {
      try {
        if (decodeEnvelope(e).epoch === epoch) return true;
      } catch {
        // never produced by seal(); the relay will refuse it (400) and it gets dropped
      }
    }
    return false;
  }

  counters(): QueueCounters {
    const { sent, droppedFull, refused, resealed } = this.stats;
    return { queued: this.size, sent, dropped: droppedFull + refused, droppedFull, refused, resealed };
  }

  /** The oldest envelope still to send, or undefined. */
  private front(): Uint8Array | undefined {
    const head = this.ordered()[0];
    return head ? head[1].envs[head[1].done] : this.ram[0];
  }

  /** `env` left the queue (acknowledged or refused): from RAM, or the front of its slot (deleted once all its envelopes left). */
  private consume(env: Uint8Array): void {
    if (this.ram[0] === env) {
      this.ram.shift();
      this.ramBytes -= 2 + env.length;
      return;
    }
    for (const [i, s] of this.ring) {
      if (s.envs[s.done] !== env) continue;
      s.done++;
      if (s.done === s.envs.length) this.removeSlot(i);
      return;
    }
    // Not at a front any more: its slot was overwritten meanwhile (queue full), already counted as dropped.
  }

  /** Put `fresh` (a re-seal) where `env` is: in RAM, or in its slot (one write, which also drops the slot's done front). */
  private replace(env: Uint8Array, fresh: Uint8Array): void {
    if (this.ram[0] === env) {
      this.ram[0] = fresh;
      this.ramBytes += fresh.length - env.length;
      return;
    }
    for (const [i, s] of this.ring) {
      if (s.envs[s.done] !== env) continue;
      this.writeSlot(i, { gen: s.gen, envs: [fresh, ...s.envs.slice(s.done + 1)] });
      return;
    }
  }

  /**
   * Send queued envelopes oldest first, at most maxPerDrain. Deletes only what the relay
   * acknowledged (or refused for good: 400/413); re-seals on 409 (§7) with `sealer` (else
   * the keys and RNG of the last seal()); stops at the first network error or other status.
   */
  async drain(relayUrl: string, sealer?: { keys: SealingKeys; random: Random }): Promise<DrainResult> {
    const result: DrainResult = { sent: 0, refused: 0, resealed: 0, stopped: null, remaining: this.size };
    if (this.draining) return { ...result, stopped: 'busy' };
    this.draining = true;
    const url = readingsUrl(relayUrl);
    let budget = this.maxPerDrain;
    let lost = 0;
    try {
      while (budget > 0 && result.stopped === null) {
        const env = this.front();
        if (!env) break;
        budget--;
        let status: number;
        try {
          status = (await this.transport.request('POST', url, env, 'application/cbor')).status;
        } catch (e) {
          result.stopped = e instanceof IotkxError ? e.code : 'transport-error';
          break;
        }
        if (ACKED.includes(status)) {
          result.sent++; this.stats.sent++; this.sentUnsaved++;
          this.consume(env);
        } else if (REFUSED.includes(status)) {
          result.refused++; this.stats.refused++;
          this.consume(env);
        } else if (status === SQUATTED) {
          if (result.resealed >= MAX_RESEALS_PER_DRAIN) { result.stopped = 'squatted'; break; }
          const fresh = this.reseal(env, sealer ?? this.sealer);
          if (fresh === 'lost') { result.refused++; this.stats.refused++; lost++; this.consume(env); continue; }
          if (!fresh) { result.stopped = 'cannot-reseal'; break; }
          result.resealed++; this.stats.resealed++;
          this.replace(env, fresh);
        } else {
          result.stopped = `http-${status}`;
          break;
        }
      }
    } finally {
      this.draining = false;
    }
    // The relay did not take everything: what RAM holds goes to storage now (one write), so a
    // power cut during an outage loses at most the readings since the last failed drain.
    const failed = result.stopped !== null;
    if (failed) this.spill(true);
    if (result.refused > 0 || result.resealed > 0 || lost > 0 || this.sentUnsaved >= STATS_EVERY_SENT || (failed && this.sentUnsaved > 0)) this.saveStats();
    result.remaining = this.size;
    return result;
  }

  /** §6 factory-reset: the queued readings and counters go with the rest of the partition. */
  wipe(): void {
    for (let i = 0; i < MAX_SLOTS; i++) this.storage.delete(this.key(i));
    this.storage.delete(KEY_STATS);
    this.ring.clear();
    this.ram = [];
    this.ramBytes = 0;
    this.stats = { sent: 0, droppedFull: 0, refused: 0, resealed: 0 };
    this.sentUnsaved = 0;
    this.keyCache = undefined;
    this.sealer = undefined;
  }
}
