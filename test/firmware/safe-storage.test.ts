import '../helpers/node-random.js';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { crc32, SafeStorage, SAFE_MAX_VALUE_BYTES, encodeSlotValue, decodeSlotValue } from '../../lib/device/safe-storage.js';
import type { Storage } from '../../lib/platform.js';

class PowerCut extends Error {}

/**
 * A raw NVS as Moddable's preference.set behaves on the ESP32: erase, then write.
 * Every erase, write and delete is one step; `cutAt` throws a PowerCut instead of step n.
 */
class EraseFirstStore implements Storage {
  map = new Map<string, Uint8Array>();
  steps = 0;
  cutAt = -1;
  private step(): void {
    if (this.steps++ === this.cutAt) throw new PowerCut();
  }
  get(k: string) { const v = this.map.get(k); return v?.slice(); }
  set(k: string, v: Uint8Array) {
    if (k.length > 15 || v.length > 4000) throw new Error(`NVS limit: ${k}`);
    this.step(); this.map.delete(k); // erase
    this.step(); this.map.set(k, v.slice()); // write
  }
  delete(k: string) { this.step(); this.map.delete(k); }
}

const hex = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString('hex') : 'absent');

test('CRC-32 matches zlib (independent implementation)', () => {
  for (const n of [0, 1, 7, 64, 1000, 3991]) {
    const b = new Uint8Array(randomBytes(n));
    expect(crc32(b)).toBe(zlibCrc32(b));
  }
  expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926); // the CRC catalogue's check value
});

test('round trip, slot alternation, limits, one copy at rest', () => {
  const raw = new EraseFirstStore();
  const s = new SafeStorage(raw);
  expect(s.get('chan')).toBeUndefined();
  s.set('chan', Uint8Array.of(1));
  s.set('chan', Uint8Array.of(2));
  s.set('chan', Uint8Array.of(3));
  expect(s.get('chan')).toEqual(Uint8Array.of(3));
  expect([...raw.map.keys()]).toEqual(['chan.1']); // counter 3 in slot 1, older copies deleted
  expect(new SafeStorage(raw).get('chan')).toEqual(Uint8Array.of(3));
  s.set('big', new Uint8Array(SAFE_MAX_VALUE_BYTES));
  expect(() => s.set('big', new Uint8Array(SAFE_MAX_VALUE_BYTES + 1))).toThrow(expect.objectContaining({ code: 'storage-value' }));
  expect(() => s.set('fourteen-chars', Uint8Array.of(1))).toThrow(expect.objectContaining({ code: 'storage-key' }));
  s.delete('chan');
  expect(s.get('chan')).toBeUndefined();
  expect(raw.map.has('chan.0') || raw.map.has('chan.1')).toBe(false);
});

test('a power cut at every erase/write/delete boundary leaves each key old or new, never lost', () => {
  // A script of writes and deletes over several keys, with values of varied sizes.
  const keys = ['id', 'cfg', 'chan', 'q0', 'q1'];
  const script: Array<{ key: string; value?: Uint8Array }> = [];
  for (let i = 0; i < 30; i++) {
    const key = keys[i % keys.length];
    script.push(i % 7 === 6 ? { key } : { key, value: new Uint8Array(randomBytes(1 + ((i * 37) % 300))) });
  }
  const run = (raw: EraseFirstStore, upTo: number) => {
    const s = new SafeStorage(raw);
    for (let i = 0; i < upTo; i++) {
      const op = script[i];
      if (op.value) s.set(op.key, op.value); else s.delete(op.key);
    }
  };
  const clean = new EraseFirstStore();
  run(clean, script.length);
  const totalSteps = clean.steps;
  expect(totalSteps).toBeGreaterThan(60);

  // Expected value of every key after the first i operations.
  const after = (i: number) => {
    const m = new Map<string, string>();
    for (const op of script.slice(0, i)) if (op.value) m.set(op.key, hex(op.value)); else m.delete(op.key);
    return m;
  };
  let cuts = 0;
  for (let cut = 0; cut < totalSteps; cut++) {
    const raw = new EraseFirstStore();
    raw.cutAt = cut;
    let done = 0;
    const s = new SafeStorage(raw);
    try {
      for (; done < script.length; done++) {
        const op = script[done];
        if (op.value) s.set(op.key, op.value); else s.delete(op.key);
      }
    } catch (e) {
      if (!(e instanceof PowerCut)) throw e;
      cuts++;
    }
    raw.cutAt = -1;
    const rebooted = new SafeStorage(raw);
    const before = after(done);
    const next = after(Math.min(done + 1, script.length));
    for (const k of keys) {
      const got = hex(rebooted.get(k));
      expect([before.get(k) ?? 'absent', next.get(k) ?? 'absent']).toContain(got);
    }
    // The device carries on after the reboot: the rest of the script then reads back exactly.
    const rest = new SafeStorage(raw);
    for (let i = done; i < script.length; i++) {
      const op = script[i];
      if (op.value) rest.set(op.key, op.value); else rest.delete(op.key);
    }
    const final = after(script.length);
    for (const k of keys) expect(hex(new SafeStorage(raw).get(k))).toBe(final.get(k) ?? 'absent');
    // At rest, never more than one copy of a key.
    for (const k of keys) expect(+raw.map.has(`${k}.0`) + +raw.map.has(`${k}.1`)).toBeLessThanOrEqual(1);
  }
  expect(cuts).toBe(totalSteps);
});

test('corruption: a rotted older copy is ignored; no valid copy at all is storage-corrupt, never "absent"', () => {
  const raw = new EraseFirstStore();
  // Both copies present (as after a cut between write and delete); rot the older one.
  raw.map.set('id.0', encodeSlotValue('id', 4, Uint8Array.of(0xaa)));
  raw.map.set('id.1', encodeSlotValue('id', 5, Uint8Array.of(0xbb)));
  expect(new SafeStorage(raw).get('id')).toEqual(Uint8Array.of(0xbb));
  raw.map.get('id.0')![5] ^= 1;
  expect(new SafeStorage(raw).get('id')).toEqual(Uint8Array.of(0xbb));
  raw.map.get('id.1')![5] ^= 1;
  expect(() => new SafeStorage(raw).get('id')).toThrow(expect.objectContaining({ code: 'storage-corrupt' }));
  // A slot moved under another key fails too (the key is inside the CRC).
  raw.map.set('cfg.0', encodeSlotValue('chan', 1, Uint8Array.of(1)));
  expect(() => new SafeStorage(raw).get('cfg')).toThrow(expect.objectContaining({ code: 'storage-corrupt' }));
  expect(decodeSlotValue('id', Uint8Array.of(1, 2, 3))).toBeUndefined();
  // A corrupt key can still be deleted (factory reset).
  const s = new SafeStorage(raw);
  s.delete('id');
  expect(s.get('id')).toBeUndefined();
});
