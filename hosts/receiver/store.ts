// Receiver state in SQLite (better-sqlite3 12): WAL with synchronous=FULL so a committed row survives a power
// cut before the receiver acts on it (§5.4 "persist (D, epoch, K), then ... acceptKey").
// uint64 values (epoch, seq) are stored as 20-digit zero-padded decimal TEXT: SQLite integers are signed
// 64-bit, and padded text sorts in numeric order. Every K at rest is sealed with XChaCha20-Poly1305 under a
// 32-byte master key, its AAD binding the row's (device, epoch) so rows cannot be swapped.
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { aeadOpen, aeadSeal, AEAD_NONCE_BYTES } from '../../lib/aead.js';
import { ascii, concatBytes, hexToBytes, toHex, u64be } from '../../lib/bytes.js';
import { writeSecretFile } from './keys.js';

export type Db = Database.Database;

/** AAD label of a sealed K row (this host's own format, not part of iotkx/1 on the wire). */
const K_ROW_LABEL = ascii('iotkx-receiver/K/v1');

export const pad = (x: bigint): string => x.toString().padStart(20, '0');
export const unpad = (s: string): bigint => BigInt(s);

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
-- every device ever enrolled to this receiver (from DeviceEnrolled/DeviceRevoked), or that offered to it
CREATE TABLE IF NOT EXISTS devices (
  device TEXT PRIMARY KEY,               -- lowercase 0x hex
  status TEXT NOT NULL,                  -- enrolled | revoked | unknown
  status_pos TEXT NOT NULL DEFAULT '',   -- position (block, log index) of the event that set status
  revoked_block INTEGER,                 -- last DeviceRevoked: only epochs accepted after it are valid (§5.6)
  first_seen_ms INTEGER NOT NULL
);
-- ReceiverKeySet events: which E each version published
CREATE TABLE IF NOT EXISTS key_versions (version INTEGER PRIMARY KEY, enc_key TEXT NOT NULL);
-- KeyOffered logs seen (idempotence by (device, epoch, tx hash) across re-scans)
CREATE TABLE IF NOT EXISTS offer_logs (
  device TEXT NOT NULL, epoch TEXT NOT NULL, tx_hash TEXT NOT NULL,
  block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, key_version INTEGER NOT NULL,
  wrapped TEXT NOT NULL, commitment TEXT NOT NULL, note TEXT,
  PRIMARY KEY (device, epoch, tx_hash)
);
-- one row per (device, epoch): the offer state machine, the sealed K, and seq tracking of its readings
CREATE TABLE IF NOT EXISTS epochs (
  device TEXT NOT NULL, epoch TEXT NOT NULL,
  tx_hash TEXT NOT NULL, key_version INTEGER NOT NULL, wrapped TEXT NOT NULL, commitment TEXT NOT NULL,
  state TEXT NOT NULL,      -- seen | keyStored | acceptSent | accepted | rejectPending | rejectSent | rejected | expired | superseded
  reason INTEGER,           -- reject reason (1, 2, 3) when rejecting
  action_tx TEXT, action_raw TEXT, action_nonce INTEGER, action_ms INTEGER, attempts INTEGER NOT NULL DEFAULT 0,
  k_enc BLOB,               -- nonce(24) || XChaCha20-Poly1305(K) under the master key
  accepted_block INTEGER,
  signed_block INTEGER,     -- head when we signed an acceptance: from then on the epoch counts as accepted for readings (§5.6)
  seq_state TEXT, readings INTEGER NOT NULL DEFAULT 0, replays INTEGER NOT NULL DEFAULT 0,
  first_env_ms INTEGER,
  created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
  PRIMARY KEY (device, epoch)
);
CREATE TABLE IF NOT EXISTS readings (
  device TEXT NOT NULL, epoch TEXT NOT NULL, seq TEXT NOT NULL,
  values_json TEXT NOT NULL, t INTEGER, skewed INTEGER NOT NULL DEFAULT 0, received_ms INTEGER NOT NULL,
  PRIMARY KEY (device, epoch, seq)
);
-- authentic-looking envelopes for an epoch whose acceptance is not confirmed yet, retried later
CREATE TABLE IF NOT EXISTS parked (
  id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, epoch TEXT NOT NULL,
  envelope BLOB NOT NULL UNIQUE, parked_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS parked_device ON parked (device);
-- authentic envelopes refused, by device and reason (revoked, old-epoch, non-finite, bad-reading): what the
-- dashboard shows a provider. Only envelopes that authenticated are counted, so a stranger posting junk under
-- a device's address moves nothing here (PROTOCOL.md §7).
CREATE TABLE IF NOT EXISTS refused (
  device TEXT NOT NULL, reason TEXT NOT NULL, n INTEGER NOT NULL, last_ms INTEGER NOT NULL,
  PRIMARY KEY (device, reason)
);
`;

/** Columns added after the first schema: ALTER TABLE for a database made before them. */
const ADDED_COLUMNS: { table: string; column: string; decl: string }[] = [
  { table: 'epochs', column: 'signed_block', decl: 'INTEGER' },
];

/** The 32-byte master key: `hex` if given (IOTKX_RECEIVER_DB_KEY), else the key file (created 0600 if absent). */
export function loadMasterKey(opts: { hex?: string; path?: string }): Uint8Array {
  if (opts.hex) {
    if (!/^(0x)?[0-9a-fA-F]{64}$/.test(opts.hex)) throw new Error('IOTKX_RECEIVER_DB_KEY: expected 64 hex digits');
    return hexToBytes(opts.hex);
  }
  if (!opts.path) throw new Error('no database master key: set IOTKX_RECEIVER_DB_KEY or give a key file path');
  if (!existsSync(opts.path)) writeSecretFile(opts.path, toHex(new Uint8Array(randomBytes(32))) + '\n');
  const text = readFileSync(opts.path, 'utf8').trim();
  if (!/^(0x)?[0-9a-fA-F]{64}$/.test(text)) throw new Error(`${opts.path}: expected 64 hex digits`);
  return hexToBytes(text);
}

/**
 * The statements of the per-envelope path (meta cursor, ingest), compiled once per database:
 * `db.prepare` re-parses its SQL on every call, and five of them per envelope cost more than the decryption.
 */
function prepareStatements(db: Db) {
  return {
    getMeta: db.prepare('SELECT v FROM meta WHERE k = ?'),
    setMeta: db.prepare('INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v'),
    device: db.prepare('SELECT status, revoked_block FROM devices WHERE device = ?'),
    epoch: db.prepare('SELECT state, k_enc, seq_state, accepted_block, signed_block FROM epochs WHERE device = ? AND epoch = ?'),
    laterEpochStart: db.prepare('SELECT MIN(first_env_ms) AS t FROM epochs WHERE device = ? AND epoch > ? AND first_env_ms IS NOT NULL'),
    countReplay: db.prepare('UPDATE epochs SET replays = replays + 1 WHERE device = ? AND epoch = ?'),
    countRefused: db.prepare(`INSERT INTO refused (device, reason, n, last_ms) VALUES (?, ?, 1, ?)
      ON CONFLICT (device, reason) DO UPDATE SET n = n + 1, last_ms = excluded.last_ms`),
    insertReading: db.prepare('INSERT INTO readings (device, epoch, seq, values_json, t, skewed, received_ms) VALUES (?, ?, ?, ?, ?, ?, ?)'),
    recordSeq: db.prepare(`UPDATE epochs SET seq_state = ?, readings = readings + 1, first_env_ms = COALESCE(first_env_ms, ?), updated_ms = ?
      WHERE device = ? AND epoch = ?`),
    parkedCount: db.prepare('SELECT COUNT(*) AS n FROM parked WHERE device = ?'),
    park: db.prepare('INSERT OR IGNORE INTO parked (device, epoch, envelope, parked_ms) VALUES (?, ?, ?, ?)'),
    // Parked envelopes whose epoch no longer waits: settled, or its acceptance signed (then it counts as accepted).
    parkedSettled: db.prepare(`SELECT p.id, p.envelope FROM parked p LEFT JOIN epochs e ON e.device = p.device AND e.epoch = p.epoch
      WHERE e.state IS NULL OR e.state NOT IN ('keyStored', 'acceptSent') OR e.signed_block IS NOT NULL ORDER BY p.id`),
    unpark: db.prepare('DELETE FROM parked WHERE id = ?'),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;

export class Store {
  readonly db: Db;
  /** Prepared once at construction (prepareStatements). */
  readonly stmt: Statements;
  private readonly masterKey: Uint8Array;
  private readonly txn: (fn: () => unknown) => unknown;

  constructor(path: string, masterKey: Uint8Array, binding: string) {
    if (masterKey.length !== 32) throw new Error('database master key must be 32 bytes');
    if (path !== ':memory:') {
      mkdirSync(dirname(path), { recursive: true });
      // Readings are stored decrypted: the file (and the -wal/-shm SQLite derives from it) is owner-only.
      if (!existsSync(path)) closeSync(openSync(path, 'a', 0o600));
    }
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.db.exec(SCHEMA);
    for (const c of ADDED_COLUMNS) {
      const cols = this.db.prepare(`PRAGMA table_info(${c.table})`).all() as { name: string }[];
      if (!cols.some((x) => x.name === c.column)) this.db.exec(`ALTER TABLE ${c.table} ADD COLUMN ${c.column} ${c.decl}`);
    }
    this.stmt = prepareStatements(this.db);
    this.txn = this.db.transaction((fn: () => unknown) => fn());
    this.masterKey = masterKey;
    // One database serves one (chain, contract, receiver): refuse to mix state from another.
    const prev = this.getMeta('binding');
    if (prev === undefined) this.setMeta('binding', binding);
    else if (prev !== binding) throw new Error(`database belongs to ${prev}, not ${binding}`);
    // A wrong master key must fail at start, not at the first reading.
    const probe = this.getMeta('key_probe');
    if (probe === undefined) this.setMeta('key_probe', toHex(this.seal(new Uint8Array(32), K_ROW_LABEL)));
    else {
      try {
        this.open(hexToBytes(probe), K_ROW_LABEL);
      } catch {
        throw new Error('database master key does not match this database');
      }
    }
  }

  getMeta(k: string): string | undefined {
    const row = this.stmt.getMeta.get(k) as { v: string } | undefined;
    return row?.v;
  }

  setMeta(k: string, v: string): void {
    this.stmt.setMeta.run(k, v);
  }

  /**
   * Runs `fn` in one transaction: one fsync'd commit (synchronous=FULL) for all it writes, all of it rolled
   * back if it throws. Inside another transaction it becomes a savepoint (better-sqlite3).
   */
  transaction<T>(fn: () => T): T {
    return this.txn(fn) as T;
  }

  private seal(plain: Uint8Array, aad: Uint8Array): Uint8Array {
    const nonce = new Uint8Array(randomBytes(AEAD_NONCE_BYTES));
    return concatBytes(nonce, aeadSeal(this.masterKey, nonce, plain, aad));
  }

  private open(sealed: Uint8Array, aad: Uint8Array): Uint8Array {
    return aeadOpen(this.masterKey, sealed.subarray(0, AEAD_NONCE_BYTES), sealed.subarray(AEAD_NONCE_BYTES), aad);
  }

  private kAad(device: string, epoch: bigint): Uint8Array {
    return concatBytes(K_ROW_LABEL, hexToBytes(device), u64be(epoch));
  }

  sealK(device: string, epoch: bigint, K: Uint8Array): Buffer {
    return Buffer.from(this.seal(K, this.kAad(device, epoch)));
  }

  openK(device: string, epoch: bigint, sealed: Uint8Array): Uint8Array {
    return this.open(new Uint8Array(sealed), this.kAad(device, epoch));
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
