/**
 * Fees for an offer from the relay's fee data, clamped to the provisioned caps
 * (PROTOCOL.md §5.3). The quotes are relay assertions: an absurd quote is cut to
 * the cap, a missing one falls back to the cap, so the device never pays more than
 * `offerGas × maxFeePerGas` per transaction whatever the relay says.
 *
 * EIP-1559 vs legacy: decided from eth_feeHistory (a few hundred bytes) rather than
 * eth_getBlockByNumber, whose answer lists every transaction hash of the block and
 * exceeds the device's 8 KiB response limit on any busy chain. A chain whose next
 * base fee is absent or 0 gets a legacy EIP-155 transaction priced by eth_gasPrice
 * (a legacy transaction is valid on EIP-1559 chains too).
 */
import type { RpcClient } from '../rpc.js';
import type { DeviceConfig } from './config.js';

export type Fees =
  | { type: 'eip1559'; maxFeePerGas: bigint; maxPriorityFeePerGas: bigint }
  | { type: 'legacy'; gasPrice: bigint };

const min = (a: bigint, b: bigint) => (a < b ? a : b);
const max = (a: bigint, b: bigint) => (a > b ? a : b);

/** Headroom over the next base fee: two full blocks of +12.5% (EIP-1559 max change per block). */
const BASE_FEE_MULTIPLIER = 2n;

/** Clamp any fee set to the caps (priority ≤ max fee ≤ cap). */
export function clampFees(f: Fees, c: DeviceConfig): Fees {
  if (f.type === 'legacy') return { type: 'legacy', gasPrice: min(max(f.gasPrice, 0n), c.maxFeePerGas) };
  const maxFee = min(max(f.maxFeePerGas, 0n), c.maxFeePerGas);
  const prio = min(min(max(f.maxPriorityFeePerGas, 0n), c.maxPriorityFeePerGas), maxFee);
  return { type: 'eip1559', maxFeePerGas: maxFee, maxPriorityFeePerGas: prio };
}

/** Ask the relay and clamp. Network errors propagate (the engine retries later). */
export async function quoteFees(rpc: RpcClient, c: DeviceConfig): Promise<Fees> {
  let baseFee = 0n;
  let rewardHint: bigint | undefined;
  try {
    const h = await rpc.feeHistory(1, 'latest', [50]);
    // baseFeePerGas has blockCount + 1 entries; the last is the next block's.
    baseFee = h.baseFeePerGas.length > 0 ? h.baseFeePerGas[h.baseFeePerGas.length - 1] : 0n;
    rewardHint = h.reward?.[0]?.[0];
  } catch (e) {
    if ((e as { code?: string }).code !== 'rpc-error') throw e; // a node without feeHistory: legacy
  }
  if (baseFee === 0n) {
    const gp = await rpc.gasPrice();
    return clampFees({ type: 'legacy', gasPrice: gp }, c);
  }
  let prio: bigint;
  try {
    prio = await rpc.maxPriorityFeePerGas();
  } catch (e) {
    if ((e as { code?: string }).code !== 'rpc-error') throw e;
    prio = rewardHint ?? c.maxPriorityFeePerGas;
  }
  prio = min(prio, c.maxPriorityFeePerGas);
  return clampFees({ type: 'eip1559', maxFeePerGas: baseFee * BASE_FEE_MULTIPLIER + prio, maxPriorityFeePerGas: prio }, c);
}

/**
 * Fees for replacing a stuck transaction with the same nonce: at least +12.5% on
 * both fields (geth's txpool requires +10%), the fresh quote if higher, all within
 * the caps. Returns undefined when the caps leave no room for a valid replacement.
 */
export function bumpFees(old: Fees, quote: Fees, c: DeviceConfig): Fees | undefined {
  const up = (x: bigint) => x + x / 8n + 1n;
  if (old.type === 'legacy' || quote.type === 'legacy') {
    const o = old.type === 'legacy' ? old.gasPrice : old.maxFeePerGas;
    const q = quote.type === 'legacy' ? quote.gasPrice : quote.maxFeePerGas;
    const gp = min(max(up(o), q), c.maxFeePerGas);
    return gp >= o + o / 10n + (o === 0n ? 1n : 0n) && old.type === 'legacy' ? { type: 'legacy', gasPrice: gp } : undefined;
  }
  const maxFee = min(max(up(old.maxFeePerGas), quote.maxFeePerGas), c.maxFeePerGas);
  const prio = min(min(max(up(old.maxPriorityFeePerGas), quote.maxPriorityFeePerGas), c.maxPriorityFeePerGas), maxFee);
  const enough = (n: bigint, o: bigint) => n >= o + o / 10n && n > o;
  return enough(maxFee, old.maxFeePerGas) && enough(prio, old.maxPriorityFeePerGas)
    ? { type: 'eip1559', maxFeePerGas: maxFee, maxPriorityFeePerGas: prio } : undefined;
}
