/**
 * The device's persisted state over the injected Storage (NVS on the ESP32), and
 * the one codec for it. Every logical write is a single `Storage.set` of one key:
 * values that must change together share a record (PROTOCOL.md §5.3 step 4: the
 * pending offer, last offered epoch, nonce, budget and back-off live in `chan`, so
 * activation promotes pending → active in one write).
 *
 * Keys (NVS: ≤ 15 characters) and sizes:
 *   id    identity secret key d                       33 B
 *   cfg   DeviceConfig, normalized UTF-8 JSON         ~450 B (≤ 4000)
 *   rkey  highest verified receiver key record        70 B
 *   chan  exchange state (see ChannelRecord)          ~40 B idle, ~660 B with a signed pending offer
 *                                                     (+ 36 B per superseded K, at most 4;
 *                                                     + 25-33 B extension block, + ~620 B with a kept record)
 *   seq   seq high-water mark of one epoch            17 B
 * `seq` is its own key, tagged with its epoch, because it is written every few
 * readings: rewriting `chan` (with its raw tx) that often would wear NVS for nothing.
 * A `seq` whose epoch is not the active epoch counts as 0 (activation needs no second write).
 */
import { check, IotkxError } from '../errors.js';
import type { Storage } from '../platform.js';
import { decodeConfig, encodeConfig, type DeviceConfig } from './config.js';

export const KEY_IDENTITY = 'id';
export const KEY_CONFIG = 'cfg';
export const KEY_RECEIVER_KEY = 'rkey';
export const KEY_CHANNEL = 'chan';
export const KEY_SEQ = 'seq';
/** Every key this module writes (a factory reset deletes them all, §6). */
export const ALL_KEYS = [KEY_IDENTITY, KEY_CONFIG, KEY_RECEIVER_KEY, KEY_CHANNEL, KEY_SEQ];

/** NVS limits (MODDABLE.md §3). */
export const MAX_KEY_CHARS = 15;
export const MAX_VALUE_BYTES = 4000;

/** First byte of every binary record: its format, so a later firmware can migrate. */
const FORMAT = 1;

export interface ReceiverKeyRecord {
  version: number;
  encKey: Uint8Array;
}

/** The offer being exchanged (§5.3 step 4). `raw` is empty until signed. */
export interface PendingRecord {
  epoch: bigint;
  K: Uint8Array;
  nonce: bigint;
  /** Receiver key version the raw tx wraps K for (0 before signing). */
  keyVersion: number;
  raw: Uint8Array;
  /** keccak(raw), or empty before signing. */
  txHash: Uint8Array;
  /** Clock ms when this raw tx was signed (0 before signing): drives fee bumps. */
  sentAt: number;
  /**
   * Earlier Ks of this epoch, each wrapped (and broadcast) for an older receiver key version
   * (§5.3: a K is wrapped exactly once, to one receiver key; a version change draws a fresh K).
   * Kept only to recognise the acceptance should one of those earlier offers be the one that
   * landed; never sealed under otherwise. Oldest first, at most MAX_SUPERSEDED.
   */
  superseded?: SupersededKey[];
}

export interface SupersededKey {
  K: Uint8Array;
  keyVersion: number;
}

/** Superseded Ks kept per pending epoch (one per receiver key version change while it was pending). */
export const MAX_SUPERSEDED = 4;

export interface ActiveRecord {
  epoch: bigint;
  K: Uint8Array;
  /** Clock ms of activation (for rotation by age, §5.6). */
  activatedAt: number;
  /**
   * Block of the KeyAccepted log that activated this epoch (0: unknown, a record of an older
   * firmware). A DeviceRevoked log at or after it means the device was revoked (and re-enrolled)
   * since: the epoch is no longer valid (§5.6).
   */
  acceptedBlock?: bigint;
}

export interface PreviousRecord {
  epoch: bigint;
  K: Uint8Array;
}

export interface ChannelRecord {
  /** Highest epoch ever offered (0: none); a new epoch is always lastOffered + 1 (§5.3 step 2). */
  lastOffered: bigint;
  /** Next nonce the device will assign to a new offer transaction (own count, see engine.ts). */
  nextNonce: bigint;
  /** Offer back-off exponent (§5.3): doubles T per unconfirmed epoch; reset on activation. */
  backoffExp: number;
  /** Clock ms at which the latest offer transaction (new nonce) was created: spacing T runs from here. */
  lastOfferAt: number;
  /** Signature budget (§5.3): UTC day number and signatures made that day. */
  budgetDay: number;
  budgetCount: number;
  /** The relay last said the device is not enrolled after it had offered (§5.6). */
  revoked: boolean;
  /** Offer a new epoch as soon as spacing allows (after re-enrolment). */
  rotateNow: boolean;
  pending?: PendingRecord;
  active?: ActiveRecord;
  /** Key of the previous active epoch, kept until its readings are acknowledged (§5.3 step 4). */
  previous?: PreviousRecord;
  /**
   * Highest epoch the device ever offered (absent: lastOffered). lastOffered can move back below it
   * when the chain shows that an epoch the device left (rejected / expired per the relay) never
   * landed: then the device re-offers the epoch the chain expects (§5.3, engine.ts `reopen`).
   */
  maxOffered?: bigint;
  /**
   * The record of the last epoch the device left behind (rejected / expired per the relay, or moved
   * past), kept with its K and signed raw tx so that, should the chain show it never landed, it is
   * offered again with the same calldata instead of a second K (§5.3). Never sealed under unless accepted.
   */
  kept?: PendingRecord;
  /**
   * Measured time, ms: the monotonic clock accumulated over every boot (not the wall clock, which a
   * relay's SNTP or a glitch can move). Drives the daily signing budget (DECISIONS.md).
   */
  measuredMs?: number;
  /** Measured time at which the current budget window (24 h of measured time) began. */
  budgetStart?: number;
}

export interface SeqRecord {
  epoch: bigint;
  /** Every seq ≤ hwm may have been used: the next boot starts at hwm + 1 (§7). */
  hwm: bigint;
}

export function emptyChannel(): ChannelRecord {
  return { lastOffered: 0n, nextNonce: 0n, backoffExp: 0, lastOfferAt: 0, budgetDay: 0, budgetCount: 0, revoked: false, rotateNow: false };
}

/* ---------- a tiny big-endian writer/reader (hand-written: a few lines, no CBOR needed on this path) ---------- */

class Writer {
  private parts: number[] = [];
  u8(x: number): this { this.parts.push(x & 0xff); return this; }
  u32(x: number): this { for (let i = 3; i >= 0; i--) this.parts.push(Math.floor(x / 2 ** (8 * i)) & 0xff); return this; }
  u64(x: bigint): this { for (let i = 7; i >= 0; i--) this.parts.push(Number((x >> BigInt(8 * i)) & 0xffn)); return this; }
  /** Milliseconds since 1970 as a u64 (fits a double exactly below 2^53). */
  ms(x: number): this { return this.u64(BigInt(Math.max(0, Math.floor(x)))); }
  fixed(b: Uint8Array, n: number): this { check(b.length === n, 'bad-record', `record: expected ${n} bytes`); for (const x of b) this.parts.push(x); return this; }
  var(b: Uint8Array): this { check(b.length < 0x10000, 'bad-record', 'record: field too long'); this.parts.push(b.length >> 8, b.length & 0xff); for (const x of b) this.parts.push(x); return this; }
  bytes(): Uint8Array { return Uint8Array.from(this.parts); }
}

class Reader {
  private at = 0;
  constructor(private readonly b: Uint8Array, private readonly what: string) {}
  private need(n: number): void { if (this.at + n > this.b.length) throw new IotkxError('bad-record', `${this.what}: truncated`); }
  u8(): number { this.need(1); return this.b[this.at++]; }
  u32(): number { this.need(4); let x = 0; for (let i = 0; i < 4; i++) x = x * 256 + this.b[this.at++]; return x; }
  u64(): bigint { this.need(8); let x = 0n; for (let i = 0; i < 8; i++) x = (x << 8n) | BigInt(this.b[this.at++]); return x; }
  ms(): number { return Number(this.u64()); }
  fixed(n: number): Uint8Array { this.need(n); const out = this.b.slice(this.at, this.at + n); this.at += n; return out; }
  var(): Uint8Array { const n = (this.u8() << 8) | this.u8(); return this.fixed(n); }
  end(): void { if (this.at !== this.b.length) throw new IotkxError('bad-record', `${this.what}: trailing bytes`); }
}

function header(r: Reader, what: string): void {
  const f = r.u8();
  if (f !== FORMAT) throw new IotkxError('bad-record', `${what}: unknown record format ${f}`);
}

/* ---------- codecs ---------- */

export function encodeReceiverKey(k: ReceiverKeyRecord): Uint8Array {
  return new Writer().u8(FORMAT).u32(k.version).fixed(k.encKey, 65).bytes();
}
export function decodeReceiverKey(b: Uint8Array): ReceiverKeyRecord {
  const r = new Reader(b, 'rkey');
  header(r, 'rkey');
  const out = { version: r.u32(), encKey: r.fixed(65) };
  r.end();
  return out;
}

const F_REVOKED = 1, F_ROTATE = 2, F_PENDING = 4, F_ACTIVE = 8, F_PREVIOUS = 16, F_SUPERSEDED = 32, F_EXT = 64;
/** Extension block (written only when one of its fields is set, so older records decode unchanged). */
const X_KEPT = 1, X_KEPT_SUPERSEDED = 2;

function writePending(w: Writer, p: PendingRecord): void {
  w.u64(p.epoch).fixed(p.K, 32).u64(p.nonce).u32(p.keyVersion).var(p.raw).var(p.txHash).ms(p.sentAt);
}
function readPending(r: Reader): PendingRecord {
  return { epoch: r.u64(), K: r.fixed(32), nonce: r.u64(), keyVersion: r.u32(), raw: r.var(), txHash: r.var(), sentAt: r.ms() };
}
function writeSuperseded(w: Writer, sup: SupersededKey[]): void {
  w.u8(sup.length);
  for (const k of sup) w.fixed(k.K, 32).u32(k.keyVersion);
}
function readSuperseded(r: Reader): SupersededKey[] {
  const n = r.u8();
  if (n === 0 || n > MAX_SUPERSEDED) throw new IotkxError('bad-record', 'chan: bad superseded keys');
  const sup: SupersededKey[] = [];
  for (let i = 0; i < n; i++) sup.push({ K: r.fixed(32), keyVersion: r.u32() });
  return sup;
}
function hasExt(c: ChannelRecord): boolean {
  return c.maxOffered !== undefined || c.kept !== undefined || c.measuredMs !== undefined || c.budgetStart !== undefined || c.active?.acceptedBlock !== undefined;
}

export function encodeChannel(c: ChannelRecord): Uint8Array {
  const sup = c.pending?.superseded ?? [];
  check(sup.length <= MAX_SUPERSEDED, 'bad-record', `chan: more than ${MAX_SUPERSEDED} superseded keys`);
  const ksup = c.kept?.superseded ?? [];
  check(ksup.length <= MAX_SUPERSEDED, 'bad-record', `chan: more than ${MAX_SUPERSEDED} superseded keys`);
  const ext = hasExt(c);
  const flags = (c.revoked ? F_REVOKED : 0) | (c.rotateNow ? F_ROTATE : 0) | (c.pending ? F_PENDING : 0) | (c.active ? F_ACTIVE : 0) | (c.previous ? F_PREVIOUS : 0)
    | (sup.length > 0 ? F_SUPERSEDED : 0) | (ext ? F_EXT : 0);
  const w = new Writer().u8(FORMAT).u8(flags).u64(c.lastOffered).u64(c.nextNonce).u8(c.backoffExp).ms(c.lastOfferAt).u32(c.budgetDay).u32(c.budgetCount);
  if (c.pending) writePending(w, c.pending);
  if (c.active) w.u64(c.active.epoch).fixed(c.active.K, 32).ms(c.active.activatedAt);
  if (c.previous) w.u64(c.previous.epoch).fixed(c.previous.K, 32);
  if (sup.length > 0) writeSuperseded(w, sup);
  if (ext) {
    w.u8((c.kept ? X_KEPT : 0) | (ksup.length > 0 ? X_KEPT_SUPERSEDED : 0));
    w.u64(c.maxOffered ?? c.lastOffered).ms(c.measuredMs ?? 0).ms(c.budgetStart ?? 0);
    if (c.active) w.u64(c.active.acceptedBlock ?? 0n);
    if (c.kept) writePending(w, c.kept);
    if (ksup.length > 0) writeSuperseded(w, ksup);
  }
  const out = w.bytes();
  check(out.length <= MAX_VALUE_BYTES, 'bad-record', `chan: ${out.length} bytes exceeds the NVS value limit`);
  return out;
}

export function decodeChannel(b: Uint8Array): ChannelRecord {
  const r = new Reader(b, 'chan');
  header(r, 'chan');
  const flags = r.u8();
  const c: ChannelRecord = {
    revoked: (flags & F_REVOKED) !== 0, rotateNow: (flags & F_ROTATE) !== 0,
    lastOffered: r.u64(), nextNonce: r.u64(), backoffExp: r.u8(), lastOfferAt: r.ms(), budgetDay: r.u32(), budgetCount: r.u32(),
  };
  if (flags & F_PENDING) c.pending = readPending(r);
  if (flags & F_ACTIVE) c.active = { epoch: r.u64(), K: r.fixed(32), activatedAt: r.ms() };
  if (flags & F_PREVIOUS) c.previous = { epoch: r.u64(), K: r.fixed(32) };
  if (flags & F_SUPERSEDED) {
    if (!c.pending) throw new IotkxError('bad-record', 'chan: bad superseded keys');
    c.pending.superseded = readSuperseded(r);
  }
  if (flags & F_EXT) {
    const x = r.u8();
    c.maxOffered = r.u64();
    c.measuredMs = r.ms();
    c.budgetStart = r.ms();
    if (c.active) c.active.acceptedBlock = r.u64();
    if (x & X_KEPT) c.kept = readPending(r);
    if (x & X_KEPT_SUPERSEDED) {
      if (!c.kept) throw new IotkxError('bad-record', 'chan: bad superseded keys');
      c.kept.superseded = readSuperseded(r);
    }
  }
  r.end();
  return c;
}

export function encodeSeq(s: SeqRecord): Uint8Array {
  return new Writer().u8(FORMAT).u64(s.epoch).u64(s.hwm).bytes();
}
export function decodeSeq(b: Uint8Array): SeqRecord {
  const r = new Reader(b, 'seq');
  header(r, 'seq');
  const out = { epoch: r.u64(), hwm: r.u64() };
  r.end();
  return out;
}

export function encodeIdentity(sk: Uint8Array): Uint8Array {
  return new Writer().u8(FORMAT).fixed(sk, 32).bytes();
}
export function decodeIdentity(b: Uint8Array): Uint8Array {
  const r = new Reader(b, 'id');
  header(r, 'id');
  const sk = r.fixed(32);
  r.end();
  return sk;
}

/** Typed access to the device's records; the only code that touches Storage keys. */
export class Records {
  constructor(readonly storage: Storage) {}

  private put(key: string, value: Uint8Array): void {
    check(key.length <= MAX_KEY_CHARS, 'bad-record', `storage key ${key} exceeds ${MAX_KEY_CHARS} characters`);
    check(value.length <= MAX_VALUE_BYTES, 'bad-record', `${key}: ${value.length} bytes exceeds the NVS value limit`);
    this.storage.set(key, value);
  }

  identity(): Uint8Array | undefined {
    const b = this.storage.get(KEY_IDENTITY);
    return b ? decodeIdentity(b) : undefined;
  }
  setIdentity(sk: Uint8Array): void { this.put(KEY_IDENTITY, encodeIdentity(sk)); }

  config(): DeviceConfig | undefined {
    const b = this.storage.get(KEY_CONFIG);
    return b ? decodeConfig(b) : undefined;
  }
  setConfig(c: DeviceConfig): void { this.put(KEY_CONFIG, encodeConfig(c)); }

  receiverKey(): ReceiverKeyRecord | undefined {
    const b = this.storage.get(KEY_RECEIVER_KEY);
    return b ? decodeReceiverKey(b) : undefined;
  }
  setReceiverKey(k: ReceiverKeyRecord): void { this.put(KEY_RECEIVER_KEY, encodeReceiverKey(k)); }

  channel(): ChannelRecord {
    const b = this.storage.get(KEY_CHANNEL);
    return b ? decodeChannel(b) : emptyChannel();
  }
  setChannel(c: ChannelRecord): void { this.put(KEY_CHANNEL, encodeChannel(c)); }

  seq(): SeqRecord | undefined {
    const b = this.storage.get(KEY_SEQ);
    return b ? decodeSeq(b) : undefined;
  }
  setSeq(s: SeqRecord): void { this.put(KEY_SEQ, encodeSeq(s)); }

  /** §6 factory-reset: everything this module wrote. */
  wipe(): void { for (const k of ALL_KEYS) this.storage.delete(k); }
}
