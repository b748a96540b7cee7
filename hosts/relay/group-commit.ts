/**
 * Group commit for POST /v1/readings (issue 14; docs/DECISIONS.md "Group commit on the
 * relay"). Each POST hands its envelope to `put` and waits; the envelopes that are waiting
 * go to SQLite together as one IMMEDIATE transaction with one fsync (store.putBatch), and
 * every waiter is answered only after that commit returned, so a 202 still means durable
 * (§9). A batch is committed when it holds `maxBatch` envelopes, or `maxWaitMs` after its
 * first one arrived, whichever comes first. The wait is adaptive: it applies only while the
 * relay is under concurrent load (the previous batch held more than one envelope); a POST
 * that came alone after a batch of one is committed at the end of the current event-loop
 * turn (setImmediate), so a lone device never waits for a timer. `maxWaitMs` 0 always commits
 * at the end of the turn (which still gathers every POST that arrived while the previous
 * commit was fsync'ing: better-sqlite3 commits synchronously). `maxBatch` 1 is one commit per
 * POST, as before.
 *
 * Inside a batch the envelopes are judged in arrival order, exactly as if they had been
 * put one after another: two identical bodies give `stored` then `duplicate`, and the 5th
 * distinct variant of a slot is `too-many-variants` even when the other four are in the
 * same batch. If the commit fails (disk full, I/O error, lock timeout) the whole
 * transaction is rolled back and every waiter of the batch gets the error: nothing of it
 * is stored, nobody got a 2xx, and the devices keep their envelopes and retry.
 */
import type { EnvelopeSlot, EnvelopeStore, PutResult } from './store.js';

export interface GroupCommitOptions {
  /** Envelopes per transaction at most; a full batch commits at once. 1 = one commit per POST. */
  maxBatch: number;
  /** Under load (previous batch > 1), the longest a waiting envelope waits for others before its batch commits, ms; 0 = end of this event-loop turn. */
  maxWaitMs: number;
}

export const DEFAULT_GROUP_COMMIT: GroupCommitOptions = Object.freeze({ maxBatch: 512, maxWaitMs: 2 });

interface Waiter {
  body: Uint8Array;
  slot: EnvelopeSlot;
  resolve: (r: PutResult) => void;
  reject: (e: unknown) => void;
}

/** The store was closed while (or before) the envelope waited: it was not stored. */
export class StoreClosed extends Error {
  constructor() {
    super('the envelope store is closed');
  }
}

export class GroupCommit {
  private queue: Waiter[] = [];
  private timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  private closed = false;
  /** Envelopes in the last batch committed (or failed): more than one means concurrent POSTs. Until a first batch, load is assumed. */
  private lastBatch = 2;
  private readonly opts: GroupCommitOptions;
  /** Commits done and envelopes in them, for the metrics and the tests. */
  commits = 0;
  committed = 0;

  constructor(
    private readonly store: EnvelopeStore,
    private readonly maxVariants: number,
    opts: Partial<GroupCommitOptions> = {},
    private readonly onCommit: (envelopes: number, ok: boolean) => void = () => {},
  ) {
    this.opts = { ...DEFAULT_GROUP_COMMIT, ...opts };
    if (!Number.isInteger(this.opts.maxBatch) || this.opts.maxBatch < 1) throw new RangeError('maxBatch must be an integer ≥ 1');
    if (!Number.isFinite(this.opts.maxWaitMs) || this.opts.maxWaitMs < 0) throw new RangeError('maxWaitMs must be ≥ 0');
  }

  /** Envelopes waiting for their commit now. */
  get waiting(): number {
    return this.queue.length;
  }

  /** Resolves once the envelope's batch is committed (fsync'd), with its own result; rejects if that commit failed. */
  put(body: Uint8Array, slot: EnvelopeSlot): Promise<PutResult> {
    if (this.closed) return Promise.reject(new StoreClosed());
    return new Promise<PutResult>((resolve, reject) => {
      this.queue.push({ body, slot, resolve, reject });
      if (this.queue.length >= this.opts.maxBatch) this.flush();
      else if (this.timer === undefined) {
        const wait = this.lastBatch > 1 ? this.opts.maxWaitMs : 0;
        this.timer = wait > 0 ? setTimeout(() => this.flush(), wait) : setImmediate(() => this.flush());
      }
    });
  }

  /** Commit what is waiting now (no-op when nothing is). */
  flush(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer as NodeJS.Timeout);
      clearImmediate(this.timer as NodeJS.Immediate);
      this.timer = undefined;
    }
    const batch = this.queue;
    if (batch.length === 0) return;
    this.queue = [];
    this.lastBatch = batch.length;
    let results: PutResult[];
    try {
      results = this.store.putBatch(batch, this.maxVariants);
    } catch (e) {
      this.onCommit(batch.length, false);
      for (const w of batch) w.reject(e);
      return;
    }
    this.commits++;
    this.committed += batch.length;
    this.onCommit(batch.length, true);
    for (let i = 0; i < batch.length; i++) batch[i].resolve(results[i]);
  }

  /** Commit what is waiting, then refuse further puts (before the store is closed). */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
  }
}
