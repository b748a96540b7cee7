// Readings ingestion (PROTOCOL.md §7, §5.6): pull envelopes from the relay (GET /v1/readings, cursor
// persisted), open them with the data key of an accepted (device, epoch), and store the decrypted readings.
// Order of checks: an envelope is authenticated before it can touch any state (§7: a forged envelope changes
// nothing: not the seen set, not lastSeq, not the gaps); only then are replays, old epochs and seqs judged.
import { hexToBytes, toHex } from '../../lib/bytes.js';
import type { CborValue } from '../../lib/cbor.js';
import { IotkxError } from '../../lib/errors.js';
import { decodeEnvelope, MAX_ENVELOPE_BYTES, type Envelope } from '../../lib/envelope.js';
import { channelId, dataKeyOf } from '../../lib/ids.js';
import { openReading } from '../../lib/reading.js';
import type { RefusalReason, ReceiverMetrics } from './metrics.js';
import { applySeq, classifySeq, seqStateFromJson, seqStateToJson, DEFAULT_SEQ_WINDOW } from './seqwindow.js';
import { pad, type Store } from './store.js';

export interface IngestConfig {
  /** §5.6: envelopes of an older epoch are accepted until this long after the first authentic envelope of a later one. */
  oldEpochGraceMs: number;
  /** §7: readings whose `t` differs from the receipt time by more are flagged (still stored). */
  maxClockSkewSeconds: number;
  /** Seen-seq window (seqwindow.ts). */
  seqWindow: bigint;
  /**
   * Envelopes held per device for its epochs whose acceptance is not signed yet (K stored, acceptance deferred);
   * beyond this that device's are refused. Per device, so one enrolled device cannot fill it for the others.
   */
  maxParked: number;
  /** Largest GET /v1/readings answer read (bytes); a larger page is refused unread. Default: `limit` full envelopes. */
  maxPageBytes?: number;
  /** Pages pulled per pass at most, so a relay with endless pages cannot hold a pass forever. Default 50. */
  maxPagesPerPass: number;
}

export const DEFAULT_INGEST_CONFIG: IngestConfig = {
  oldEpochGraceMs: 24 * 3600_000,
  maxClockSkewSeconds: 300,
  seqWindow: DEFAULT_SEQ_WINDOW,
  maxParked: 2_000,
  maxPagesPerPass: 50,
};

/** An answer of `limit` envelopes of the largest size, hex-encoded and quoted, plus room for the JSON around them. */
export const pageByteCap = (limit: number): number => limit * (2 * MAX_ENVELOPE_BYTES + 8) + 4096;

/** Reads a fetch Response body up to `cap` bytes; throws (and stops reading) beyond it. */
async function readCapped(res: Response, cap: number, what: string): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > cap) {
    await res.body?.cancel().catch(() => {});
    throw new Error(`relay page over ${cap} bytes (${what}: content-length ${declared}): not read`);
  }
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > cap) {
      await reader.cancel().catch(() => {});
      throw new Error(`relay page over ${cap} bytes (${what}): stopped reading, cursor kept`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export type IngestResult =
  | { status: 'accepted'; device: string; epoch: bigint; seq: bigint; filled: boolean }
  | { status: 'refused'; reason: RefusalReason }
  | { status: 'parked' };

/** CBOR values as JSON: bigint as a decimal string, byte strings as 0x hex (PROTOCOL.md §9). */
export function cborToJson(v: CborValue): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return toHex(v);
  if (Array.isArray(v)) return v.map(cborToJson);
  if (v !== null && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = cborToJson(x);
    return o;
  }
  return v;
}

interface EpochRow { state: string; k_enc: Buffer | null; seq_state: string | null; accepted_block: number | null; signed_block: number | null }

export class Ingest {
  /** Metric updates of the judgments in the open transaction, applied once it commits (a rolled-back page is judged again). */
  private effects: Array<() => void> | undefined;

  constructor(
    private readonly store: Store,
    private readonly metrics: ReceiverMetrics,
    private readonly cfg: IngestConfig,
    private readonly ctx: { chainId: number; contract: string; receiver: string },
    private readonly log: (msg: string, extra?: Record<string, unknown>) => void = () => {},
  ) {}

  private tally(effect: () => void): void {
    if (this.effects) this.effects.push(effect);
    else effect();
  }

  /** One transaction (one fsync) around `fn`; its metric updates are applied only after the commit. */
  private atomically<T>(fn: () => T): T {
    const effects: Array<() => void> = [];
    this.effects = effects;
    let result: T;
    try {
      result = this.store.transaction(fn);
    } finally {
      this.effects = undefined;
    }
    for (const e of effects) e();
    return result;
  }

  private refuse(reason: RefusalReason): IngestResult {
    this.tally(() => this.metrics.readingsRefused.inc({ reason }));
    return { status: 'refused', reason };
  }

  /** A refusal of an envelope that authenticated: also counted per device (the `refused` table). */
  private refuseAuthentic(device: string, reason: RefusalReason, now: number): IngestResult {
    this.store.stmt.countRefused.run(device, reason, now);
    return this.refuse(reason);
  }

  /** Judges one envelope, in its own transaction; `parkOk` false when re-trying a parked one (it is never parked twice). */
  ingest(bytes: Uint8Array, now = Date.now(), parkOk = true): IngestResult {
    return this.atomically(() => this.judge(bytes, now, parkOk));
  }

  /** Judges one envelope; the caller holds the transaction. */
  private judge(bytes: Uint8Array, now: number, parkOk: boolean): IngestResult {
    let env: Envelope;
    try {
      env = decodeEnvelope(bytes);
    } catch {
      return this.refuse('malformed');
    }
    const device = toHex(env.device);
    const q = this.store.stmt;
    const dev = q.device.get(device) as { status: string; revoked_block: number | null } | undefined;
    if (!dev) return this.refuse('unknown-device');
    const epoch = pad(env.epoch);
    const row = q.epoch.get(device, epoch) as EpochRow | undefined;
    // §5.6/§7: an epoch whose acceptance we signed counts as accepted for readings, whatever became of the
    // acceptKey transaction (reverted, reorganised away, still pending): a relay can show the device our
    // signature from public calldata, and we hold K and consented. (acceptSent is always signed; the column
    // may be empty in a database older than it.)
    const signed = row !== undefined && (row.signed_block !== null || row.state === 'acceptSent');
    const accepted = row !== undefined && (row.state === 'accepted' || signed);
    // K stored, acceptance not signed yet (deferred by the rate limit): authenticate, then hold the envelope
    // until the row settles.
    const pendingAccept = row !== undefined && !accepted && row.state === 'keyStored';
    // A revoked device's envelopes are refused (§5.6); those it sealed under a K we hold are authenticated first,
    // so the dashboard can show the provider that the device is still sending (counted per device only then).
    if (dev.status === 'revoked' && (!row || !row.k_enc || !accepted)) return this.refuse('revoked');
    if (!row || !row.k_enc || (!accepted && !pendingAccept)) return this.refuse('unknown-epoch');
    // §5.6: after re-enrolment only epochs accepted (or whose acceptance we signed) later are valid.
    const acceptedAt = row.state === 'accepted' ? row.accepted_block : (row.signed_block ?? row.accepted_block);
    const revokedEpoch = dev.status === 'revoked' || (accepted && dev.revoked_block !== null && (acceptedAt ?? 0) <= dev.revoked_block);
    const K = this.store.openK(device, env.epoch, row.k_enc);
    const chId = channelId(BigInt(this.ctx.chainId), hexToBytes(this.ctx.contract), env.device, hexToBytes(this.ctx.receiver));
    const dataKey = dataKeyOf(K, chId);
    K.fill(0);
    let values;
    try {
      values = openReading(dataKey, env).values;
    } catch (e) {
      const code = e instanceof IotkxError ? e.code : '';
      if (code === 'bad-reading') return this.refuseAuthentic(device, /NaN|Infinity/.test((e as Error).message) ? 'non-finite' : 'bad-reading', now);
      return this.refuse(revokedEpoch ? 'revoked' : 'auth-failed');
    } finally {
      dataKey.fill(0);
    }
    // Authentic from here on.
    if (revokedEpoch) return this.refuseAuthentic(device, 'revoked', now);
    if (pendingAccept) {
      const n = (q.parkedCount.get(device) as { n: number }).n;
      if (!parkOk || n >= this.cfg.maxParked) return this.refuse('unknown-epoch');
      q.park.run(device, epoch, Buffer.from(bytes), now);
      return { status: 'parked' };
    }
    // §5.6 grace: a later epoch's first authentic envelope starts the old epoch's clock.
    const later = q.laterEpochStart.get(device, epoch) as { t: number | null };
    if (later.t !== null && now > later.t + this.cfg.oldEpochGraceMs) return this.refuseAuthentic(device, 'old-epoch', now);
    const seqs = seqStateFromJson(row.seq_state);
    const verdict = classifySeq(seqs, env.seq, this.cfg.seqWindow);
    if (verdict === 'replay' || verdict === 'too-old') {
      q.countReplay.run(device, epoch);
      return this.refuse(verdict);
    }
    const t = typeof values.t === 'bigint' ? Number(values.t) : (values.t as number);
    const skewed = Math.abs(t - now / 1000) > this.cfg.maxClockSkewSeconds;
    q.insertReading.run(device, epoch, pad(env.seq), JSON.stringify(cborToJson(values)), Number.isSafeInteger(t) ? t : null, skewed ? 1 : 0, now);
    q.recordSeq.run(seqStateToJson(applySeq(seqs, env.seq, this.cfg.seqWindow)), now, now, device, epoch);
    this.tally(() => {
      this.metrics.readingsAccepted.inc();
      if (verdict === 'fill') this.metrics.gapsFilled.inc();
      if (skewed) this.metrics.clockSkew.inc();
    });
    return { status: 'accepted', device, epoch: env.epoch, seq: env.seq, filled: verdict === 'fill' };
  }

  /** Re-judges parked envelopes whose epoch is no longer waiting for our acceptance, in one transaction. */
  retryParked(now = Date.now()): void {
    const q = this.store.stmt;
    this.atomically(() => {
      for (const r of q.parkedSettled.all() as { id: number; envelope: Buffer }[]) {
        this.judge(new Uint8Array(r.envelope), now, false);
        q.unpark.run(r.id);
      }
    });
  }

  /**
   * Pulls the envelopes the relay has after the persisted cursor, at most `maxPagesPerPass` pages (the rest next
   * pass), each page read with a byte cap (`maxPageBytes`). Returns how many were judged.
   * Each page is judged and the cursor moved past it in ONE transaction (one fsync, synchronous=FULL): a crash
   * leaves either the whole page stored with the cursor after it, or none of it with the cursor before it, so no
   * envelope is judged twice or skipped.
   */
  async pull(relayUrl: string, limit = 100, fetchFn: typeof fetch = fetch): Promise<number> {
    this.retryParked();
    let total = 0;
    const cap = this.cfg.maxPageBytes ?? pageByteCap(limit);
    for (let page = 0; page < this.cfg.maxPagesPerPass; page++) {
      const after = this.store.getMeta('relay_cursor');
      const url = new URL('/v1/readings', relayUrl);
      if (after !== undefined) url.searchParams.set('after', after);
      url.searchParams.set('limit', String(limit));
      const res = await fetchFn(url, { signal: AbortSignal.timeout(15_000) });
      if (!res.ok) {
        await res.body?.cancel().catch(() => {});
        throw new Error(`relay answered ${res.status} to GET /v1/readings`);
      }
      let body: { envelopes?: unknown; next?: unknown };
      try {
        body = JSON.parse(await readCapped(res, cap, 'GET /v1/readings')) as typeof body;
      } catch (e) {
        if (e instanceof SyntaxError) throw new Error('relay: /v1/readings answer is not JSON');
        throw e;
      }
      if (body === null || typeof body !== 'object') throw new Error('relay: malformed /v1/readings answer');
      if (!Array.isArray(body.envelopes) || (body.next !== undefined && body.next !== null && typeof body.next !== 'string')) {
        throw new Error('relay: malformed /v1/readings answer');
      }
      const envelopes = body.envelopes as unknown[];
      const next = body.next as string | undefined | null;
      this.atomically(() => {
        for (const h of envelopes) {
          let bytes: Uint8Array | undefined;
          try {
            bytes = typeof h === 'string' && /^0x([0-9a-fA-F]{2})*$/.test(h) ? hexToBytes(h) : undefined;
          } catch {
            bytes = undefined;
          }
          if (bytes) this.judge(bytes, Date.now(), true);
          else this.refuse('malformed');
        }
        if (typeof next === 'string' && next !== after) this.store.setMeta('relay_cursor', next);
      });
      total += envelopes.length;
      if (envelopes.length === 0 || !next || next === after) return total;
    }
    return total; // more to come: the next pass goes on from the cursor
  }
}
