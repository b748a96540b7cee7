// PROTOCOL.md §5.6: after revocation and re-enrolment only epochs accepted later are valid: the
// receiver refuses envelopes of the pre-revocation epoch. The device must seal nothing under it,
// from re-enrolment until its new epoch is accepted; driven through Device.tick() as the firmware does.
import '../helpers/node-random.js';
import { nodeRandom } from '../helpers/node-random.js';
import { Device } from '../../lib/device/device.js';
import { ReadingQueue } from '../../lib/device/queue.js';
import { decodeEnvelope } from '../../lib/envelope.js';
import type { Transport } from '../../lib/platform.js';
import { rig, type Rig } from './harness.js';

/** Readings POSTs are acknowledged and kept (epoch of each); JSON-RPC goes to the fake chain. */
function readingsSink(r: Rig, posted: bigint[]): Transport {
  const chain = r.chain.transport();
  return {
    request: async (method, url, body, contentType) => {
      if (!url.endsWith('/v1/readings')) return chain.request(method, url, body, contentType);
      posted.push(decodeEnvelope(body!).epoch);
      return { status: 202, body: new Uint8Array(0) };
    },
  };
}

test('after revocation and re-enrolment nothing is sealed under the pre-revocation epoch until the new epoch is active', async () => {
  const r = await rig({ intervalSec: 5 });
  const posted: bigint[] = [];
  const dev = new Device({ engine: r.dev, queue: new ReadingQueue(r.storage, readingsSink(r, posted)), sensor: { read: () => ({ temp: 20 }) }, clock: r.clock, random: nodeRandom });
  const tick = async () => r.sleep(await dev.tick());
  const sealedEpochs = () => { const l = dev.status().lastReading; return l ? `${l.epoch}:${l.seq}` : ''; };

  for (let i = 0; i < 100 && posted.length < 3; i++) await tick();
  expect(posted.slice(0, 3)).toEqual([1n, 1n, 1n]);

  r.chain.revoke(r.device);
  for (let i = 0; i < 500 && r.dev.state !== 'revoked'; i++) await tick(); // noticed at the idle check (10 min)
  expect(r.dev.state).toBe('revoked');
  const atRevocation = sealedEpochs();

  // Re-enrolled; the receiver does not answer the new epoch's offer for a while.
  r.chain.receiver.policy = 'ignore';
  r.chain.enroll(r.device);
  const seenAfter: string[] = [];
  for (let i = 0; i < 200 && !r.chain.offers().some((o) => o.epoch === 2n); i++) await tick();
  expect(r.chain.offers().some((o) => o.epoch === 2n)).toBe(true);
  const postedBefore = posted.length;
  for (let i = 0; i < 100; i++) {
    await tick();
    seenAfter.push(sealedEpochs());
    expect(r.dev.activeKey()).toBeUndefined();
  }
  expect(new Set(seenAfter)).toEqual(new Set([atRevocation])); // not one reading sealed since
  expect(posted.slice(postedBefore)).toEqual([]);
  expect(r.dev.state).toBe('exchanging');
  expect(r.reboot().activeKey()).toBeUndefined(); // persisted, not a per-boot flag
  r.dev = dev.engine; // the device goes on with its own engine

  // The receiver answers again (epoch 2 may have expired meanwhile: a later epoch then): readings
  // resume, under the new epoch only.
  r.chain.receiver.policy = 'accept';
  const from = posted.length;
  for (let i = 0; i < 400 && posted.length < from + 3; i++) await tick();
  const now = r.dev.activeKey()!.epoch;
  expect(now).toBeGreaterThan(1n);
  expect(posted.slice(from, from + 3)).toEqual([now, now, now]);
});

// §5.6 again, when the device never sees `enrolled = false`: revoked and re-enrolled while it was off
// (or between two idle checks). Only the chain's DeviceRevoked log tells.
test('a revocation and re-enrolment while the device was off is noticed at boot: nothing sealed under the old epoch, a new epoch follows', async () => {
  const r = await rig();
  await r.dev.run('active', { sleep: r.sleep });
  r.chain.revoke(r.device);
  r.chain.block += 5n;
  r.chain.enroll(r.device);
  r.clock.advance(3_600_000);
  const dev = r.reboot();
  await dev.step();
  expect(dev.activeKey()).toBeUndefined();
  expect(() => dev.reserveSeq()).toThrow(expect.objectContaining({ code: 'no-active-key' }));
  await dev.run((e) => e.activeKey()?.epoch === 2n, { sleep: r.sleep, maxSteps: 200 });
  expect(toHexK(dev.activeKey()!.K)).toBe(r.chain.receiver.accepted.get(2n));
  // Epoch 2 was accepted after the re-enrolment: later checks leave it alone.
  for (let i = 0; i < 20; i++) { const s = await dev.step(); r.sleep(s.waitMs); }
  expect(dev.activeKey()?.epoch).toBe(2n);
  expect(r.chain.offers().map((o) => o.epoch)).toEqual([1n, 2n]);
});

test('a revocation and re-enrolment between two idle checks is noticed at the next one', async () => {
  const r = await rig();
  await r.dev.run('active', { sleep: r.sleep });
  const s0 = await r.dev.step();
  expect(s0.action).toBe('idle');
  r.chain.revoke(r.device);
  r.chain.enroll(r.device);
  let steps = 0;
  for (; steps < 5 && r.dev.activeKey(); steps++) { const s = await r.dev.step(); r.sleep(s.waitMs); }
  expect(r.dev.activeKey()).toBeUndefined();
  expect(steps).toBeLessThanOrEqual(2);
  await r.dev.run((e) => e.activeKey()?.epoch === 2n, { sleep: r.sleep, maxSteps: 200 });
});

test('a pending epoch accepted before a revocation is not activated after the re-enrolment; a later one is', async () => {
  const r = await rig({ rotation: { maxReadings: 1, maxAgeSec: 0 } });
  await r.dev.run('active', { sleep: r.sleep });
  r.dev.reserveSeq();
  // The epoch-2 offer lands and is accepted at once; the device is off before it sees the acceptance.
  await r.dev.run(() => r.chain.channel(r.device).epoch === 2n && r.chain.channel(r.device).state === 2, { sleep: r.sleep, maxSteps: 100 });
  expect(r.dev.status().pendingEpoch).toBe('2');
  r.chain.revoke(r.device);
  r.chain.block += 5n;
  let dev = r.reboot();
  for (let i = 0; i < 3; i++) { const s = await dev.step(); r.sleep(s.waitMs); }
  expect(dev.state).toBe('revoked');
  r.chain.enroll(r.device);
  const seen = new Set<string>();
  await dev.run((e) => e.activeKey()?.epoch === 3n, {
    sleep: (ms) => { const a = dev.activeKey(); if (a) seen.add(String(a.epoch)); r.sleep(ms); }, maxSteps: 300,
  });
  expect([...seen].filter((e) => e !== '3')).toEqual([]); // never sealed under epoch 2 (nor 1)
  expect(toHexK(dev.activeKey()!.K)).toBe(r.chain.receiver.accepted.get(3n));
  // The same when the device never saw `enrolled = false` at all (off across revocation and re-enrolment).
  r.dev.reserveSeq();
  r.chain.receiver.policy = 'accept';
  await dev.run(() => r.chain.channel(r.device).epoch === 4n && r.chain.channel(r.device).state === 2, { sleep: r.sleep, maxSteps: 100 });
  r.chain.revoke(r.device);
  r.chain.enroll(r.device);
  dev = r.reboot();
  const seen2 = new Set<string>();
  await dev.run((e) => e.activeKey()?.epoch === 5n, {
    sleep: (ms) => { const a = dev.activeKey(); if (a) seen2.add(String(a.epoch)); r.sleep(ms); }, maxSteps: 300,
  });
  expect([...seen2].filter((e) => e !== '5')).toEqual([]);
});

test('a pending offer that never landed survives a revocation and re-enrolment and is accepted after it', async () => {
  const r = await rig({ rotation: { maxReadings: 1, maxAgeSec: 0 } });
  await r.dev.run('active', { sleep: r.sleep });
  r.dev.reserveSeq();
  r.chain.autoMine = false;
  await r.dev.run(() => r.chain.sent.length === 2, { sleep: r.sleep, maxSteps: 100 });
  r.chain.revoke(r.device);
  r.chain.enroll(r.device);
  r.chain.autoMine = true;
  await r.chain.mine(); // epoch 2 lands now, after the re-enrolment, and is accepted
  await r.dev.run((e) => (e.activeKey()?.epoch ?? 0n) >= 2n && !e.status().pendingEpoch, { sleep: r.sleep, maxSteps: 200 });
  expect(r.dev.activeKey()!.epoch).toBe(2n);
  expect(r.chain.offers().filter((o) => o.epoch === 2n).length).toBe(1);
});

const toHexK = (K: Uint8Array) => `0x${Buffer.from(K).toString('hex')}`;
