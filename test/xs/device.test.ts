import '../helpers/node-random.js';
import { startGuest } from '../helpers/xs.js';
import type { XsWorker } from '../../hosts/xs/worker.js';
import { toHex } from '../../lib/bytes.js';
import { FakeChain, FakeClock, MemStorage, deviceConfig } from '../device/fake-chain.js';
import { assertNoNonceReuse, assertOneKeyPerEpoch } from '../device/harness.js';

// One full exchange with the engine running on XS against the fake chain, with
// storage, clock and relay on the Node side; the compute meter per step is reported.
let worker: XsWorker;
const chain = new FakeChain();
const storage = new MemStorage();
const clock = new FakeClock();
const transport = chain.transport();

beforeAll(async () => {
  await chain.publishReceiverKey();
  worker = await startGuest('test/xs/guests/device.ts', {
    storageGet: (k: string) => storage.get(k) ?? null,
    storageSet: (k: string, v: Uint8Array) => storage.set(k, v),
    storageDelete: (k: string) => storage.delete(k),
    now: () => clock.now(),
    http: (m: 'GET' | 'POST', url: string, body: Uint8Array, ct: string) => transport.request(m, url, body, ct),
  });
}, 60_000);
afterAll(() => worker?.close());

test('a full exchange on XS, rebooting the engine after every step', async () => {
  await worker.call('noop');
  const noop = (await worker.callMetered('noop')).meter.compute;
  const id = (await worker.callMetered('boot')).value;
  expect(await worker.call('provision', deviceConfig(chain.receiver.address))).toBe('provisioned');
  chain.enroll(id.address);
  const perAction: Record<string, number> = {};
  let bootCompute = 0;
  let maxChan = 0;
  for (let i = 0; i < 20; i++) {
    const { value, meter } = await worker.callMetered('step');
    perAction[value.action] = (perAction[value.action] ?? 0) + meter.compute - noop;
    maxChan = Math.max(maxChan, storage.map.get('chan')?.length ?? 0);
    clock.advance(value.waitMs);
    if (value.state === 'active') break;
    bootCompute = (await worker.callMetered('boot')).meter.compute - noop;
  }
  const key = await worker.call('activeKey');
  expect(key.epoch).toBe(1n);
  expect(toHex(key.K)).toBe(chain.receiver.accepted.get(1n));
  expect(chain.sent).toHaveLength(1);
  assertNoNonceReuse(chain);
  assertOneKeyPerEpoch(chain);
  expect(await worker.call('reserveSeq')).toEqual({ epoch: 1n, seq: 1n });
  const total = Object.values(perAction).reduce((a, b) => a + b, 0);
  // eslint-disable-next-line no-console
  console.log(`XS compute per action (M): ${Object.entries(perAction).map(([k, v]) => `${k} ${(v / 1e6).toFixed(2)}`).join(', ')}; `
    + `total ${(total / 1e6).toFixed(2)} M; boot (new engine) ${(bootCompute / 1e6).toFixed(2)} M; chan record ${maxChan} B with a signed offer, ${storage.map.get('chan')!.length} B active`);
  expect(total).toBeGreaterThan(0);
}, 120_000);
