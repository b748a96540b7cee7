/** Shared set-up for the device engine tests: a fake chain, a device, and invariant checks. */
import { nodeRandom } from '../helpers/node-random.js';
import { addressHex } from '../../lib/address.js';
import { DeviceEngine } from '../../lib/device/engine.js';
import { FakeChain, FakeClock, MemStorage, deviceConfig, type RpcFail } from './fake-chain.js';

export interface Rig {
  chain: FakeChain;
  storage: MemStorage;
  clock: FakeClock;
  dev: DeviceEngine;
  device: string;
  /** A fresh engine over the same storage (a reboot). */
  reboot(): DeviceEngine;
  /** Sleep for the run loop: time passes, and blocks with it. */
  sleep(ms: number): void;
  /** Clock time of each eth_sendRawTransaction the relay received. */
  sendTimes: number[];
}

export async function rig(over: Record<string, unknown> = {}, opts: { enroll?: boolean } = {}): Promise<Rig> {
  const chain = new FakeChain();
  await chain.publishReceiverKey();
  const storage = new MemStorage();
  const clock = new FakeClock();
  const make = () => new DeviceEngine({ storage, random: nodeRandom, clock, transport: chain.transport() });
  const dev = make();
  dev.provision(deviceConfig(chain.receiver.address, over));
  const device = addressHex(dev.address);
  if (opts.enroll !== false) chain.enroll(device);
  const r: Rig = {
    chain, storage, clock, dev, device, sendTimes: [],
    reboot: () => (r.dev = make()),
    sleep: (ms: number) => {
      clock.advance(ms);
      chain.advanceBlocks(BigInt(Math.floor(ms / 2000)));
    },
  };
  chain.onCall = (m) => { if (m === 'eth_sendRawTransaction') r.sendTimes.push(clock.now()); };
  return r;
}

/** No nonce carries two different offers: transactions sharing a nonce differ only in fees (bumps). */
export function assertNoNonceReuse(chain: FakeChain): void {
  const byNonce = new Map<bigint, string>();
  for (const s of chain.sent) {
    const seen = byNonce.get(s.nonce);
    if (seen !== undefined && seen !== s.data) throw new Error(`nonce ${s.nonce} signed for two different offers`);
    byNonce.set(s.nonce, s.data);
  }
}

/** Every offer of one epoch carries the same commitment (one K per epoch), and epochs never skip. */
export function assertOneKeyPerEpoch(chain: FakeChain): void {
  const commit = new Map<bigint, string>();
  let max = 0n;
  for (const o of chain.offers()) {
    const c = o.data.slice(2 + 8 + 4 * 64, 2 + 8 + 5 * 64); // offerKey's 5th head word: commitment
    const seen = commit.get(o.epoch);
    if (seen !== undefined && seen !== c) throw new Error(`epoch ${o.epoch} offered with two different commitments`);
    commit.set(o.epoch, c);
    if (o.epoch > max + 1n) throw new Error(`epoch ${o.epoch} skips (highest before ${max})`);
    if (o.epoch > max) max = o.epoch;
  }
}

/** Every transaction within the caps and the gas limit. */
export function assertWithinCaps(chain: FakeChain, cfg: { maxFeePerGas: bigint; maxPriorityFeePerGas: bigint; offerGas: bigint }): void {
  for (const s of chain.sent) {
    if (s.gas > cfg.offerGas) throw new Error('gas above offerGas');
    if (s.type === 'legacy' ? s.gasPrice > cfg.maxFeePerGas : s.maxFeePerGas > cfg.maxFeePerGas || s.maxPriorityFeePerGas > cfg.maxPriorityFeePerGas) {
      throw new Error(`fees above caps: ${s.maxFeePerGas}/${s.maxPriorityFeePerGas}/${s.gasPrice}`);
    }
    if (s.value !== 0n) throw new Error('value');
  }
}

export type { RpcFail };
