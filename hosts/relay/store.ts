/**
 * Durable envelope store (SQLite through better-sqlite3). WAL with synchronous=FULL:
 * a commit is fsync'd before `put` returns, so the relay's 202 means the envelope
 * survives a crash or power cut. The AUTOINCREMENT rowid is the cursor of
 * GET /v1/readings, so a cursor is never reused, also after rows are deleted.
 *
 * Retention (issue 15 item 5; defaults in config.ts DEFAULT_RETENTION): the store is
 * bounded by three rules, each 0 = off.
 * - Age: `prune()` (the relay runs it every minute) deletes envelopes received more
 *   than `maxAgeSec` ago: a receiver that has not pulled them by then never will.
 * - Per device: a device holding `maxPerDevice` envelopes gets no more stored
 *   ('device-full') until age frees room. New ones are refused rather than old ones
 *   evicted: an acknowledged envelope is never deleted before its age, and a refused
 *   one stays in the device's queue (it retries), so junk posted under a genuine
 *   device's address can delay its readings but never delete one.
 * - In all: beyond `maxRows` envelopes nothing more is stored ('store-full').
 * Counts per device and in all are kept by triggers (O(1) per put, no count(*) scan).
 * Deleted pages are reused by later inserts, and with auto_vacuum=INCREMENTAL (new
 * files) `prune()` gives them back to the file system, so the file stays bounded too.
 *
 * The store also keeps the relay's enrolment index (channel-check.ts): every device
 * with a DeviceEnrolled log on the contract, and the last block scanned.
 */
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { u64be } from '../../lib/bytes.js';

export type PutResult =
  | { kind: 'stored'; id: bigint }
  | { kind: 'duplicate'; id: bigint }
  | { kind: 'too-many-variants' }
  | { kind: 'device-full' }
  | { kind: 'store-full' };

export interface StoredEnvelope {
  id: bigint;
  body: Uint8Array;
}

export interface EnvelopeSlot {
  device: Uint8Array;
  epoch: bigint;
  seq: bigint;
}

export interface PutItem {
  body: Uint8Array;
  slot: EnvelopeSlot;
}

export interface RetentionOptions {
  /** Envelopes received longer ago than this are deleted by prune(); 0 keeps them forever. */
  maxAgeSec: number;
  /** Envelopes held per device; beyond it puts are refused ('device-full'); 0 = no cap. */
  maxPerDevice: number;
  /** Envelopes held in all; beyond it puts are refused ('store-full'); 0 = no cap. */
  maxRows: number;
}

/** Largest cursor: SQLite rowids are signed 64-bit. */
export const MAX_CURSOR = (1n << 63n) - 1n;

const NO_RETENTION: RetentionOptions = { maxAgeSec: 0, maxPerDevice: 0, maxRows: 0 };

export class EnvelopeStore {
  private readonly db: Database.Database;
  private readonly putTx: (items: readonly PutItem[], maxVariants: number) => PutResult[];
  private readonly pageStmt: Database.Statement;
  private readonly totalStmt: Database.Statement;
  private readonly retention: RetentionOptions;
  private readonly now: () => number;

  constructor(path: string, retention: Partial<RetentionOptions> = {}, now: () => number = Date.now) {
    this.retention = { ...NO_RETENTION, ...retention };
    this.now = now;
    this.db = new Database(path);
    // Only takes effect on a new file (before the first table); older files reuse freed pages instead.
    this.db.pragma('auto_vacuum = INCREMENTAL');
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.defaultSafeIntegers(true);
    const hadCounts = this.db.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'device_counts'").pluck().get() as bigint;
    // device: 20 bytes; epoch, seq: u64be (8 bytes) so the full uint64 range fits and sorts.
    // digest: SHA-256 of the body, for byte-identical dedupe.
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS envelopes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        digest BLOB NOT NULL UNIQUE,
        device BLOB NOT NULL,
        epoch BLOB NOT NULL,
        seq BLOB NOT NULL,
        body BLOB NOT NULL,
        received_at INTEGER NOT NULL
      );
      CREATE INDEX IF NOT EXISTS envelopes_slot ON envelopes(device, epoch, seq);
      CREATE INDEX IF NOT EXISTS envelopes_age ON envelopes(received_at);
      CREATE TABLE IF NOT EXISTS device_counts (device BLOB PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS total_count (id INTEGER PRIMARY KEY CHECK (id = 0), n INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS enrolled (device BLOB PRIMARY KEY) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS relay_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
    `);
    this.db.transaction(() => {
      if (hadCounts === 0n) {
        // A file from before the counts: count what it holds once.
        this.db.exec('INSERT INTO device_counts (device, n) SELECT device, count(*) FROM envelopes GROUP BY device');
        this.db.exec('INSERT OR REPLACE INTO total_count (id, n) SELECT 0, count(*) FROM envelopes');
      }
      this.db.exec(`
        CREATE TRIGGER IF NOT EXISTS envelopes_counted AFTER INSERT ON envelopes BEGIN
          INSERT INTO device_counts (device, n) VALUES (NEW.device, 1) ON CONFLICT(device) DO UPDATE SET n = n + 1;
          UPDATE total_count SET n = n + 1 WHERE id = 0;
        END;
        CREATE TRIGGER IF NOT EXISTS envelopes_uncounted AFTER DELETE ON envelopes BEGIN
          UPDATE device_counts SET n = n - 1 WHERE device = OLD.device;
          DELETE FROM device_counts WHERE device = OLD.device AND n <= 0;
          UPDATE total_count SET n = n - 1 WHERE id = 0;
        END;
      `);
    })();
    const byDigest = this.db.prepare('SELECT id FROM envelopes WHERE digest = ?').pluck();
    const variants = this.db.prepare('SELECT count(*) FROM envelopes WHERE device = ? AND epoch = ? AND seq = ?').pluck();
    const perDevice = this.db.prepare('SELECT n FROM device_counts WHERE device = ?').pluck();
    this.totalStmt = this.db.prepare('SELECT n FROM total_count WHERE id = 0').pluck();
    const insert = this.db.prepare(
      'INSERT INTO envelopes (digest, device, epoch, seq, body, received_at) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.pageStmt = this.db.prepare('SELECT id, body FROM envelopes WHERE id > ? ORDER BY id LIMIT ?');
    const { maxPerDevice, maxRows } = this.retention;
    // One envelope, inside the caller's transaction: it sees every row the transaction inserted before it.
    const one = (body: Uint8Array, slot: EnvelopeSlot, maxVariants: number): PutResult => {
      const digest = createHash('sha256').update(body).digest();
      const seen = byDigest.get(digest) as bigint | undefined;
      if (seen !== undefined) return { kind: 'duplicate', id: seen };
      const key = [Buffer.from(slot.device), Buffer.from(u64be(slot.epoch)), Buffer.from(u64be(slot.seq))];
      if ((variants.get(...key) as bigint) >= BigInt(maxVariants)) return { kind: 'too-many-variants' };
      if (maxPerDevice > 0 && ((perDevice.get(key[0]) as bigint | undefined) ?? 0n) >= BigInt(maxPerDevice)) return { kind: 'device-full' };
      if (maxRows > 0 && (this.totalStmt.get() as bigint) >= BigInt(maxRows)) return { kind: 'store-full' };
      const info = insert.run(digest, ...key, Buffer.from(body), BigInt(this.now()));
      return { kind: 'stored', id: BigInt(info.lastInsertRowid) };
    };
    const tx = this.db.transaction((items: readonly PutItem[], maxVariants: number): PutResult[] =>
      items.map((it) => one(it.body, it.slot, maxVariants)));
    // IMMEDIATE: take the write lock up front, so two processes sharing a file cannot interleave check and insert.
    this.putTx = (items, maxVariants) => tx.immediate(items, maxVariants);
  }

  /** Store `body` unless a byte-identical one is held, its slot already has `maxVariants` bodies, or a cap is reached. */
  put(body: Uint8Array, slot: EnvelopeSlot, maxVariants: number): PutResult {
    return this.putTx([{ body, slot }], maxVariants)[0];
  }

  /**
   * Group commit (group-commit.ts): the envelopes in one fsync'd transaction, each judged
   * as if put one after another in the given order (so the second of two identical bodies
   * is a duplicate of the first, and variants count the ones before it). Either all the
   * stored ones are durable when this returns, or it throws and none is stored.
   */
  putBatch(items: readonly PutItem[], maxVariants: number): PutResult[] {
    if (items.length === 0) return [];
    return this.putTx(items, maxVariants);
  }

  /** Envelopes with id > `after`, in stored order. */
  page(after: bigint, limit: number): StoredEnvelope[] {
    const rows = this.pageStmt.all(after, BigInt(limit)) as Array<{ id: bigint; body: Buffer }>;
    return rows.map((r) => ({ id: r.id, body: new Uint8Array(r.body) }));
  }

  /** How many envelopes are held (for the queue-depth gauge). */
  count(): number {
    return Number(this.totalStmt.get() as bigint);
  }

  /** Envelopes held for one device. */
  countFor(device: Uint8Array): number {
    return Number((this.db.prepare('SELECT n FROM device_counts WHERE device = ?').pluck().get(Buffer.from(device)) as bigint | undefined) ?? 0n);
  }

  /** Delete envelopes older than maxAgeSec (in batches, so a writer never waits long); returns how many. */
  prune(): number {
    if (this.retention.maxAgeSec <= 0) return 0;
    const cutoff = BigInt(this.now() - this.retention.maxAgeSec * 1000);
    const del = this.db.prepare('DELETE FROM envelopes WHERE id IN (SELECT id FROM envelopes WHERE received_at < ? ORDER BY received_at LIMIT 5000)');
    let total = 0;
    for (;;) {
      const n = del.run(cutoff).changes;
      total += n;
      if (n < 5000) break;
    }
    if (total > 0) this.db.pragma('incremental_vacuum');
    return total;
  }

  /** Bytes of the database file (pages × page size), for the tests and the gauge. */
  fileBytes(): number {
    const pages = this.db.pragma('page_count', { simple: true }) as bigint;
    const size = this.db.pragma('page_size', { simple: true }) as bigint;
    return Number(pages * size);
  }

  /* ---------- enrolment index (channel-check.ts) ---------- */

  /** The devices seen enrolled and the last block scanned, for `contract` (another contract's index is dropped). */
  loadEnrolled(contract: string): { devices: Uint8Array[]; scanned: bigint | undefined } {
    const meta = this.db.prepare("SELECT v FROM relay_meta WHERE k = 'enrolled'").pluck().get() as string | undefined;
    const m = meta ? (JSON.parse(meta) as { contract: string; scanned: string }) : undefined;
    if (!m || m.contract !== contract) {
      this.db.transaction(() => {
        this.db.exec('DELETE FROM enrolled');
        this.db.prepare("DELETE FROM relay_meta WHERE k = 'enrolled'").run();
      })();
      return { devices: [], scanned: undefined };
    }
    const rows = this.db.prepare('SELECT device FROM enrolled').pluck().all() as Buffer[];
    return { devices: rows.map((b) => new Uint8Array(b)), scanned: BigInt(m.scanned) };
  }

  /** Record newly seen devices and the block scanned up to, in one transaction. */
  addEnrolled(contract: string, devices: Uint8Array[], scanned: bigint): void {
    const ins = this.db.prepare('INSERT OR IGNORE INTO enrolled (device) VALUES (?)');
    const meta = this.db.prepare("INSERT INTO relay_meta (k, v) VALUES ('enrolled', ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v");
    this.db.transaction(() => {
      for (const d of devices) ins.run(Buffer.from(d));
      meta.run(JSON.stringify({ contract, scanned: scanned.toString() }));
    })();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
