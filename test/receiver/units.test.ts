// Unit tests of the receiver's pieces that need no chain: seq window, key file, encrypted store.
import '../helpers/node-random.js';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { privateKeyToAccount } from 'viem/accounts';
import { bytesToHex } from 'viem';
import { applySeq, classifySeq, emptySeqState, gapCount, seqStateFromJson, seqStateToJson, type SeqState } from '../../hosts/receiver/seqwindow.js';
import { initReceiverKeys, loadReceiverKeys, addEncryptionKey, eraseEncryptionKey } from '../../hosts/receiver/keys.js';
import { loadMasterKey, Store } from '../../hosts/receiver/store.js';

let dir: string;
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'iotkx-rcv-unit-')); });
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('seq window', () => {
  const feed = (seqs: bigint[], window = 16n) => {
    let s: SeqState = emptySeqState();
    const verdicts: string[] = [];
    for (const q of seqs) {
      const v = classifySeq(s, q, window);
      verdicts.push(v);
      if (v === 'advance' || v === 'fill') s = applySeq(s, q, window);
    }
    return { s, verdicts };
  };

  test('gaps, fills and replays', () => {
    const { s, verdicts } = feed([1n, 2n, 5n, 2n, 3n, 3n, 9n, 4n]);
    expect(verdicts).toEqual(['advance', 'advance', 'advance', 'replay', 'fill', 'replay', 'advance', 'fill']);
    expect(s.hwm).toBe(9n);
    expect(s.gaps).toEqual([[6n, 8n]]);
    expect(gapCount(s)).toBe(3n);
  });

  test('gaps leaving the window become lost; a seq there is too old; a 2^63 jump stays one interval', () => {
    const { s, verdicts } = feed([1n, 10n, 40n, 5n]);
    expect(verdicts).toEqual(['advance', 'advance', 'advance', 'too-old']);
    expect(s.gaps).toEqual([[25n, 39n]]); // floor = 40 − 16 = 24
    expect(s.lost).toBe(8n + 14n); // 2..9 and 11..24 left the window
    expect(gapCount(s)).toBe(8n + 14n + 15n);
    const big = feed([1n, 1n << 63n], 4096n).s;
    expect(gapCount(big)).toBe((1n << 63n) - 2n);
    expect(big.gaps).toHaveLength(1);
    expect(seqStateFromJson(seqStateToJson(big))).toEqual(big);
  });
});

describe('key file', () => {
  test('created 0600 with r != e; env overrides the account key and is never written to the file', () => {
    const path = join(dir, 'k', 'keys.json');
    const k = initReceiverKeys(path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(k.encKeys).toHaveLength(1);
    expect(bytesToHex(k.encKeys[0].secretKey)).not.toBe(bytesToHex(k.accountKey));
    // The address is the Ethereum address of r, per viem.
    expect(bytesToHex(k.address)).toBe(privateKeyToAccount(bytesToHex(k.accountKey)).address.toLowerCase());
    const envKey = bytesToHex(randomBytes(32));
    const withEnv = loadReceiverKeys({ path, env: { IOTKX_RECEIVER_KEY: envKey } });
    expect(bytesToHex(withEnv.accountKey)).toBe(envKey);
    withEnv.encKeys[0].version = 1;
    addEncryptionKey(withEnv);
    const text = readFileSync(path, 'utf8');
    expect(text).not.toContain(envKey.slice(2));
    expect(text).toContain(bytesToHex(k.accountKey).slice(2));
    const again = loadReceiverKeys({ path, env: {} });
    expect(again.encKeys.map((e) => e.version)).toEqual([1, null]);
    expect(eraseEncryptionKey(again, 1)).toBe(true);
    expect(loadReceiverKeys({ path, env: {} }).encKeys.map((e) => e.version)).toEqual([null]);
  });

  test('environment-only keys, versioned list; e equal to r is refused', () => {
    const r = bytesToHex(randomBytes(32));
    const e1 = bytesToHex(randomBytes(32));
    const e2 = bytesToHex(randomBytes(32));
    const k = loadReceiverKeys({ env: { IOTKX_RECEIVER_KEY: r, IOTKX_RECEIVER_ENC_KEY: `1:${e1},2:${e2}` } });
    expect(k.encKeys.map((x) => [x.version, x.fromEnv])).toEqual([[1, true], [2, true]]);
    expect(() => loadReceiverKeys({ env: { IOTKX_RECEIVER_KEY: r, IOTKX_RECEIVER_ENC_KEY: r } })).toThrow(/separate/);
    expect(() => loadReceiverKeys({ env: { IOTKX_RECEIVER_KEY: r } })).toThrow(/no receiver keys/);
    expect(() => loadReceiverKeys({ env: { IOTKX_RECEIVER_KEY: '0x12', IOTKX_RECEIVER_ENC_KEY: e1 } })).toThrow(/64 hex/);
  });
});

describe('store', () => {
  test('WAL + synchronous FULL; K sealed at rest and bound to its (device, epoch); wrong master key refused', () => {
    const path = join(dir, 's', 'r.db');
    const keyPath = join(dir, 's', 'db.key');
    const mk = loadMasterKey({ path: keyPath });
    expect(statSync(keyPath).mode & 0o777).toBe(0o600);
    const s = new Store(path, mk, 'bind-a');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(s.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(s.db.pragma('synchronous', { simple: true })).toBe(2); // FULL
    const K = new Uint8Array(randomBytes(32));
    const dev = bytesToHex(randomBytes(20));
    const sealed = s.sealK(dev, 7n, K);
    expect(Buffer.from(sealed).includes(Buffer.from(K))).toBe(false);
    expect(s.openK(dev, 7n, sealed)).toEqual(K);
    expect(() => s.openK(dev, 8n, sealed)).toThrow(/authentication/);
    s.close();
    expect(() => new Store(path, loadMasterKey({ hex: bytesToHex(randomBytes(32)) }), 'bind-a')).toThrow(/master key/);
    expect(() => new Store(path, mk, 'bind-b')).toThrow(/belongs to/);
    const again = new Store(path, loadMasterKey({ path: keyPath }), 'bind-a');
    expect(again.openK(dev, 7n, sealed)).toEqual(K);
    again.close();
  });

  test('a database made before epochs.signed_block gets the column, rows kept', () => {
    const path = join(dir, 'old', 'r.db');
    const mk = loadMasterKey({ hex: bytesToHex(randomBytes(32)) });
    const s = new Store(path, mk, 'bind-a');
    s.db.prepare(`INSERT INTO epochs (device, epoch, tx_hash, key_version, wrapped, commitment, state, created_ms, updated_ms)
      VALUES ('0x01', '1', '0x02', 1, '0x', '0x', 'accepted', 0, 0)`).run();
    s.db.exec('DROP INDEX IF EXISTS parked_device');
    s.db.exec('ALTER TABLE epochs DROP COLUMN signed_block'); // the schema before issue 15 item 6
    s.close();
    const again = new Store(path, mk, 'bind-a');
    const cols = (again.db.prepare('PRAGMA table_info(epochs)').all() as { name: string }[]).map((c) => c.name);
    expect(cols).toContain('signed_block');
    expect(again.db.prepare('SELECT state, signed_block FROM epochs').all()).toEqual([{ state: 'accepted', signed_block: null }]);
    again.close();
  });
});
