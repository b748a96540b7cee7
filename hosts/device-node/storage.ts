/**
 * File-backed Storage for device code on Node: one JSON file per device ({key: hex}),
 * rewritten atomically (temp file + rename) on every set/delete, so a killed process
 * leaves the old or the new state, as NVS does. The file holds the device's identity
 * key: it is created mode 0600 (an older, wider file is narrowed when opened), and each
 * rewrite is fsync'd (file, then its directory for the rename), so a power cut of the
 * host keeps the old or the new state too. Enforces the device's NVS limits
 * (STYLE.md §9): keys ≤ 15 characters, values ≤ 4000 B, and the 24 KiB partition
 * counted in NVS entries (MODDABLE.md §3, ESP-IDF NVS format).
 */
import { chmodSync, closeSync, existsSync, fchmodSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { IotkxError } from '../../lib/errors.js';
import type { Storage } from '../../lib/platform.js';

export const NVS_MAX_KEY_CHARS = 15;
export const NVS_MAX_VALUE_BYTES = 4000;
/** 24 KiB partition = 6 pages of 4 KiB; NVS keeps one free for its garbage collection; 126 entries of 32 B a page. */
export const NVS_ENTRIES = (6 - 1) * 126;
/** A blob costs its index entry, a chunk header entry and its data in 32-B entries (one chunk assumed). */
export const nvsEntries = (valueBytes: number) => 2 + Math.ceil(valueBytes / 32);
/** Owner read/write only: the file holds the device's secret key. */
export const FILE_MODE = 0o600;
/** Folders of device files: owner only. */
export const DIR_MODE = 0o700;

export class FileStorage implements Storage {
  readonly map = new Map<string, Uint8Array>();
  constructor(readonly path: string) {
    if (existsSync(path)) {
      chmodSync(path, FILE_MODE);
      const o = JSON.parse(readFileSync(path, 'utf8')) as Record<string, string>;
      for (const [k, v] of Object.entries(o)) this.map.set(k, new Uint8Array(Buffer.from(v, 'hex')));
    }
  }
  get(key: string): Uint8Array | undefined {
    const v = this.map.get(key);
    return v ? v.slice() : undefined;
  }
  set(key: string, value: Uint8Array): void {
    this.assertFits(key, value);
    this.map.set(key, value.slice());
    this.flush();
  }
  /** Refuse what NVS would refuse: key length, value size, a full partition. */
  protected assertFits(key: string, value: Uint8Array): void {
    if (typeof key !== 'string' || key.length === 0 || key.length > NVS_MAX_KEY_CHARS) throw new IotkxError('storage-key', `NVS: key "${key}" must be 1..${NVS_MAX_KEY_CHARS} characters`);
    if (!(value instanceof Uint8Array) || value.length > NVS_MAX_VALUE_BYTES) throw new IotkxError('storage-value', `NVS: value of ${key} over ${NVS_MAX_VALUE_BYTES} bytes`);
    const used = this.entriesUsed() - (this.map.has(key) ? nvsEntries(this.map.get(key)!.length) : 0) + nvsEntries(value.length);
    if (used > NVS_ENTRIES) throw new IotkxError('storage-full', `NVS: partition full (${used} of ${NVS_ENTRIES} entries)`);
  }
  delete(key: string): void {
    if (this.map.delete(key)) this.flush();
  }
  entriesUsed(): number {
    let n = 0;
    for (const v of this.map.values()) n += nvsEntries(v.length);
    return n;
  }
  protected flush(): void {
    const o: Record<string, string> = {};
    for (const [k, v] of this.map) o[k] = Buffer.from(v).toString('hex');
    const tmp = `${this.path}.tmp`;
    const fd = openSync(tmp, 'w', FILE_MODE);
    try {
      fchmodSync(fd, FILE_MODE); // a temp file left by a crash keeps its mode otherwise
      writeSync(fd, JSON.stringify(o));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
    const dir = openSync(dirname(this.path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  }
}
