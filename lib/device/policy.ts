/**
 * "Verify what you sign": the last check before every device signature. The
 * engine builds the transaction, then this refuses anything a bug or a lying
 * relay could have bent: only `offerKey` to the pinned receiver, on the pinned
 * contract and chain id, with no value, a gas limit within offerGas and fees
 * within the provisioned caps (PROTOCOL.md §1 honest bound, §5.2, §5.3).
 */
import { decodeParams } from '../abi.js';
import { equalBytes, hexToBytes } from '../bytes.js';
import { IotkxError } from '../errors.js';
import { FUNCTIONS } from '../keyexchange-abi.js';
import type { Transaction } from '../tx.js';
import type { DeviceConfig } from './config.js';

const OFFER_SELECTOR = hexToBytes(FUNCTIONS.offerKey.selector);

function refuse(why: string): never {
  throw new IotkxError('policy-refused', `policy: ${why}`);
}

export function assertSignable(tx: Transaction, config: DeviceConfig): void {
  if (tx.chainId !== config.chainId) refuse(`chain id ${tx.chainId} is not the provisioned ${config.chainId}`);
  if (!(tx.to instanceof Uint8Array) || !equalBytes(tx.to, config.contract)) refuse('destination is not the pinned contract');
  if (tx.value !== 0n) refuse('value must be 0');
  if (tx.gas > config.offerGas || tx.gas <= 0n) refuse(`gas ${tx.gas} outside (0, offerGas ${config.offerGas}]`);
  if (tx.type === 'eip1559') {
    if (tx.maxFeePerGas > config.maxFeePerGas) refuse(`maxFeePerGas ${tx.maxFeePerGas} above the cap`);
    if (tx.maxPriorityFeePerGas > config.maxPriorityFeePerGas) refuse(`maxPriorityFeePerGas ${tx.maxPriorityFeePerGas} above the cap`);
    if (tx.maxPriorityFeePerGas > tx.maxFeePerGas) refuse('priority fee above max fee');
  } else if (tx.type === 'legacy') {
    if (tx.gasPrice > config.maxFeePerGas) refuse(`gasPrice ${tx.gasPrice} above the cap`);
  } else refuse('unknown transaction type');
  const d = tx.data;
  if (!(d instanceof Uint8Array) || d.length < 4 || !equalBytes(d.subarray(0, 4), OFFER_SELECTOR)) refuse('calldata is not offerKey');
  let args;
  try {
    args = decodeParams(FUNCTIONS.offerKey.inputs, d.subarray(4));
  } catch {
    refuse('offerKey calldata does not decode');
  }
  if (!equalBytes(args[0] as Uint8Array, config.receiver)) refuse('offerKey is not addressed to the pinned receiver');
  if ((args[1] as bigint) < 1n) refuse('epoch 0');
}
