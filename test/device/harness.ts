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

/**
 * No nonce carries two different offers: transactions sharing a nonce differ only in fees (bumps),
 * or are offers of one epoch wrapped for different receiver key versions (§5.3: the fresh K of a
 * key version change is signed at the pending nonce, so at most one of the two is mined).
 */
export function assertNoNonceReuse(chain: FakeChain): void {
  const byNonce = new Map<bigint, string>();
  const word = (data: string, i: number) => data.slice(2 + 8 + i * 64, 2 + 8 + (i + 1) * 64);
  for (const s of chain.sent) {
    const seen = byNonce.get(s.nonce);
    const rekey = seen !== undefined && word(seen, 1) === word(s.data, 1) && word(seen, 2) !== word(s.data, 2);
    if (seen !== undefined && seen !== s.data && !rekey) throw new Error(`nonce ${s.nonce} signed for two different offers`);
    byNonce.set(s.nonce, s.data);
  }
}

/**
 * Every offer of one epoch and receiver key version carries the same commitment (one K per epoch
 * while the key version is unchanged, §5.3), and epochs never skip.
 */
export function assertOneKeyPerEpoch(chain: FakeChain): void {
  const commit = new Map<string, string>();
  let max = 0n;
  for (const o of chain.offers()) {
    const c = o.data.slice(2 + 8 + 4 * 64, 2 + 8 + 5 * 64); // offerKey's 5th head word: commitment
    const v = BigInt(`0x${o.data.slice(2 + 8 + 2 * 64, 2 + 8 + 3 * 64)}`); // 3rd: keyVersion
    const seen = commit.get(`${o.epoch}:${v}`);
    if (seen !== undefined && seen !== c) throw new Error(`epoch ${o.epoch} offered with two different commitments for key version ${v}`);
    commit.set(`${o.epoch}:${v}`, c);
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

/**
 * §5.3 "a K is wrapped exactly once, to one receiver key": open every wrap the device ever
 * broadcast with the receiver key it names (any holder of that key, retired or not, can); none
 * may carry a K the device sealed under, unless it is the very offer that landed for that epoch.
 * `sealed` maps epoch → K (hex) of every key the device had active.
 */
export function assertNoLeakedSealKey(chain: FakeChain, device: string, sealed: Map<bigint, string>): void {
  for (const w of chain.wraps()) {
    for (const [epoch, K] of sealed) {
      if (w.K !== K) continue;
      const landed = chain.landedWrap(device, epoch);
      if (w.epoch !== epoch || w.wrappedKey !== landed) {
        throw new Error(`K of epoch ${epoch}, sealed under, was also wrapped for key version ${w.keyVersion} in an offer (epoch ${w.epoch}, nonce ${w.nonce}) that is not the one that landed`);
      }
    }
  }
}

/** Records the active K (epoch → hex) after every call, so a test knows every key the device sealed under. */
export function sealedKeys(r: Rig): { sealed: Map<bigint, string>; note(): void } {
  const sealed = new Map<bigint, string>();
  return {
    sealed,
    note() {
      const a = r.dev.activeKey();
      if (!a) return;
      const k = `0x${Buffer.from(a.K).toString('hex')}`;
      const seen = sealed.get(a.epoch);
      if (seen !== undefined && seen !== k) throw new Error(`epoch ${a.epoch} active with two keys`);
      sealed.set(a.epoch, k);
    },
  };
}

/**
 * No nonce left behind (no gap that would strand a later transaction): every nonce the device
 * signed at or above the chain's count carries only offers that can no longer land (their epoch is
 * stored on chain already), so the device's next offer is signed at the chain's count; and nothing
 * of the device waits in the mempool.
 */
export function assertNoNonceGap(r: Rig): void {
  const next = BigInt(r.dev.status().nextNonce);
  const mined = r.chain.nonceOf(r.device);
  const stuck = r.chain.stuck(r.device).map((t) => t.nonce);
  const stored = r.chain.channel(r.device).epoch;
  const live = r.chain.wraps().filter((w) => w.nonce >= mined && w.epoch > stored);
  if (mined > next || stuck.length > 0 || live.length > 0) {
    throw new Error(`nonce gap: chain count ${mined}, device next nonce ${next}, stuck in the mempool ${stuck.join(',') || 'none'}, live offers above the count ${live.map((w) => w.nonce).join(',') || 'none'}`);
  }
}
