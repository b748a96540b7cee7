import '../helpers/node-random.js';
import { nodeRandom } from '../helpers/node-random.js';
import { Device } from '../../lib/device/device.js';
import type { StepResult } from '../../lib/device/engine.js';
import { ReadingQueue } from '../../lib/device/queue.js';
import type { Transport } from '../../lib/platform.js';
import { rig, type Rig } from './harness.js';

// Count-based rotation (§5.6 rotation.maxReadings) driven through Device.tick() on the fake
// chain: the offer follows the Nth reading at once, not at the engine's 10-minute idle check,
// and the spacing T between offers still holds.

const INTERVAL_SEC = 5;

/** Readings POSTs are acknowledged here; JSON-RPC goes to the fake chain (so chain.calls is relay traffic only). */
function withReadingsSink(r: Rig): Transport {
  const chain = r.chain.transport();
  return {
    request: async (method, url, body, contentType) =>
      url.endsWith('/v1/readings') ? { status: 202, body: new Uint8Array(0) } : chain.request(method, url, body, contentType),
  };
}

/** An active device (epoch 1) with maxReadings 3, its step() results recorded. */
async function activeDevice(): Promise<{ r: Rig; dev: Device; steps: Array<StepResult & { at: number }> }> {
  const r = await rig({ rotation: { maxReadings: 3, maxAgeSec: 0 }, intervalSec: INTERVAL_SEC });
  await r.dev.run('active', { sleep: r.sleep });
  const steps: Array<StepResult & { at: number }> = [];
  const step = r.dev.step.bind(r.dev);
  r.dev.step = async () => {
    const s = await step();
    steps.push({ ...s, at: r.clock.now() });
    return s;
  };
  const sensor = { read: () => ({ temp: 21.5 }) };
  const dev = new Device({ engine: r.dev, queue: new ReadingQueue(r.storage, withReadingsSink(r)), sensor, clock: r.clock, random: nodeRandom });
  return { r, dev, steps };
}

/** Ticks as the firmware's timer would until `done`; returns the clock time the Nth reading was sealed. */
async function tickUntil(r: Rig, dev: Device, done: () => boolean, n: bigint): Promise<number | undefined> {
  let nthAt: number | undefined;
  for (let i = 0; i < 400 && !done(); i++) {
    r.sleep(await dev.tick());
    const last = dev.status().lastReading;
    if (nthAt === undefined && last && last.epoch === '1' && BigInt(last.seq) === n) nthAt = last.at;
  }
  expect(done()).toBe(true);
  return nthAt;
}

const offered = (r: Rig, epoch: bigint) => r.chain.offers().some((o) => o.epoch === epoch);

test('the Nth reading makes the rotation offer within one reading interval, with no relay call between readings before it', async () => {
  const { r, dev, steps } = await activeDevice();
  r.sleep(3600_000); // spacing T since the epoch-1 offer has long passed
  await dev.tick(); // first tick: an idle step (next check in 10 min) and reading 1
  expect(steps.map((s) => s.action)).toEqual(['idle']);
  const callsAfterFirst = r.chain.calls.length;
  const sendsBefore = r.sendTimes.length;
  r.sleep(INTERVAL_SEC * 1000);
  await dev.tick(); // reading 2: the count is not reached, nothing asked of the relay
  expect(dev.status().lastReading?.seq).toBe('2');
  expect(r.chain.calls.length).toBe(callsAfterFirst);
  r.sleep(INTERVAL_SEC * 1000);
  const thirdAt = await tickUntil(r, dev, () => offered(r, 2n), 3n);
  expect(thirdAt).toBeDefined();
  const offerAt = r.sendTimes[sendsBefore];
  // Without the prompt step this came at the idle check, ~10 min after the first tick.
  expect(offerAt - thirdAt!).toBeLessThan(INTERVAL_SEC * 1000);
  expect(steps.filter((s) => s.action === 'idle')).toHaveLength(1);
  expect(steps.find((s) => s.action === 'new-epoch')!.at).toBe(thirdAt);
  await tickUntil(r, dev, () => dev.engine.activeKey()?.epoch === 2n, 0n);
});

test('a count-due rotation still waits for the spacing T: one wait-spacing step, no step per reading meanwhile', async () => {
  const { r, dev, steps } = await activeDevice(); // epoch 1 offered moments ago: T (60 s) not over
  const firstOfferAt = r.sendTimes[0];
  const thirdAt = await tickUntil(r, dev, () => offered(r, 2n), 3n);
  const actions = steps.map((s) => s.action);
  expect(actions.slice(0, 3)).toEqual(['idle', 'wait-spacing', 'new-epoch']);
  expect(steps[1].at).toBe(thirdAt); // stepped at the 3rd reading, not at the idle check…
  // …and then not again at readings 4, 5, … (each 5 s) until T was over.
  expect(BigInt(dev.status().lastReading!.seq)).toBeGreaterThanOrEqual(10n);
  expect(steps[2].at - firstOfferAt).toBeGreaterThanOrEqual(60_000);
  expect(steps[2].at - firstOfferAt).toBeLessThan(60_000 + INTERVAL_SEC * 1000);
  expect(r.sendTimes[1] - r.sendTimes[0]).toBeGreaterThanOrEqual(60_000);
});
