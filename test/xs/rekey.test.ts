import '../helpers/node-random.js';
import { keccak256, type Hex } from 'viem';
import { startGuest } from '../helpers/xs.js';
import type { XsWorker } from '../../hosts/xs/worker.js';
import { toHex } from '../../lib/bytes.js';
import { FakeChain, FakeClock, MemStorage, deviceConfig } from '../device/fake-chain.js';
import { assertNoLeakedSealKey, assertNoNonceReuse, assertOneKeyPerEpoch } from '../device/harness.js';

// Issue 15 items 1 and 3 with the engine running on XS (the fake chain, storage and clock on the
// Node side): the relay serves a genuine older key record, withholds the offer, reports its nonce
// spent, then turns honest. Every wrap the device broadcast is opened with the receiver key it
// names; none carries the K the device then seals under, and the device reaches active.
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

test('on XS: a relay-forced re-wrap gets a fresh K; a nonce lie then honesty ends active', async () => {
  const id = await worker.call('boot');
  expect(await worker.call('provision', deviceConfig(chain.receiver.address))).toBe('provisioned');
  chain.enroll(id.address);
  const v1 = chain.receiverKeys.get(chain.receiver.address)!;
  chain.receiver.rotateEncKey();
  await chain.publishReceiverKey();
  chain.servedKeyRecord = v1;
  chain.intercept = (m, p) => (m === 'eth_sendRawTransaction' ? keccak256(p[0]) : undefined); // withheld
  const step = async () => {
    const s = await worker.call('step');
    clock.advance(s.waitMs);
    chain.advanceBlocks(BigInt(Math.floor(s.waitMs / 2000)));
    return s;
  };
  for (let i = 0; i < 20 && chain.broadcasts.length < 1; i++) await step();
  expect(chain.wraps().map((w) => w.keyVersion)).toEqual([1]);
  chain.servedKeyRecord = undefined;
  chain.tamper = (m) => (m === 'eth_getTransactionCount' ? '0x1' : undefined); // "nonce 0 was spent"
  for (let i = 0; i < 60 && chain.broadcasts.length < 2; i++) await step();
  const wraps = chain.wraps();
  expect(wraps.map((w) => [w.nonce, w.keyVersion])).toEqual([[0n, 1], [1n, 2]]);
  expect(wraps[1].K).not.toBe(wraps[0].K);
  chain.tamper = undefined;
  chain.intercept = undefined;
  let state = '';
  for (let i = 0; i < 100 && state !== 'active'; i++) state = (await step()).state;
  expect(state).toBe('active');
  const key = await worker.call('activeKey');
  expect(toHex(key.K)).toBe(chain.receiver.accepted.get(1n));
  assertNoLeakedSealKey(chain, id.address, new Map([[1n, toHex(key.K)]]));
  assertNoNonceReuse(chain);
  assertOneKeyPerEpoch(chain);
  expect(chain.stuck(id.address)).toEqual([]);
  expect(chain.nonceOf(id.address)).toBe(1n); // the fresh-K offer was re-signed at nonce 0 once the count was honest
}, 120_000);
