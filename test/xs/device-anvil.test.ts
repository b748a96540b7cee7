// The device engine bundle running inside XS (xsnap) completes full exchanges (epoch 1, then a rotation to epoch 2) against the REAL anvil and OUR
// receiver. Its platform calls are bridged to Node: storage (an NVS-limited map), a fake clock, and the relay
// transport (Node fetch to hosts/relay in front of anvil). The engine is rebooted after every step.
import '../helpers/node-random.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toHex, type Address } from 'viem';
import { startGuest } from '../helpers/xs.js';
import type { XsWorker } from '../../hosts/xs/worker.js';
import { nodeTransport } from '../../hosts/device-node/transport.js';
import { startRelay, type Relay } from '../../hosts/relay/server.js';
import type { RunningReceiver } from '../../hosts/receiver/receiver.js';
import { FakeClock, MemStorage } from '../device/fake-chain.js';
import { startStack, type Stack } from '../e2e/stack.js';

let stack: Stack;
let rcv: RunningReceiver;
let relay: Relay;
let worker: XsWorker;
let dir: string;
const storage = new MemStorage();
const clock = new FakeClock();
const http = nodeTransport({ timeoutMs: 10_000 });
const rpcMethods: string[] = [];

beforeAll(async () => {
  stack = await startStack();
  rcv = await stack.startReceiver();
  dir = mkdtempSync(join(tmpdir(), 'iotkx-xs-relay-'));
  relay = await startRelay({
    upstreamUrl: stack.env.anvil.rpcUrl, chainId: stack.env.chainId, contract: stack.env.address,
    dbPath: join(dir, 'relay.db'), port: 0, logLevel: 'silent', limits: { rateLimit: false },
  });
  worker = await startGuest('test/xs/guests/device.ts', {
    storageGet: (k: string) => storage.get(k) ?? null,
    storageSet: (k: string, v: Uint8Array) => storage.set(k, v),
    storageDelete: (k: string) => storage.delete(k),
    now: () => clock.now(),
    http: (m: 'GET' | 'POST', url: string, body: Uint8Array, ct: string) => {
      rpcMethods.push(JSON.parse(Buffer.from(body).toString()).method);
      return http.request(m, url, body, ct);
    },
  });
}, 60_000);
afterAll(async () => {
  await worker?.close();
  await relay?.stop();
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the XS engine reaches active through the relay with the K our receiver accepted on anvil, then rotates to epoch 2', async () => {
  const noop = (await worker.callMetered('noop')).meter.compute;
  const id = await worker.call('boot');
  const device = id.address as Address;
  await stack.pair(device);
  expect(await worker.call('provision', stack.deviceConfig(`${relay.url}/rpc`))).toBe('provisioned');

  const actions: string[] = [];
  let compute = 0;
  for (let i = 0; i < 30; i++) {
    const { value, meter } = await worker.callMetered('step');
    actions.push(value.action);
    compute += meter.compute - noop;
    clock.advance(value.waitMs);
    await stack.pass(rcv);
    if (value.state === 'active') break;
    await worker.call('boot'); // a power cycle after every step
  }
  expect(actions).toEqual(expect.arrayContaining(['receiver-key', 'new-epoch', 'signed', 'broadcast', 'activated']));
  const key = await worker.call('activeKey');
  expect(key.epoch).toBe(1n);
  const K = toHex(key.K);
  // The same K on the receiver's side, and the on-chain acceptance carries the proof made of it.
  expect(stack.storedK(rcv, device, 1n)).toBe(K);
  expect(stack.rowState(rcv, device, 1n)?.state).toBe('accepted');
  expect((await stack.accepted(device)).map((a) => [a.epoch, a.proof])).toEqual([[1n, stack.proof(device, K, 1n)]]);
  expect(await stack.channel(device)).toMatchObject({ enrolled: true, epoch: 1n, state: 2, keyVersion: 1 });
  // One transaction from the device's address, and it went through the relay.
  expect(await stack.env.pub.getTransactionCount({ address: device })).toBe(1);
  expect(rpcMethods).toContain('eth_sendRawTransaction');
  expect(await worker.call('reserveSeq')).toEqual({ epoch: 1n, seq: 1n });

  // The count policy (2 readings) makes it rotate: epoch 2, again agreed with the receiver, epoch 1 kept there.
  expect(await worker.call('reserveSeq')).toEqual({ epoch: 1n, seq: 2n });
  for (let i = 0; i < 30; i++) {
    const { value } = await worker.callMetered('step');
    clock.advance(value.waitMs);
    await stack.pass(rcv);
    if ((await worker.call('activeKey'))?.epoch === 2n) break;
    await worker.call('boot');
  }
  const key2 = await worker.call('activeKey');
  expect(key2.epoch).toBe(2n);
  expect(stack.storedK(rcv, device, 2n)).toBe(toHex(key2.K));
  expect(stack.storedK(rcv, device, 1n)).toBe(K);
  expect(toHex(key2.K)).not.toBe(K);
  expect(await stack.env.pub.getTransactionCount({ address: device })).toBe(2);
  // eslint-disable-next-line no-console
  console.log(`XS device, one exchange against anvil: ${actions.join(' → ')}; ${(compute / 1e6).toFixed(2)} M compute in steps`);
}, 60_000);
