/**
 * Durable envelope store (SQLite through better-sqlite3). WAL with synchronous=FULL:
 * a commit is fsync'd before `put` returns, so the relay's 202 means the envelope
 * survives a crash or power cut. Rows are never deleted; the AUTOINCREMENT rowid is the
 * cursor of GET /v1/readings, so a cursor is never reused.
 */
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { u64be } from '../../lib/bytes.js';

export type PutResult =
  | { kind: 'stored'; id: bigint }
  | { kind: 'duplicate'; id: bigint }
  | { kind: 'too-many-variants' };

export interface StoredEnvelope {
  id: bigint;
  body: Uint8Array;
}

export interface EnvelopeSlot {
  device: Uint8Array;
  epoch: bigint;
  seq: bigint;
}

/** Largest cursor: SQLite rowids are signed 64-bit. */
export const MAX_CURSOR = (1n << 63n) - 1n;

export class EnvelopeStore {
  private readonly db: Database.Database;
  private readonly putTx: (body: Uint8Array, slot: EnvelopeSlot, maxVariants: number) => PutResult;
  private readonly pageStmt: Database.Statement;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.defaultSafeIntegers(true);
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
    `);
    const byDigest = this.db.prepare('SELECT id FROM envelopes WHERE digest = ?').pluck();
    const variants = this.db.prepare('SELECT count(*) FROM envelopes WHERE device = ? AND epoch = ? AND seq = ?').pluck();
    const insert = this.db.prepare(
      'INSERT INTO envelopes (digest, device, epoch, seq, body, received_at) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.pageStmt = this.db.prepare('SELECT id, body FROM envelopes WHERE id > ? ORDER BY id LIMIT ?');
    const tx = this.db.transaction((body: Uint8Array, slot: EnvelopeSlot, maxVariants: number): PutResult => {
      const digest = createHash('sha256').update(body).digest();
      const seen = byDigest.get(digest) as bigint | undefined;
      if (seen !== undefined) return { kind: 'duplicate', id: seen };
      const key = [Buffer.from(slot.device), Buffer.from(u64be(slot.epoch)), Buffer.from(u64be(slot.seq))];
      if ((variants.get(...key) as bigint) >= BigInt(maxVariants)) return { kind: 'too-many-variants' };
      const info = insert.run(digest, ...key, Buffer.from(body), BigInt(Date.now()));
      return { kind: 'stored', id: BigInt(info.lastInsertRowid) };
    });
    // IMMEDIATE: take the write lock up front, so two processes sharing a file cannot interleave check and insert.
    this.putTx = (body, slot, maxVariants) => tx.immediate(body, slot, maxVariants);
  }

  /** Store `body` unless a byte-identical one is held or its slot already has `maxVariants` bodies. */
  put(body: Uint8Array, slot: EnvelopeSlot, maxVariants: number): PutResult {
    return this.putTx(body, slot, maxVariants);
  }

  /** Envelopes with id > `after`, in stored order. */
  page(after: bigint, limit: number): StoredEnvelope[] {
    const rows = this.pageStmt.all(after, BigInt(limit)) as Array<{ id: bigint; body: Buffer }>;
    return rows.map((r) => ({ id: r.id, body: new Uint8Array(r.body) }));
  }

  /** How many envelopes are held (for the queue-depth gauge). */
  count(): number {
    return Number(this.db.prepare('SELECT count(*) FROM envelopes').pluck().get() as bigint);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

