/**
 * A simulated device's NVS partition: one file per device, with the semantics of
 * Moddable's `preference` on the ESP32 (MODDABLE.md §3): keys ≤ 15 characters,
 * values ≤ 4000 B, a 24 KiB partition counted in 32-B NVS entries, and a `set`
 * that ERASES the key before it writes. Each of those steps is durable on its own
 * (one atomic file rewrite, as an NVS entry write is atomic), and a hook sees every
 * step, so a power-cut harness can kill the device right between erase and write.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { IotkxError } from '../../lib/errors.js';
import type { Storage } from '../../lib/platform.js';
import { NVS_ENTRIES, NVS_MAX_KEY_CHARS, NVS_MAX_VALUE_BYTES, nvsEntries } from '../device-node/storage.js';

export type NvsStep = 'erased' | 'written' | 'deleted';
/** Called after each durable step; throwing from it stops the operation there (a power cut). */
export type NvsHook = (key: string, step: NvsStep) => void;

export class SimNvs implements Storage {
  readonly map = new Map<string, Uint8Array>();
  /** Highest partition use seen, in NVS entries. */
  peakEntries = 0;
  hook: NvsHook | undefined;

  constructor(readonly path: string) {
    if (existsSync(path)) {
      const o = JSON.parse(readFileSync(path, 'utf8')) as Record<string, string>;
      for (const [k, v] of Object.entries(o)) this.map.set(k, new Uint8Array(Buffer.from(v, 'hex')));
    }
    this.peakEntries = this.entriesUsed();
  }

  get(key: string): Uint8Array | undefined {
    return this.map.get(key)?.slice();
  }

  set(key: string, value: Uint8Array): void {
    if (typeof key !== 'string' || key.length === 0 || key.length > NVS_MAX_KEY_CHARS) throw new IotkxError('storage-key', `NVS: key "${key}" must be 1..${NVS_MAX_KEY_CHARS} characters`);
    if (!(value instanceof Uint8Array) || value.length > NVS_MAX_VALUE_BYTES) throw new IotkxError('storage-value', `NVS: value of ${key} over ${NVS_MAX_VALUE_BYTES} bytes`);
    const used = this.entriesUsed() - (this.map.has(key) ? nvsEntries(this.map.get(key)!.length) : 0) + nvsEntries(value.length);
    if (used > NVS_ENTRIES) throw new IotkxError('storage-full', `NVS: partition full (${used} of ${NVS_ENTRIES} entries)`);
    // modPreference.c: nvs_erase_key, then nvs_set_blob.
    if (this.map.delete(key)) this.flush();
    this.hook?.(key, 'erased');
    this.map.set(key, value.slice());
    this.flush();
    this.peakEntries = Math.max(this.peakEntries, this.entriesUsed());
    this.hook?.(key, 'written');
  }

  delete(key: string): void {
    if (this.map.delete(key)) this.flush();
    this.hook?.(key, 'deleted');
  }

  entriesUsed(): number {
    let n = 0;
    for (const v of this.map.values()) n += nvsEntries(v.length);
    return n;
  }

  /** Flip one bit of a stored value (tests of corrupt storage). */
  corrupt(key: string, byte = 5): void {
    const v = this.map.get(key);
    if (!v) throw new Error(`no ${key} to corrupt`);
    v[Math.min(byte, v.length - 1)] ^= 1;
    this.flush();
  }

  private flush(): void {
    const o: Record<string, string> = {};
    for (const [k, v] of this.map) o[k] = Buffer.from(v).toString('hex');
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, JSON.stringify(o));
    renameSync(tmp, this.path);
  }
}
