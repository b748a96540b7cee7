// Issue 15 item 4, end to end: slot squatting. Anyone can POST bodies for a predictable
// (device, epoch, seq); after 4 different ones the relay answers 409 too-many-variants to the
// genuine envelope. Real anvil + relay (real HTTP) + receiver + a Node device: an attacker
// squats the device's next 50 seqs with 4 junk envelopes each; every measurement the device
// took still arrives, decrypted, at the receiver (§7: re-sealed under the next seq).
import '../helpers/node-random.js';
import { randomBytes } from 'node:crypto';
import { encodeEnvelope } from '../../lib/envelope.js';
import { hexBytes, startFaultSystem, until, type FaultDevice, type FaultSystem } from './system.js';

jest.setTimeout(240_000);

const SQUATTED = 50;
let sys: FaultSystem;
let dev: FaultDevice;
/** Every measurement the sensor handed to the device, in order (temp is a unique counter). */
const taken: Array<{ temp: number; rh: number }> = [];
let k = 0;
const sensor = { read: () => { const v = { temp: 20 + (k++) / 100, rh: 50 }; taken.push(v); return v; } };

beforeAll(async () => {
  sys = await startFaultSystem();
  dev = await sys.addDevice('squat', undefined, {}, sensor);
}, 120_000);
afterAll(() => sys?.stop());

async function post(body: Uint8Array): Promise<number> {
  const r = await fetch(`${sys.relay.url}/v1/readings`, { method: 'POST', headers: { 'content-type': 'application/cbor' }, body });
  await r.arrayBuffer();
  return r.status;
}

test('50 squatted seqs: every measurement arrives at the receiver, decrypted; no seq reused', async () => {
  await until('device active with a reading decrypted', () => dev.status().state === 'active' && sys.stored(dev.address).length >= 1, 90_000);
  const epoch = BigInt(dev.status().epoch!);
  // The device's next seqs are predictable: the last one it used plus one. Leave it 2 s of headroom.
  const from = BigInt(dev.status().lastReading!.seq) + 3n;
  const device = hexBytes(dev.address);
  const junk = [];
  for (let s = from; s < from + BigInt(SQUATTED); s++) {
    for (let v = 0; v < 4; v++) junk.push(encodeEnvelope({ device, epoch, seq: s, nonce: new Uint8Array(randomBytes(24)), ciphertext: new Uint8Array(randomBytes(40)) }));
  }
  const statuses: number[] = [];
  for (let i = 0; i < junk.length; i += 20) statuses.push(...(await Promise.all(junk.slice(i, i + 20).map(post))));
  // The relay took them as variants (it cannot tell junk from genuine): the slots are full.
  expect(statuses.filter((s) => s === 202).length).toBeGreaterThanOrEqual(4 * SQUATTED - 8);

  // The device runs past the squatted range; then, at a moment its queue is empty, every measurement taken was acknowledged.
  const snapshot = await until('device past the squatted seqs with an empty queue', () => {
    const st = dev.status();
    return BigInt(st.lastReading?.seq ?? '0') > from + BigInt(SQUATTED) + 2n && st.readings.queued === 0 ? [...taken] : undefined;
  }, 180_000, 100);
  expect(dev.status().readings).toMatchObject({ dropped: 0, refused: 0 });
  const posts409 = dev.posts.filter((p) => p.status === 409);
  expect(posts409.length).toBeGreaterThanOrEqual(SQUATTED - 10);
  // Each 409 was re-sealed, except those that ended a drain at its re-seal bound (sent again after the back-off).
  expect(dev.status().readings.resealed).toBeGreaterThanOrEqual(SQUATTED - 10);
  expect(dev.status().readings.resealed).toBeLessThanOrEqual(posts409.length);

  // Every measurement, decrypted by the receiver (its values), exactly once.
  const values = () => (sys.receiver.store.db.prepare('SELECT values_json FROM readings WHERE device = ?').all(dev.address.toLowerCase()) as Array<{ values_json: string }>)
    .map((r) => JSON.parse(r.values_json) as { temp: number; rh: number });
  await until('receiver decrypted every measurement', () => {
    const got = new Set(values().map((v) => v.temp));
    return snapshot.every((m) => got.has(m.temp)) ? true : undefined;
  }, 90_000);
  const temps = values().map((v) => v.temp);
  expect(new Set(temps).size).toBe(temps.length);
  // No (epoch, seq) carried two different genuine bodies.
  const bodies = new Map<string, string>();
  for (const p of dev.posts) {
    const key = `${p.epoch}:${p.seq}`;
    const hex = Buffer.from(p.body).toString('hex');
    expect(bodies.get(key) ?? hex).toBe(hex);
    bodies.set(key, hex);
  }
});
