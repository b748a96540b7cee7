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
