/**
 * File-backed Storage for device code on Node: one JSON file per device ({key: hex}),
 * rewritten atomically (temp file + rename) on every set/delete, so a killed process
 * leaves the old or the new state, as NVS does. Enforces the device's NVS limits
 * (STYLE.md §9): keys ≤ 15 characters, values ≤ 4000 B, and the 24 KiB partition
 * counted in NVS entries (MODDABLE.md §3, ESP-IDF NVS format).
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { IotkxError } from '../../lib/errors.js';
import type { Storage } from '../../lib/platform.js';

export const NVS_MAX_KEY_CHARS = 15;
export const NVS_MAX_VALUE_BYTES = 4000;
/** 24 KiB partition = 6 pages of 4 KiB; NVS keeps one free for its garbage collection; 126 entries of 32 B a page. */
export const NVS_ENTRIES = (6 - 1) * 126;
/** A blob costs its index entry, a chunk header entry and its data in 32-B entries (one chunk assumed). */
export const nvsEntries = (valueBytes: number) => 2 + Math.ceil(valueBytes / 32);

export class FileStorage implements Storage {
  readonly map = new Map<string, Uint8Array>();
  constructor(readonly path: string) {
    if (existsSync(path)) {
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
    writeFileSync(tmp, JSON.stringify(o));
    renameSync(tmp, this.path);
  }
}
