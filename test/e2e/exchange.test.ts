// End to end on one real anvil: OUR device engine (lib/device on Node, driven step by step with a fake clock)
// against OUR receiver (hosts/receiver, explicit sync()). The chain is read back with viem, and every K is
// compared three ways: the device's active key, the receiver's database, and the proof in the KeyAccepted log.
// The tests run in order on one device; each phase starts from where the previous one left it.
// (Rejections with our receiver are covered by test/receiver/exchange.test.ts with independent offers.)
import '../helpers/node-random.js';
import { nodeRandom } from '../helpers/node-random.js';
import { encodeFunctionResult, recoverTypedDataAddress, toFunctionSelector, toHex, type Address, type Hex } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { keyExchangeAbi } from '../../contracts/build/KeyExchange.js';
import { keyExchangeDomain, receiverKeyTypes } from '../../hosts/chain/signing.js';
import { nodeTransport } from '../../hosts/device-node/transport.js';
import type { RunningReceiver } from '../../hosts/receiver/receiver.js';
import { addressHex } from '../../lib/address.js';
import { DeviceEngine } from '../../lib/device/engine.js';
import type { Transport } from '../../lib/platform.js';
import { FakeClock, MemStorage } from '../device/fake-chain.js';
import { TTL_BLOCKS, startStack, type Stack } from './stack.js';

type KeyRecord = { encKey: Hex; version: number; sig: Hex };

/**
 * A test double between the device and anvil: forwards every call, counts broadcasts, and when `keyRecord`
 * is set answers eth_call receiverKey(R) with that record instead of the chain's (a lying relay).
 */
class Double implements Transport {
  keyRecord: KeyRecord | undefined;
  broadcasts = 0;
  keyReads = 0;
  private readonly real = nodeTransport({ timeoutMs: 10_000 });
  private static readonly SELECTOR = toFunctionSelector('receiverKey(address)');

  async request(method: 'GET' | 'POST', url: string, body?: Uint8Array, contentType?: string) {
    const msg = body ? JSON.parse(Buffer.from(body).toString()) : undefined;
    if (msg?.method === 'eth_sendRawTransaction') this.broadcasts++;
    if (msg?.method === 'eth_call' && String(msg.params?.[0]?.data ?? '').startsWith(Double.SELECTOR)) {
      this.keyReads++;
      if (this.keyRecord) {
        const { encKey, version, sig } = this.keyRecord;
        const result = encodeFunctionResult({ abi: keyExchangeAbi, functionName: 'receiverKey', result: [encKey, version, sig] });
        return { status: 200, body: new Uint8Array(Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result }))) };
      }
    }
    return this.real.request(method, url, body, contentType);
  }
}

let stack: Stack;
let rcv: RunningReceiver;
const storage = new MemStorage();
const clock = new FakeClock();
const transport = new Double();
const make = () => new DeviceEngine({ storage, random: nodeRandom, clock, transport });
let dev: DeviceEngine;
let device: Address;
/** K by epoch, as the device activated it. */
const deviceK = new Map<bigint, Hex>();
/** The genuine version-1 key record, captured from the chain before the receiver rotates. */
let recordV1: KeyRecord;

beforeAll(async () => {
  stack = await startStack();
  rcv = await stack.startReceiver();
  dev = make();
  dev.provision(stack.deviceConfig(stack.env.anvil.rpcUrl));
  device = addressHex(dev.address) as Address;
  await stack.pair(device);
}, 60_000);
afterAll(() => stack?.stop());

/** Step the device (time passes as it asks), with a receiver pass after each step, until `until` holds. */
async function drive(until: () => boolean | Promise<boolean>, r: RunningReceiver | undefined, max = 40): Promise<string[]> {
  const actions: string[] = [];
  for (let i = 0; i < max; i++) {
    if (await until()) return actions;
    const s = await dev.step();
    actions.push(s.action);
    clock.advance(s.waitMs);
    if (r) await stack.pass(r);
  }
  if (await until()) return actions;
  throw new Error(`not done after ${max} steps: ${actions.join(',')}; state ${dev.state}, last error ${JSON.stringify(dev.status().lastError)}`);
}

const activeEpoch = () => dev.activeKey()?.epoch;
/** Record and check the active key: the receiver stores the same K, and the on-chain proof is made of it. */
async function expectAgreed(epoch: bigint): Promise<void> {
  const a = dev.activeKey()!;
  expect(a.epoch).toBe(epoch);
  const K = toHex(a.K);
  deviceK.set(epoch, K);
  expect(stack.storedK(rcv, device, epoch)).toBe(K);
  expect(stack.rowState(rcv, device, epoch)?.state).toBe('accepted');
  const acc = (await stack.accepted(device)).find((l) => l.epoch === epoch);
  expect(acc?.proof).toBe(stack.proof(device, K, epoch));
}
/** Make the count policy (rotation.maxReadings = 2) due. */
const useUpKey = () => { dev.reserveSeq(); dev.reserveSeq(); };

test('device and receiver reach active with the same K', async () => {
  expect(dev.state).toBe('provisioned');
  const actions = await drive(() => dev.state === 'active', rcv);
  expect(actions).toEqual(expect.arrayContaining(['receiver-key', 'new-epoch', 'signed', 'activated']));
  await expectAgreed(1n);
  expect(await stack.channel(device)).toMatchObject({ enrolled: true, epoch: 1n, state: 2, keyVersion: 1 });
  expect(dev.status()).toMatchObject({ keyVersion: 1, nextNonce: '1' });
  recordV1 = await (async () => {
    const [encKey, version, sig] = await stack.env.read<[Hex, number, Hex]>('receiverKey', [stack.receiver]);
    return { encKey, version, sig };
  })();
}, 60_000);

test('rotation by policy to epochs 2 and 3; the receiver keeps all three K', async () => {
  dev = make(); // a reboot between phases
  useUpKey();
  await drive(() => activeEpoch() === 2n, rcv);
  await expectAgreed(2n);
  expect(dev.previousKey()?.epoch).toBe(1n);
  useUpKey();
  await drive(() => activeEpoch() === 3n, rcv);
  await expectAgreed(3n);
  for (const e of [1n, 2n, 3n]) expect(stack.storedK(rcv, device, e)).toBe(deviceK.get(e));
  expect(new Set(deviceK.values()).size).toBe(3);
  expect((await stack.offered(device)).map((o) => o.epoch)).toEqual([1n, 2n, 3n]);
  expect(await stack.env.pub.getTransactionCount({ address: device })).toBe(3);
}, 60_000);

test('an offer the receiver lets expire: the device re-offers epoch + 1, which is accepted', async () => {
  // The receiver restarts with a policy that accepts nothing (rate limit 0): it sees the offer, keeps K, waits.
  await rcv.stop();
  const slow = await stack.startReceiver({ exchange: { confirmations: 0, acceptRate: { max: 0, windowMs: 3_600_000 } } });
  dev = make();
  useUpKey();
  await drive(async () => (await stack.channel(device)).epoch === 4n, slow);
  await stack.pass(slow);
  expect(stack.rowState(slow, device, 4n)?.state).toBe('keyStored');
  expect(dev.status().pendingEpoch).toBe('4');

  await stack.env.mine(TTL_BLOCKS + 1);
  await stack.pass(slow);
  expect(stack.rowState(slow, device, 4n)?.state).toBe('expired');
  expect(await stack.channel(device)).toMatchObject({ epoch: 4n, state: 1 }); // offered, never accepted
  await slow.stop();

  // The device notices the expiry on its own, backs off, and offers epoch 5; the receiver (normal again) accepts.
  rcv = await stack.startReceiver();
  const actions = await drive(() => activeEpoch() === 5n, rcv);
  expect(actions).toContain('expired');
  expect(actions).toContain('wait-spacing');
  await expectAgreed(5n);
  expect((await stack.offered(device)).map((o) => o.epoch)).toEqual([1n, 2n, 3n, 4n, 5n]);
  expect((await stack.accepted(device)).map((a) => a.epoch)).toEqual([1n, 2n, 3n, 5n]);
  // Older keys survived the receiver's restarts.
  for (const e of [1n, 2n, 3n]) expect(stack.storedK(rcv, device, e)).toBe(deviceK.get(e));
}, 60_000);

test('receiver encryption key rotation: the next epoch is offered under version 2 and accepted', async () => {
  expect(await rcv.rotateEncryptionKey()).toBe(2);
  await stack.pass(rcv);
  dev = make();
  useUpKey();
  await drive(() => activeEpoch() === 6n, rcv);
  await expectAgreed(6n);
  expect(dev.status().keyVersion).toBe(2);
  const offers = await stack.offered(device);
  expect(offers.find((o) => o.epoch === 5n)?.keyVersion).toBe(1);
  expect(offers.find((o) => o.epoch === 6n)?.keyVersion).toBe(2);
  expect(stack.rowState(rcv, device, 6n)?.key_version).toBe(2);
}, 60_000);

test('the device refuses a stale or forged receiver key record, then proceeds with the genuine one', async () => {
  const R = stack.receiver;
  // The stale record is genuine (signed by R) but version 1 < the verified 2.
  expect(await recoverTypedDataAddress({
    domain: keyExchangeDomain(stack.env.chainId, stack.env.address), types: receiverKeyTypes, primaryType: 'ReceiverKey',
    message: { receiver: R, version: recordV1.version, encKey: recordV1.encKey }, signature: recordV1.sig,
  })).toBe(R);
  // Forged records: well-formed EIP-712 for the pinned R, valid points, signed by another key.
  const attacker = privateKeyToAccount(generatePrivateKey());
  const forge = async (version: number): Promise<KeyRecord> => {
    const encKey = toHex(secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), false));
    const typed = { domain: keyExchangeDomain(stack.env.chainId, stack.env.address), types: receiverKeyTypes, primaryType: 'ReceiverKey' as const, message: { receiver: R, version, encKey } };
    const sig = await attacker.signTypedData(typed);
    expect(await recoverTypedDataAddress({ ...typed, signature: sig })).toBe(attacker.address);
    return { encKey, version, sig };
  };
  const cases: [string, KeyRecord, string][] = [
    ['stale (version 1)', recordV1, 'stale-receiver-key'],
    ['forged version 3', await forge(3), 'bad-receiver-key'],
    ['forged version 2 (another key for the verified version)', await forge(2), 'bad-receiver-key'],
  ];
  dev = make();
  useUpKey(); // a new epoch is due: the device must read (and verify) the key record before offering it
  const txs = await stack.env.pub.getTransactionCount({ address: device });
  const sends = transport.broadcasts;
  for (const [what, record, code] of cases) {
    transport.keyRecord = record;
    const reads = transport.keyReads;
    const actions = await drive(() => transport.keyReads >= reads + 3, undefined, 20);
    expect({ what, last: actions.at(-1), error: dev.status().lastError?.code }).toEqual({ what, last: 'error', error: code });
    expect(dev.status()).toMatchObject({ state: 'active', epoch: '6', pendingEpoch: null, lastOffered: '6', keyVersion: 2 });
  }
  expect(transport.broadcasts).toBe(sends);
  expect(await stack.env.pub.getTransactionCount({ address: device })).toBe(txs);

  // Positive control: the double stops lying and the same device offers epoch 7 under version 2.
  transport.keyRecord = undefined;
  dev = make();
  await drive(() => activeEpoch() === 7n, rcv);
  await expectAgreed(7n);
  expect((await stack.offered(device)).find((o) => o.epoch === 7n)?.keyVersion).toBe(2);
}, 60_000);

test('revocation stops offers: the device reaches revoked and sends nothing more', async () => {
  useUpKey(); // a rotation is due, so only the revocation keeps the device from offering
  await stack.revoke(device);
  await stack.pass(rcv);
  const txs = await stack.env.pub.getTransactionCount({ address: device });
  const sends = transport.broadcasts;
  dev = make();
  const actions = await drive(() => dev.state === 'revoked', rcv, 5);
  expect(actions.at(-1)).toBe('revoked');
  expect(dev.activeKey()).toBeUndefined();
  // Steps over two days (the daily budget renews): no offer, no broadcast.
  const later: string[] = [];
  for (let i = 0; i < 12; i++) {
    later.push((await dev.step()).action);
    clock.advance(4 * 3_600_000);
  }
  expect(new Set(later)).toEqual(new Set(['wait-enrolment']));
  expect(dev.state).toBe('revoked');
  expect(transport.broadcasts).toBe(sends);
  expect(await stack.env.pub.getTransactionCount({ address: device })).toBe(txs);
  expect((await stack.offered(device)).map((o) => o.epoch)).toEqual([1n, 2n, 3n, 4n, 5n, 6n, 7n]);
  expect(await stack.channel(device)).toMatchObject({ enrolled: false, epoch: 7n, state: 2 });
  const row = rcv.store.db.prepare('SELECT status FROM devices WHERE device = ?').get(device.toLowerCase()) as { status: string };
  expect(row.status).toBe('revoked');
}, 60_000);
