import '../helpers/node-random.js';
import { nodeRandom } from '../helpers/node-random.js';
import { ECIES_CONFIG, decrypt } from 'eciesjs';
import { parseEventLogs, parseEther, toHex, type Address, type Hex } from 'viem';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { setupChain, type ChainEnv } from '../helpers/chain.js';
import { fund } from '../../hosts/chain/deploy.js';
import { channelId, proofFor, signKeyAcceptance, signReceiverKey } from '../../hosts/chain/signing.js';
import { addressHex } from '../../lib/address.js';
import { DeviceEngine } from '../../lib/device/engine.js';
import type { Transport } from '../../lib/platform.js';
import { FakeClock, MemStorage } from './fake-chain.js';

// The engine against real anvil and the compiled KeyExchange, with a minimal test-only
// receiver (viem + eciesjs): the device reaches `active` with the K the receiver unwrapped.
ECIES_CONFIG.symmetricAlgorithm = 'xchacha20'; // PROTOCOL.md §2

let env: ChainEnv;
beforeAll(async () => { env = await setupChain(['receiver', 'funder'], 20); }, 60_000);
afterAll(() => env?.stop());

const http: Transport = {
  async request(method, url, body, contentType) {
    const res = await fetch(url, { method, body: body ? Buffer.from(body) : undefined, headers: contentType ? { 'content-type': contentType } : {} });
    return { status: res.status, body: new Uint8Array(await res.arrayBuffer()) };
  },
};

test('device ⇄ anvil ⇄ receiver: offer, accept, confirm; a rotation offers epoch 2', async () => {
  const receiver = env.actors.receiver;
  const encSk = secp256k1.utils.randomSecretKey();
  const encKey = toHex(secp256k1.getPublicKey(encSk, false));
  const sig = await signReceiverKey(receiver.account, env.chainId, env.address, 1, encKey);
  expect((await env.tx(receiver, 'setReceiverKey', [encKey, sig])).error).toBeUndefined();

  const storage = new MemStorage();
  const clock = new FakeClock();
  const make = () => new DeviceEngine({ storage, random: nodeRandom, clock, transport: http });
  let dev = make();
  dev.provision({
    relayUrl: env.anvil.rpcUrl, chainId: String(env.chainId), contract: env.address, receiver: receiver.address, intervalSec: 60,
    maxFeePerGas: parseEther('0.0000001').toString(), maxPriorityFeePerGas: '2000000000', offerGas: '300000', maxTxPerDay: 10,
    blockTime: 1, backoffMaxSec: 600, rotation: { maxReadings: 2, maxAgeSec: 0 },
  });
  const device = addressHex(dev.address) as Address;
  await fund(env.actors.funder.session, device, parseEther('1'));
  expect((await env.tx(receiver, 'enroll', [receiver.address, device])).error).toBeUndefined();

  // The receiver (§5.4): unwrap each new offer, check the commitment, accept.
  const accepted = new Map<bigint, Hex>();
  const receiverTick = async () => {
    const logs = parseEventLogs({ abi: env.abi, logs: await env.pub.getLogs({ address: env.address, fromBlock: env.deployBlock }), eventName: 'KeyOffered' });
    for (const l of logs) {
      const { device: d, epoch, wrappedKey, commitment } = l.args as { device: Address; epoch: bigint; wrappedKey: Hex; commitment: Hex };
      if (accepted.has(epoch)) continue;
      const K = toHex(decrypt(encSk, Buffer.from(wrappedKey.slice(2), 'hex')));
      const { proof, commitment: c } = proofFor(K, channelId(env.chainId, env.address, d, receiver.address), epoch);
      expect(c).toBe(commitment);
      const s = await signKeyAcceptance(receiver.account, env.chainId, env.address, d, epoch, proof);
      expect((await env.tx(receiver, 'acceptKey', [d, epoch, proof, s])).error).toBeUndefined();
      accepted.set(epoch, K);
    }
  };
  const sleep = async (ms: number) => { clock.advance(ms); await receiverTick(); };

  // Reboot after every step, as a power-cycled device would.
  for (let i = 0; i < 30 && dev.state !== 'active'; i++) { const s = await dev.step(); await sleep(s.waitMs); dev = make(); }
  expect(dev.state).toBe('active');
  expect(toHex(dev.activeKey()!.K)).toBe(accepted.get(1n));
  const [, e1, state1] = await env.read<readonly [boolean, bigint, number]>('channel', [device, receiver.address]);
  expect([e1, state1]).toEqual([1n, 2]);

  dev.reserveSeq(); dev.reserveSeq();
  await dev.run((e) => e.activeKey()?.epoch === 2n, { sleep });
  expect(toHex(dev.activeKey()!.K)).toBe(accepted.get(2n));
  expect(dev.previousKey()!.epoch).toBe(1n);
  expect(dev.status()).toMatchObject({ nextNonce: '2', txToday: 2, lastOffered: '2' });
  expect(await env.pub.getTransactionCount({ address: device })).toBe(2);

  // §5.6 on the real contract: revoked and re-enrolled while the device is off. Its DeviceRevoked log
  // (receiver and device as indexed topics) is what the device finds at boot: epoch 2 is dropped, epoch 3 follows.
  expect((await env.tx(receiver, 'revoke', [receiver.address, device])).error).toBeUndefined();
  expect((await env.tx(receiver, 'enroll', [receiver.address, device])).error).toBeUndefined();
  dev = make();
  await dev.step();
  expect(dev.activeKey()).toBeUndefined();
  await dev.run((e) => e.activeKey()?.epoch === 3n, { sleep });
  expect(toHex(dev.activeKey()!.K)).toBe(accepted.get(3n));
  for (let i = 0; i < 3; i++) { const s = await dev.step(); clock.advance(Math.max(s.waitMs, 600_000)); }
  expect(dev.activeKey()?.epoch).toBe(3n); // accepted after the re-enrolment: kept
}, 120_000);
