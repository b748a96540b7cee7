/**
 * The device side of the key exchange (PROTOCOL.md §5.3, §5.5, §5.6) as an explicit
 * state machine: `step()` performs one bounded action (at most one persisted write,
 * a few relay calls) and returns how long to wait before the next, so the firmware's
 * timer loop, the simulator and tests drive it and may cut power between any two
 * steps. Everything the relay says is a hint (§1); the engine trusts only what the
 * pinned receiver signed, its own records, and its provisioned caps.
 *
 * States: unprovisioned → provisioned → exchanging → active, and revoked (§5.6).
 *
 * Decisions where PROTOCOL.md is silent (see the report / docs):
 * - Nonces are the device's own count, never the relay's. The identity key is made on
 *   the device and never leaves it, so every transaction from its address is one the
 *   device persisted before broadcasting (§5.3 step 4): its count is authoritative.
 *   A relay's transaction count is read only as a hint that a nonce was spent without
 *   landing the offer (then the same epoch and K are re-signed with the next own nonce).
 *   Nothing the relay says can make the device sign two different offers with one
 *   nonce, or jump its nonce (which would strand later transactions behind a gap).
 * - An epoch is left behind (rejected / expired / accepted unrecognisably) only when the
 *   relay's channel() shows that epoch on chain; an honest relay thus never makes the device
 *   skip an epoch, and a lying one costs a delay only: the left epoch's record is kept and
 *   offered again when the chain shows it never landed (reopen / resync, DECISIONS.md).
 * - Revocation is also read from the chain's DeviceRevoked log (at boot, every IDLE_CHECK_MS,
 *   and before activating): a revoke + re-enrol the device never saw voids older acceptances.
 * - The daily signing budget runs on measured (monotonic, persisted) time, not the wall clock.
 * - Spacing T applies to every transaction with a new nonce; fee bumps (same nonce,
 *   same calldata) only count against the daily budget.
 */
import { addressHex, addressOf } from '../address.js';
import { bigIntToBytes, equalBytes } from '../bytes.js';
import { IotkxError, check } from '../errors.js';
import { wrapKey } from '../ecies.js';
import { keyAcceptanceDigest, receiverKeyDigest, recoverTypedSigner, type Eip712Domain } from '../eip712.js';
import { channelId, commitmentOf, proofOf } from '../ids.js';
import {
  ChannelState, decodeChannel, decodeLog, decodeOfferTtlBlocks, decodeReceiverKey, encodeChannelCall, encodeOfferKey,
  encodeOfferTtlBlocksCall, encodeReceiverKeyCall, eventTopic, type ChannelRecord as ChainChannel,
} from '../keyexchange-abi.js';
import type { Clock, Random, Storage, Transport } from '../platform.js';
import { RpcClient } from '../rpc.js';
import { assertPublicKey, getPublicKey, isValidSecretKey } from '../secp256k1.js';
import { decodeTransaction, signTransaction, transactionHash, type Transaction } from '../tx.js';
import { parseConfig, type DeviceConfig } from './config.js';
import { bumpFees, quoteFees, type Fees } from './fees.js';
import { assertSignable } from './policy.js';
import { MAX_SUPERSEDED, Records, type ChannelRecord, type PendingRecord, type ReceiverKeyRecord } from './records.js';

export type DeviceState = 'unprovisioned' | 'provisioned' | 'exchanging' | 'active' | 'revoked';

export interface EngineDeps {
  storage: Storage;
  random: Random;
  clock: Clock;
  transport: Transport;
}

export interface StepResult {
  /** What the step did (e.g. 'new-epoch', 'signed', 'broadcast', 'activated', 'wait'). */
  action: string;
  state: DeviceState;
  /** Suggested delay before the next step, ms. */
  waitMs: number;
}

export interface DeviceStatus {
  state: DeviceState;
  address: string;
  /** Active (accepted) epoch or null. */
  epoch: string | null;
  pendingEpoch: string | null;
  lastOffered: string;
  nextNonce: string;
  keyVersion: number | null;
  backoffExp: number;
  txToday: number;
  lastAction: string | null;
  lastError: { code: string; message: string } | null;
  relayReachable: boolean | null;
}

export interface ActiveKey {
  epoch: bigint;
  K: Uint8Array;
  channelId: Uint8Array;
}

/** seq values reserved per write of the high-water mark (§7: persist ahead of use). */
export const SEQ_BLOCK = 16n;
/** Floor of the spacing T between offers with a new nonce, whatever offerTtlBlocks the relay reports (§5.3). */
export const MIN_OFFER_SPACING_MS = 60_000;
/** A signed offer that has not landed after this many blocks (and at least a minute) gets a fee bump. */
const BUMP_AFTER_BLOCKS = 20;
/** A nonce the relay calls spent while the offer has not landed is re-signed after this many polls. */
const SPENT_GRACE_POLLS = 3;
/** Back-off exponent ceiling (2^20 × T exceeds any sane backoffMaxSec). */
const MAX_BACKOFF_EXP = 20;
const DAY_MS = 86_400_000;
/** When idle (active, nothing to do) look at channel() this often, to notice revocation. */
const IDLE_CHECK_MS = 600_000;
/** Measured time (the signing budget's clock) is persisted at least this often while the device runs. */
const MEASURED_PERSIST_MS = 1_800_000;
/** An acceptance the device cannot match to any K of its epoch is left after this many offer TTLs. */
const UNRECOGNISED_TTLS = 8n;

type SignMode = 'first' | 'resign' | 'renonce' | 'rekey' | 'bump';

const bigMin = (a: bigint, b: bigint) => (a < b ? a : b);
/** An address as a 32-byte log topic. */
const word = (a: Uint8Array) => { const w = new Uint8Array(32); w.set(a, 12); return w; };

export class DeviceEngine {
  readonly records: Records;
  private readonly random: Random;
  private readonly clock: Clock;
  private readonly transport: Transport;
  private readonly sk: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly address: Uint8Array;

  private cfg: DeviceConfig | undefined;
  private rpcClient: RpcClient | undefined;
  private chan: ChannelRecord;
  private rkey: ReceiverKeyRecord | undefined;
  private channelIdCache: Uint8Array | undefined;

  // Volatile (per boot) hints and timers: losing them on a power cut is harmless.
  private ttlBlocks: bigint | undefined;
  private lastBroadcastAt = -Infinity;
  private spentSince: number | undefined;
  private lowSince: number | undefined;
  /** Clock ms of the last DeviceRevoked check of the active epoch (-Infinity: not yet this boot). */
  private revocationCheckedAt = -Infinity;
  /** Block at which this boot first saw the pending epoch accepted with an acceptance it cannot match. */
  private unrecognised: { epoch: bigint; block: bigint } | undefined;
  // Measured time (see measured()): persisted base, this boot's monotonic origin, the fallback's state.
  private readonly measuredAtBoot: number;
  private monoAtBoot: number | undefined;
  private lastMeasured = 0;
  private fallbackMeasured: number;
  private fallbackWall: number | undefined;
  private lastWaitMs = 0;
  private errors = 0;
  private lastAction: string | null = null;
  private lastError: { code: string; message: string } | null = null;
  private relayReachable: boolean | null = null;
  private seqNext: bigint | undefined;
  private seqHwm = 0n;
  private seqEpoch = 0n;

  constructor(deps: EngineDeps) {
    this.records = new Records(deps.storage);
    this.random = deps.random;
    this.clock = deps.clock;
    this.transport = deps.transport;
    let sk = this.records.identity();
    if (!sk) {
      // §2: d comes from the hardware RNG; a value outside [1, n−1] is drawn again.
      do sk = deps.random.bytes(32); while (!isValidSecretKey(sk));
      this.records.setIdentity(sk);
    }
    this.sk = sk;
    this.publicKey = getPublicKey(sk);
    this.address = addressOf(this.publicKey);
    this.cfg = this.records.config();
    this.chan = this.records.channel();
    this.rkey = this.records.receiverKey();
    this.measuredAtBoot = this.fallbackMeasured = this.lastMeasured = this.chan.measuredMs ?? 0;
    const mono = this.clock.monotonic?.();
    if (mono !== undefined && Number.isFinite(mono)) this.monoAtBoot = mono;
  }

  /* ---------- console-facing API (§6) ---------- */

  get state(): DeviceState {
    if (!this.cfg) return 'unprovisioned';
    const c = this.chan;
    if (c.revoked) return 'revoked';
    if (c.active) return 'active';
    if (c.pending || c.lastOffered > 0n) return 'exchanging';
    return 'provisioned';
  }

  get config(): DeviceConfig | undefined { return this.cfg; }

  /** §6 `provision`: validate and store; refused once provisioned (re-provisioning needs a factory reset). */
  provision(json: unknown): DeviceConfig {
    check(!this.cfg, 'already-provisioned', 'device is already provisioned (factory-reset first)');
    const cfg = parseConfig(json);
    this.records.setConfig(cfg);
    this.cfg = cfg;
    this.rpcClient = undefined;
    return cfg;
  }

  /** §6 `factory-reset`: `confirm` must be this device's address; the next boot makes a new identity. */
  factoryReset(confirm: string): void {
    check(typeof confirm === 'string' && confirm.toLowerCase() === addressHex(this.address), 'bad-confirmation', 'factory-reset: confirm must be the device address');
    this.records.wipe();
  }

  status(): DeviceStatus {
    const c = this.chan;
    return {
      state: this.state,
      address: addressHex(this.address),
      epoch: c.active ? c.active.epoch.toString() : null,
      pendingEpoch: c.pending ? c.pending.epoch.toString() : null,
      lastOffered: c.lastOffered.toString(),
      nextNonce: c.nextNonce.toString(),
      keyVersion: this.rkey ? this.rkey.version : null,
      backoffExp: c.backoffExp,
      txToday: this.budgetUsed(this.measuredPeek()),
      lastAction: this.lastAction,
      lastError: this.lastError,
      relayReachable: this.relayReachable,
    };
  }

  /** The key readings are sealed with (§7), or undefined (none yet, or revoked). */
  activeKey(): ActiveKey | undefined {
    const a = this.chan.active;
    if (!a || this.chan.revoked || !this.cfg) return undefined;
    return { epoch: a.epoch, K: a.K, channelId: this.channel() };
  }

  /** The previous epoch's key, kept until its queued readings are acknowledged (§5.3 step 4). */
  previousKey(): ActiveKey | undefined {
    const p = this.chan.previous;
    return p && this.cfg ? { epoch: p.epoch, K: p.K, channelId: this.channel() } : undefined;
  }

  /** Erase the previous key once the relay acknowledged its readings. */
  releasePrevious(epoch: bigint): void {
    if (this.chan.previous?.epoch !== epoch) return;
    this.persist({ ...this.chan, previous: undefined });
  }

  /**
   * The next `seq` of the active epoch (§7). The high-water mark is persisted
   * SEQ_BLOCK ahead before a seq is handed out, so a power cut never reuses one.
   */
  reserveSeq(): { epoch: bigint; seq: bigint } {
    const a = this.chan.active;
    if (!a || this.chan.revoked) throw new IotkxError('no-active-key', 'no active key to seal with');
    this.loadSeq(a.epoch);
    const seq = this.seqNext!;
    if (seq > this.seqHwm) {
      const hwm = seq + SEQ_BLOCK - 1n;
      this.records.setSeq({ epoch: a.epoch, hwm });
      this.seqHwm = hwm;
    }
    this.seqNext = seq + 1n;
    return { epoch: a.epoch, seq };
  }

  /** Readings sealed (or reserved) under the active key: the highest seq handed out. */
  readingsUnderActive(): bigint {
    const a = this.chan.active;
    if (!a) return 0n;
    this.loadSeq(a.epoch);
    return this.seqNext! - 1n;
  }

  /**
   * §5.6 count policy reached (rotation.maxReadings) while the last step found nothing to do: the caller
   * should step now instead of at the idle check (IDLE_CHECK_MS later). Local only, no relay call. False
   * once a step has acted on it, so its spacing T, daily budget and error back-off waits stand.
   */
  rotationDue(): boolean {
    const cfg = this.cfg;
    const c = this.chan;
    if (!cfg || this.lastAction !== 'idle' || !c.active || c.pending || c.revoked) return false;
    const { maxReadings } = cfg.rotation;
    return maxReadings > 0 && this.readingsUnderActive() >= BigInt(maxReadings);
  }

  private loadSeq(epoch: bigint): void {
    if (this.seqNext !== undefined && this.seqEpoch === epoch) return;
    const s = this.records.seq();
    this.seqEpoch = epoch;
    this.seqHwm = s && s.epoch === epoch ? s.hwm : 0n;
    this.seqNext = this.seqHwm + 1n;
  }

  /* ---------- the state machine ---------- */

  /** One bounded action. Never throws for relay or chain trouble: it is recorded in lastError. */
  async step(): Promise<StepResult> {
    if (!this.cfg) return this.result('unprovisioned', 60_000);
    try {
      const r = await this.advance(this.cfg);
      this.errors = 0;
      return r;
    } catch (e) {
      const code = e instanceof IotkxError ? e.code : 'internal-error';
      this.lastError = { code, message: String((e as Error)?.message ?? e) };
      if (code === 'transport-error' || code === 'http-error') this.relayReachable = false;
      this.errors = Math.min(this.errors + 1, 16);
      // Retry with exponential delay from one poll up to the back-off ceiling.
      const wait = Math.min(this.pollMs() * 2 ** (this.errors - 1), this.cfg.backoffMaxSec * 1000);
      return this.result('error', wait);
    }
  }

  /** Drive step() until `until` holds (tests, simulator). `sleep` advances the clock or waits. */
  async run(until: DeviceState | ((e: DeviceEngine) => boolean), opts: { maxSteps?: number; sleep?: (ms: number) => void | Promise<void> } = {}): Promise<StepResult[]> {
    const done = typeof until === 'function' ? until : (e: DeviceEngine) => e.state === until;
    const trace: StepResult[] = [];
    for (let i = 0; i < (opts.maxSteps ?? 1000); i++) {
      if (done(this)) return trace;
      const r = await this.step();
      trace.push(r);
      if (done(this)) return trace;
      await opts.sleep?.(r.waitMs);
    }
    throw new IotkxError('run-limit', `run: not done after ${opts.maxSteps ?? 1000} steps (state ${this.state}, last error ${this.lastError?.code})`);
  }

  private result(action: string, waitMs: number): StepResult {
    this.lastAction = action;
    this.lastWaitMs = Math.max(0, Math.round(waitMs));
    return { action, state: this.state, waitMs: Math.max(0, Math.round(waitMs)) };
  }

  private persist(c: ChannelRecord): void {
    // Every write carries the measured time, so a power cut loses at most what passed since the last one.
    const out = { ...c, measuredMs: Math.max(c.measuredMs ?? 0, this.lastMeasured) };
    this.records.setChannel(out);
    this.chan = out;
  }

  private rpc(cfg: DeviceConfig): RpcClient {
    return (this.rpcClient ??= new RpcClient(this.transport, cfg.relayUrl));
  }

  private channel(): Uint8Array {
    const cfg = this.cfg!;
    return (this.channelIdCache ??= channelId(cfg.chainId, cfg.contract, this.address, cfg.receiver));
  }

  private domain(cfg: DeviceConfig): Eip712Domain {
    return { chainId: cfg.chainId, verifyingContract: cfg.contract };
  }

  private pollMs(): number {
    return Math.min(Math.max(this.cfg!.blockTime * 2000, 1000), 60_000);
  }

  /** §5.3: T = offerTtlBlocks × blockTime, doubled per unconfirmed epoch, capped at backoffMaxSec. */
  private spacingMs(cfg: DeviceConfig, exp: number): number {
    const ttl = Number(bigMin(this.ttlBlocks ?? 0n, 1_000_000_000n));
    const base = Math.max(ttl * cfg.blockTime * 1000, MIN_OFFER_SPACING_MS);
    return Math.min(base * 2 ** exp, cfg.backoffMaxSec * 1000);
  }

  /** Time left before a transaction with a new nonce may be signed (0 = now). */
  private spacingLeft(cfg: DeviceConfig, now: number): number {
    const c = this.chan;
    if (c.lastOfferAt === 0) return 0;
    // A clock that went back by more than a day would stall offers for as long: count from now
    // instead (this persists, so the caller's step ends with 'wait-spacing').
    if (now < c.lastOfferAt - DAY_MS) this.persist({ ...c, lastOfferAt: now });
    return Math.max(0, this.chan.lastOfferAt + this.spacingMs(cfg, this.chan.backoffExp) - now);
  }

  /**
   * Measured time, ms (DECISIONS.md "Signing budget on measured time"): the time persisted at the last
   * write plus what the platform's monotonic clock counted since this boot. The wall clock (SNTP answers
   * come through the network, an RTC can glitch) never moves it; time switched off is not counted (the
   * budget only gets stricter). Without a monotonic clock: the wall clock's forward steps, each capped
   * at the engine's own last requested wait (plus a poll), so one jump is worth at most one wait.
   */
  private measured(): number {
    const m = this.measuredPeek();
    if (this.clock.monotonic === undefined) {
      this.fallbackMeasured = m;
      this.fallbackWall = this.clock.now();
    }
    this.lastMeasured = m;
    return m;
  }

  /** measured() without moving the fallback's reference point (status()). */
  private measuredPeek(): number {
    let m: number;
    const mono = this.clock.monotonic?.();
    if (mono !== undefined && Number.isFinite(mono)) {
      this.monoAtBoot ??= mono;
      m = this.measuredAtBoot + Math.max(0, mono - this.monoAtBoot);
    } else {
      const wall = this.clock.now();
      this.fallbackWall ??= wall;
      const step = Math.min(Math.max(0, wall - this.fallbackWall), this.lastWaitMs + 60_000);
      m = this.fallbackMeasured + (Number.isFinite(step) ? step : 0);
    }
    return Math.max(m, this.lastMeasured);
  }

  /**
   * Signatures in the current budget window: maxTxPerDay per 24 h of measured time, the window opened by
   * the first signature after the previous one closed (DECISIONS.md).
   */
  private budgetUsed(m: number): number {
    const c = this.chan;
    if (c.budgetStart === undefined || m - c.budgetStart >= DAY_MS || m < c.budgetStart) return 0;
    return c.budgetCount;
  }

  private budgetAfterSign(m: number): { budgetStart: number; budgetCount: number } {
    const used = this.budgetUsed(m);
    return { budgetStart: used === 0 ? m : this.chan.budgetStart!, budgetCount: used + 1 };
  }

  private async readChannel(cfg: DeviceConfig): Promise<ChainChannel> {
    const out = decodeChannel(await this.rpc(cfg).call({ to: cfg.contract, data: encodeChannelCall(this.address, cfg.receiver) }));
    this.relayReachable = true;
    return out;
  }

  private async readTtl(cfg: DeviceConfig): Promise<void> {
    if (this.ttlBlocks !== undefined) return;
    this.ttlBlocks = decodeOfferTtlBlocks(await this.rpc(cfg).call({ to: cfg.contract, data: encodeOfferTtlBlocksCall() }));
  }

  private async advance(cfg: DeviceConfig): Promise<StepResult> {
    const now = this.clock.now();
    const m = this.measured();
    // Persist the measured time now and then (a power cut loses at most MEASURED_PERSIST_MS of it).
    if (m - (this.chan.measuredMs ?? 0) >= MEASURED_PERSIST_MS) this.persist(this.chan);
    await this.readTtl(cfg);
    const ch = await this.readChannel(cfg);
    let c = this.chan;

    // §5.6 revocation (or not enrolled yet): no offers while the relay says not enrolled.
    if (!ch.enrolled) {
      if (!c.revoked && (c.lastOffered > 0n || c.active)) {
        this.persist({ ...c, revoked: true });
        return this.result('revoked', this.pollMs());
      }
      this.lastError = { code: 'not-enrolled', message: 'the relay reports the device is not enrolled' };
      return this.result('wait-enrolment', Math.max(this.pollMs(), 30_000));
    }
    if (c.revoked) return this.reEnrolled();
    // §5.6: revoked and re-enrolled without the device seeing `enrolled = false` (it was off, or both
    // happened between two checks): a DeviceRevoked log at or after the active epoch's acceptance.
    // Checked at boot and then every IDLE_CHECK_MS.
    if (c.active && !(now - this.revocationCheckedAt < IDLE_CHECK_MS && now >= this.revocationCheckedAt)) {
      const since = await this.revokedSince(cfg, c.active.acceptedBlock ?? 0n);
      this.revocationCheckedAt = now;
      if (since !== undefined) return this.reEnrolled();
    }

    if (c.pending) return this.advancePending(cfg, c.pending, ch, now);

    if (!this.needNewEpoch(cfg, now)) {
      return this.result('idle', Math.min(IDLE_CHECK_MS, this.rotationDueIn(cfg, now)));
    }
    const left = this.spacingLeft(cfg, now);
    if (left > 0) return this.result('wait-spacing', left);
    if (this.budgetUsed(m) >= cfg.maxTxPerDay) return this.budgetWait(m);
    // §5.3 step 1: verify the receiver key before committing an epoch to it.
    const rk = await this.verifiedReceiverKey(cfg);
    if (rk === 'persisted') return this.result('receiver-key', 0);

    // §5.3 steps 2–3: the next epoch is ours, never the relay's; one K per epoch.
    c = this.chan;
    const epoch = c.lastOffered + 1n;
    if (c.kept?.epoch === epoch) {
      // An epoch the device offered before and left (the chain later showed an earlier epoch): the
      // same record again, so its K is not drawn twice; the offer is re-signed with the same calldata
      // at a nonce the chain has not spent (a fresh K only if the receiver key version changed).
      this.persist({ ...c, pending: c.kept, kept: undefined, lastOffered: epoch, lastOfferAt: now });
      return this.result('reopened', 0);
    }
    const K = this.random.bytes(32);
    check(K.length === 32, 'bad-random', 'random source returned a short K');
    const pending: PendingRecord = { epoch, K, nonce: c.nextNonce, keyVersion: 0, raw: new Uint8Array(0), txHash: new Uint8Array(0), sentAt: 0 };
    this.persist({ ...c, pending, lastOffered: epoch, maxOffered: this.maxOffered(epoch), nextNonce: c.nextNonce + 1n, lastOfferAt: now });
    return this.result('new-epoch', 0);
  }

  /** Highest epoch the device ever offered, with `epoch` included. */
  private maxOffered(epoch = 0n): bigint {
    const c = this.chan;
    const m = c.maxOffered ?? c.lastOffered;
    return m > epoch ? m : epoch;
  }

  /** Epoch the chain surely holds at least: the device's own verified (receiver-signed) acceptances. */
  private verifiedFloor(): bigint {
    const c = this.chan;
    const a = c.active?.epoch ?? 0n, b = c.previous?.epoch ?? 0n;
    return a > b ? a : b;
  }

  /**
   * §5.3: the chain expects epoch `epoch`, below the pending one (an epoch the device left on a relay's
   * word never landed). Offer that epoch again: its kept record (same K and calldata) if the device has
   * one, else a fresh K (it never left a record: nothing of that epoch can be recognised anyway). The
   * pending record is kept in turn, to be offered again once the chain is past `epoch`.
   */
  private reopen(p: PendingRecord, epoch: bigint, now: number): StepResult {
    const c = this.chan;
    let pending: PendingRecord;
    let nextNonce = c.nextNonce;
    if (c.kept?.epoch === epoch) {
      pending = c.kept;
    } else {
      const K = this.random.bytes(32);
      check(K.length === 32, 'bad-random', 'random source returned a short K');
      pending = { epoch, K, nonce: nextNonce, keyVersion: 0, raw: new Uint8Array(0), txHash: new Uint8Array(0), sentAt: 0 };
      nextNonce += 1n;
    }
    this.persist({ ...c, pending, kept: p, lastOffered: epoch, maxOffered: this.maxOffered(p.epoch), nextNonce, lastOfferAt: now });
    this.lastError = { code: 'offer-reopened', message: `the chain expects epoch ${epoch}, below the pending ${p.epoch}: offering it again` };
    return this.result('reopened', 0);
  }

  /** The chain shows `epoch`, above the pending one but an epoch the device offered itself: follow it. */
  private resync(p: PendingRecord, epoch: bigint): StepResult {
    const c = this.chan;
    if (c.kept?.epoch === epoch) {
      this.persist({ ...c, pending: c.kept, kept: p, lastOffered: epoch, maxOffered: this.maxOffered(p.epoch) });
    } else {
      // Its record is gone: leave it (as rejected); the next epoch is epoch + 1.
      this.persist({ ...c, pending: undefined, kept: p, lastOffered: epoch, maxOffered: this.maxOffered(p.epoch) });
    }
    this.lastError = { code: 'offer-resync', message: `the chain shows epoch ${epoch}, offered earlier, above the pending ${p.epoch}` };
    return this.result('resync', 0);
  }

  /**
   * Re-enrolled after a revocation: only epochs accepted from now on are valid (§5.6), so offer a new
   * one, and seal nothing until it is active: the receiver refuses readings of the pre-revocation
   * epoch. Its K becomes the previous key (kept while its queued readings drain), no longer the active one.
   */
  private reEnrolled(): StepResult {
    const c = this.chan;
    this.persist({
      ...c, revoked: false, rotateNow: true, active: undefined,
      previous: c.active ? { epoch: c.active.epoch, K: c.active.K } : c.previous,
    });
    this.seqNext = undefined;
    return this.result('re-enrolled', 0);
  }

  /**
   * The block of the latest DeviceRevoked(receiver, device) log at or after `fromBlock` (0: any), or
   * undefined if there is none. A relay can hide or invent such a log: hiding one is the denial of
   * service it can always do; inventing one costs the device a new epoch (spacing and budget bound).
   * The query names the contract, both indexed topics and a starting block, so the answer stays small.
   */
  private async revokedSince(cfg: DeviceConfig, fromBlock: bigint): Promise<bigint | undefined> {
    const logs = await this.rpc(cfg).getLogs({
      address: cfg.contract,
      topics: [eventTopic('DeviceRevoked'), word(cfg.receiver), word(this.address)],
      fromBlock: fromBlock > 0n ? fromBlock : 'earliest',
    });
    let latest: bigint | undefined;
    for (const log of logs) {
      try {
        if (!equalBytes(log.address, cfg.contract) || log.blockNumber === null || log.blockNumber < fromBlock) continue;
        const d = decodeLog(log);
        if (d.event !== 'DeviceRevoked') continue;
        if (!equalBytes(d.device as Uint8Array, this.address) || !equalBytes(d.receiver as Uint8Array, cfg.receiver)) continue;
        if (latest === undefined || log.blockNumber > latest) latest = log.blockNumber;
      } catch {
        // a malformed log is a relay lie: skip it
      }
    }
    return latest;
  }

  private needNewEpoch(cfg: DeviceConfig, now: number): boolean {
    const c = this.chan;
    return !c.active || c.rotateNow || this.rotationDueIn(cfg, now) === 0;
  }

  /** §5.6 rotation policy: ms until due (0 = due now); count and age criteria, 0 disables one. */
  private rotationDueIn(cfg: DeviceConfig, now: number): number {
    const a = this.chan.active;
    if (!a) return 0;
    const { maxReadings, maxAgeSec } = cfg.rotation;
    if (maxReadings > 0 && this.readingsUnderActive() >= BigInt(maxReadings)) return 0;
    if (maxAgeSec > 0) return Math.max(0, a.activatedAt + maxAgeSec * 1000 - now);
    return IDLE_CHECK_MS;
  }

  private budgetWait(m: number): StepResult {
    this.lastError = { code: 'tx-budget-exhausted', message: 'maxTxPerDay signatures made in this 24 h window' };
    // Look again at least every IDLE_CHECK_MS, so the measured time keeps being persisted meanwhile.
    return this.result('wait-budget', Math.min(IDLE_CHECK_MS, Math.max(1000, this.chan.budgetStart! + DAY_MS - m)));
  }

  private async advancePending(cfg: DeviceConfig, p: PendingRecord, ch: ChainChannel, now: number): Promise<StepResult> {
    if (p.raw.length === 0) {
      // The epoch's first signature. A chain count below the nonce assigned to it means a nonce we
      // signed earlier never landed (withheld, or dropped): take that one, so no gap strands the offer.
      const count = await this.rpc(cfg).getTransactionCount(this.address, 'latest');
      return this.sign(cfg, p, now, 'first', count < p.nonce ? count : p.nonce);
    }

    if (ch.epoch >= p.epoch) {
      // A higher epoch can only be a lie (§5.3 step 2): it changes nothing, but an
      // acceptance signed by the receiver is verified on its own merits either way.
      const acc = await this.findAcceptance(cfg, p, ch.epoch === p.epoch ? ch.offeredAt : 0n);
      if (acc) {
        const c = this.chan;
        // §5.6: after a re-enrolment only epochs accepted later are valid. An acceptance at or before a
        // revocation is void: leave the epoch (it is on chain: the next one follows it) and every key
        // accepted before it, and offer a new epoch.
        if (await this.revokedSince(cfg, acc.block) !== undefined) {
          this.persist({
            ...c, pending: undefined, revoked: false, rotateNow: true, active: undefined,
            previous: c.active ? { epoch: c.active.epoch, K: c.active.K } : c.previous,
          });
          this.seqNext = undefined;
          this.lastError = { code: 'accepted-before-revocation', message: `epoch ${p.epoch} was accepted before a revocation: offering a new epoch` };
          return this.result('void-acceptance', 0);
        }
        const K = acc.K;
        this.persist({
          ...c, pending: undefined, active: { epoch: p.epoch, K, activatedAt: now, acceptedBlock: acc.block },
          previous: c.active ? { epoch: c.active.epoch, K: c.active.K } : c.previous,
          backoffExp: 0, rotateNow: false, kept: c.kept && c.kept.epoch > p.epoch ? c.kept : undefined,
        });
        this.lastError = null;
        this.seqNext = undefined;
        return this.result('activated', 0);
      }
      if (ch.epoch === p.epoch) {
        if (ch.state === ChannelState.rejected) return this.abandon(p, 'rejected');
        if (ch.state === ChannelState.accepted && this.ttlBlocks !== undefined) {
          // Accepted, but with an acceptance none of this epoch's Ks match (a K the device no longer
          // holds, e.g. one evicted from `superseded` after more key rotations than it keeps): never
          // activatable. Left like an expired offer once UNRECOGNISED_TTLS offer TTLs have passed since
          // the acceptance and since this boot first saw it (a relay that forges "accepted" or hides the
          // log gains a delay only: the left epoch's record is kept, §5.3).
          const bn = await this.rpc(cfg).blockNumber();
          if (this.unrecognised?.epoch !== p.epoch || bn < this.unrecognised.block) this.unrecognised = { epoch: p.epoch, block: bn };
          const from = ch.acceptedAt > this.unrecognised.block ? ch.acceptedAt : this.unrecognised.block;
          if (bn > from + this.ttlBlocks * UNRECOGNISED_TTLS) return this.abandon(p, 'unrecognised');
        }
        if (ch.state === ChannelState.offered && this.ttlBlocks !== undefined) {
          const bn = await this.rpc(cfg).blockNumber();
          if (bn > ch.offeredAt + this.ttlBlocks) return this.abandon(p, 'expired');
        }
        return this.result('wait-acceptance', this.pollMs());
      }
      // Above the pending epoch but one the device itself offered (it went back to an epoch the chain
      // seemed to expect): the chain is past the pending epoch, so follow it.
      if (ch.epoch <= this.maxOffered()) return this.resync(p, ch.epoch);
      this.lastError = { code: 'relay-epoch-ahead', message: `relay reports epoch ${ch.epoch} above the pending ${p.epoch}: ignored` };
    }

    // Not landed (per the relay). First of all, (re)broadcast once per boot.
    if (this.lastBroadcastAt === -Infinity) return this.broadcast(cfg, p, now);
    // §5.3: the relay's transaction count is a hint, read both ways, each only after it held for
    // SPENT_GRACE_POLLS polls (a lagging node, or a short lie, costs nothing).
    const count = await this.rpc(cfg).getTransactionCount(this.address, 'latest');
    if (count < p.nonce) {
      // The chain is below the pending nonce: an earlier nonce of ours never landed (a relay
      // lied that it was spent, or dropped it). Re-sign the pending offer there, so no nonce
      // of ours is left as a gap that strands everything after it.
      this.spentSince = undefined;
      this.lowSince ??= now;
      if (now - this.lowSince >= SPENT_GRACE_POLLS * this.pollMs()) return this.sign(cfg, p, now, 'renonce', count);
    } else {
      this.lowSince = undefined;
    }
    // Was the pending nonce spent by something that did not land the offer (a reverted offer, e.g.
    // the receiver rotated its key)? We signed a transaction at it, so it may be given up: the
    // epoch gets the next own nonce (a fresh K if the receiver key version changed, §5.3).
    const spent = count > p.nonce;
    if (spent && ch.epoch < p.epoch) {
      this.spentSince ??= now;
      if (now - this.spentSince >= SPENT_GRACE_POLLS * this.pollMs()) {
        // The chain expects an earlier epoch than the pending one (its offer reverts BadEpoch): an epoch
        // left on the relay's word ("rejected", "expired") never landed. Offer the epoch the chain expects
        // (never one at or below a receiver-signed acceptance: those surely landed).
        if (ch.epoch + 1n < p.epoch && ch.epoch >= this.verifiedFloor()) return this.reopen(p, ch.epoch + 1n, now);
        const left = this.spacingLeft(cfg, now);
        if (left > 0) return this.result('wait-spacing', left);
        // Nonces in [count, nextNonce) carry only our own transactions that did not land: reuse the lowest.
        const next = this.chan.nextNonce;
        return this.sign(cfg, p, now, 'resign', count < next ? count : next);
      }
      return this.result('wait-landing', this.pollMs());
    }
    this.spentSince = undefined;

    // §5.3: a receiver key version change while the offer is unmined (it would revert with
    // UnknownKeyVersion): a fresh K wrapped to the new key, signed at the same nonce so that at
    // most one of the two offers is mined.
    let rk: ReceiverKeyRecord | 'persisted' | undefined;
    try {
      rk = await this.verifiedReceiverKey(cfg);
    } catch (e) {
      // A record that does not verify changes nothing here: the pending offer is still sent.
      if (!(e instanceof IotkxError) || e.code === 'transport-error' || e.code === 'http-error') throw e;
      this.lastError = { code: e.code, message: e.message };
    }
    if (rk === 'persisted') return this.result('receiver-key', 0);
    if (rk && rk.version !== p.keyVersion && !spent) return this.sign(cfg, p, now, 'rekey', p.nonce);

    if (!spent && p.sentAt > 0 && now - p.sentAt >= Math.max(BUMP_AFTER_BLOCKS * cfg.blockTime * 1000, 60_000)) {
      const r = await this.sign(cfg, p, now, 'bump', p.nonce);
      if (r) return r;
    }
    if (now - this.lastBroadcastAt >= this.pollMs() * 4 || this.lastBroadcastAt > now) return this.broadcast(cfg, p, now);
    return this.result('wait-landing', this.pollMs());
  }

  /** Send the persisted raw tx as it is (§5.3: retries reuse the raw tx). */
  private async broadcast(cfg: DeviceConfig, p: PendingRecord, now: number): Promise<StepResult> {
    this.lastBroadcastAt = now;
    try {
      await this.rpc(cfg).sendRawTransaction(p.raw);
    } catch (e) {
      // "already known", "nonce too low", "insufficient funds": hints; keep the raw tx and retry later.
      const err = e as IotkxError;
      if (err.code !== 'rpc-error') throw e;
      this.lastError = { code: 'broadcast-refused', message: err.message };
    }
    return this.result('broadcast', this.pollMs());
  }

  /** Leave an epoch that the chain (per relay) shows rejected or expired; its K is dropped. */
  private abandon(p: PendingRecord, why: string): StepResult {
    const c = this.chan;
    // The record is kept (K, calldata): should the chain later show that this epoch never landed (the
    // relay lied), it is offered again as it was, instead of the device offering past it forever.
    this.persist({ ...c, pending: undefined, kept: p, backoffExp: Math.min(c.backoffExp + 1, MAX_BACKOFF_EXP) });
    this.lastError = { code: `offer-${why}`, message: `epoch ${p.epoch} ${why}` };
    return this.result(why, 0);
  }

  /**
   * §5.3 step 1: read receiverKey(R), verify the EIP-712 signature recovers to the pinned R
   * and encKey is a curve point; never go below the highest verified version.
   * Returns 'persisted' when it stored a higher version (the step ends there).
   */
  private async verifiedReceiverKey(cfg: DeviceConfig): Promise<ReceiverKeyRecord | 'persisted'> {
    const r = decodeReceiverKey(await this.rpc(cfg).call({ to: cfg.contract, data: encodeReceiverKeyCall(cfg.receiver) }));
    check(r.version > 0n && r.encKey.length > 0, 'no-receiver-key', 'the receiver has no key record');
    check(r.version < 1n << 32n, 'bad-receiver-key', 'receiver key version out of range');
    const version = Number(r.version);
    const known = this.rkey;
    check(!known || version >= known.version, 'stale-receiver-key', `receiver key version ${version} below the verified ${known?.version}`);
    if (known && version === known.version) {
      check(equalBytes(r.encKey, known.encKey), 'bad-receiver-key', 'a different key for an already verified version');
      return known;
    }
    assertPublicKey(r.encKey, 'receiver encryption key');
    let signer: Uint8Array;
    try {
      signer = recoverTypedSigner(receiverKeyDigest(this.domain(cfg), { receiver: cfg.receiver, version: r.version, encKey: r.encKey }), r.sig);
    } catch {
      throw new IotkxError('bad-receiver-key', 'receiver key signature is malformed');
    }
    check(equalBytes(signer, cfg.receiver), 'bad-receiver-key', 'receiver key record is not signed by the pinned receiver');
    const rec = { version, encKey: r.encKey };
    this.records.setReceiverKey(rec);
    this.rkey = rec;
    return 'persisted';
  }

  /**
   * Sign the pending offer at `nonce`. 'first': the epoch's first transaction (nonce assigned at
   * creation); 'resign': the next own nonce (the pending one was spent without landing the offer);
   * 'renonce': a lower nonce that the chain shows unused; 'rekey': the same nonce, because the
   * receiver key version changed; 'bump': same nonce and calldata, higher fees (undefined when a
   * bump is not possible).
   *
   * §5.3: a K is wrapped exactly once, to one receiver key. While the verified key version is the
   * one the pending offer was wrapped for, every re-signature carries the same calldata (the same
   * wrappedKey bytes); when it differs, a fresh K is drawn for the epoch and the old one is kept
   * (superseded) only to recognise its acceptance should that earlier offer be the one that landed.
   */
  private async sign(cfg: DeviceConfig, p: PendingRecord, now: number, mode: 'first' | 'resign' | 'renonce' | 'rekey', nonce: bigint): Promise<StepResult>;
  private async sign(cfg: DeviceConfig, p: PendingRecord, now: number, mode: 'bump', nonce: bigint): Promise<StepResult | undefined>;
  private async sign(cfg: DeviceConfig, p: PendingRecord, now: number, mode: SignMode, nonce: bigint): Promise<StepResult | undefined> {
    const m = this.measured();
    if (this.budgetUsed(m) >= cfg.maxTxPerDay) return mode === 'bump' ? undefined : this.budgetWait(m);
    let data: Uint8Array;
    let keyVersion = p.keyVersion;
    let K = p.K;
    let superseded = p.superseded;
    let fees: Fees;
    const quote = await quoteFees(this.rpc(cfg), cfg);
    const old = p.raw.length > 0 ? decodeTransaction(p.raw).tx : undefined;
    const oldFees = (t: Transaction): Fees => (t.type === 'legacy' ? { type: 'legacy', gasPrice: t.gasPrice } : t);
    if (mode === 'bump') {
      data = old!.data;
      const bumped = bumpFees(oldFees(old!), quote, cfg);
      if (!bumped) return undefined;
      fees = bumped;
    } else {
      const rk = await this.verifiedReceiverKey(cfg);
      if (rk === 'persisted') return this.result('receiver-key', 0);
      if (old && p.keyVersion === rk.version) {
        data = old.data; // the same wrappedKey bytes: K is not wrapped a second time
      } else {
        if (old) {
          // K's wrap to version p.keyVersion has left the device: that K is never wrapped again.
          superseded = [...(p.superseded ?? []), { K: p.K, keyVersion: p.keyVersion }].slice(-MAX_SUPERSEDED);
          K = this.random.bytes(32);
          check(K.length === 32, 'bad-random', 'random source returned a short K');
        }
        keyVersion = rk.version;
        data = encodeOfferKey({
          receiver: cfg.receiver, epoch: p.epoch, keyVersion: BigInt(rk.version),
          wrappedKey: wrapKey(rk.encKey, K, this.random), commitment: commitmentOf(proofOf(K, this.channel(), p.epoch)),
        });
      }
      // A replacement at the nonce of the earlier transaction must outbid it to displace it in a mempool.
      fees = (old && nonce === p.nonce ? bumpFees(oldFees(old), quote, cfg) : undefined) ?? quote;
    }
    const c = this.chan;
    const base = { chainId: cfg.chainId, nonce, gas: cfg.offerGas, to: cfg.contract, value: 0n, data };
    const tx: Transaction = fees.type === 'legacy'
      ? { type: 'legacy', gasPrice: fees.gasPrice, ...base }
      : { type: 'eip1559', maxFeePerGas: fees.maxFeePerGas, maxPriorityFeePerGas: fees.maxPriorityFeePerGas, ...base };
    assertSignable(tx, cfg); // verify what you sign
    const raw = signTransaction(tx, this.sk);
    const next: ChannelRecord = {
      ...c, ...this.budgetAfterSign(m),
      pending: { ...p, K, nonce, keyVersion, raw, txHash: transactionHash(raw), sentAt: now, superseded },
    };
    if (nonce >= c.nextNonce) {
      // A transaction with a new nonce: spacing T runs from here, and the epoch counts as unconfirmed.
      next.nextNonce = nonce + 1n;
      next.lastOfferAt = now;
      next.backoffExp = Math.min(c.backoffExp + 1, MAX_BACKOFF_EXP);
    }
    this.persist(next);
    this.lastBroadcastAt = -Infinity; // broadcast on the next step
    this.spentSince = undefined;
    this.lowSince = undefined;
    const action = { first: 'signed', resign: 'resigned', renonce: 'renonced', rekey: 'rekeyed', bump: 'bumped' } as const;
    return this.result(action[mode], 0);
  }

  /**
   * §5.5: a KeyAccepted log for the pending epoch whose proof is ours and whose EIP-712
   * KeyAcceptance signature recovers to the pinned receiver. Returns the accepted K: the pending
   * one, or a superseded one of the same epoch if that earlier offer is the one that landed.
   */
  private async findAcceptance(cfg: DeviceConfig, p: PendingRecord, fromBlock: bigint): Promise<{ K: Uint8Array; block: bigint } | undefined> {
    const logs = await this.rpc(cfg).getLogs({
      address: cfg.contract,
      topics: [eventTopic('KeyAccepted'), word(this.address), word(cfg.receiver), bigIntToBytes(p.epoch, 32)],
      fromBlock: fromBlock > 0n ? fromBlock : 'earliest',
    });
    if (logs.length === 0) return undefined;
    const candidates = [p.K, ...(p.superseded ?? []).map((s) => s.K)].map((K) => ({ K, proof: proofOf(K, this.channel(), p.epoch) }));
    for (const log of logs) {
      try {
        if (!equalBytes(log.address, cfg.contract)) continue;
        const d = decodeLog(log);
        if (d.event !== 'KeyAccepted' || d.epoch !== p.epoch) continue;
        if (!equalBytes(d.device as Uint8Array, this.address) || !equalBytes(d.receiver as Uint8Array, cfg.receiver)) continue;
        const hit = candidates.find((x) => equalBytes(d.proof as Uint8Array, x.proof)); // cheap check before a signature recovery
        if (!hit) continue;
        const digest = keyAcceptanceDigest(this.domain(cfg), { device: this.address, receiver: cfg.receiver, epoch: p.epoch, proof: hit.proof });
        if (log.blockNumber === null) continue; // not mined (per the relay): look again later
        if (equalBytes(recoverTypedSigner(digest, d.sig as Uint8Array), cfg.receiver)) return { K: hit.K, block: log.blockNumber };
      } catch {
        // a malformed log is a relay lie: skip it
      }
    }
    this.lastError = { code: 'bad-acceptance', message: `no KeyAccepted log for epoch ${p.epoch} verifies` };
    return undefined;
  }
}
