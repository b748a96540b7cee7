/**
 * A simulated device's NVS partition: one file per device, with the semantics of
 * Moddable's `preference` on the ESP32 (MODDABLE.md §3): keys ≤ 15 characters,
 * values ≤ 4000 B, a 24 KiB partition counted in 32-B NVS entries, and a `set`
 * that ERASES the key before it writes. Each of those steps is durable on its own
 * (one atomic file rewrite, as an NVS entry write is atomic), and a hook sees every
 * step, so a power-cut harness can kill the device right between erase and write.
 * The file holds the simulated device's identity key: mode 0600, fsync'd at every
 * step (FileStorage).
 */
import { FileStorage } from '../device-node/storage.js';

export type NvsStep = 'erased' | 'written' | 'deleted';
/** Called after each durable step; throwing from it stops the operation there (a power cut). */
export type NvsHook = (key: string, step: NvsStep) => void;

export class SimNvs extends FileStorage {
  /** Highest partition use seen, in NVS entries. */
  peakEntries = 0;
  hook: NvsHook | undefined;

  constructor(path: string) {
    super(path);
    this.peakEntries = this.entriesUsed();
  }

  set(key: string, value: Uint8Array): void {
    this.assertFits(key, value);
    // modPreference.c: nvs_erase_key, then nvs_set_blob.
    if (this.map.delete(key)) this.flush();
    this.hook?.(key, 'erased');
    this.map.set(key, value.slice());
    this.flush();
    this.peakEntries = Math.max(this.peakEntries, this.entriesUsed());
    this.hook?.(key, 'written');
  }

  delete(key: string): void {
    super.delete(key);
    this.hook?.(key, 'deleted');
  }

  /** Flip one bit of a stored value (tests of corrupt storage). */
  corrupt(key: string, byte = 5): void {
    const v = this.map.get(key);
    if (!v) throw new Error(`no ${key} to corrupt`);
    v[Math.min(byte, v.length - 1)] ^= 1;
    this.flush();
  }
}
