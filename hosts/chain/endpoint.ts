// What an EVM JSON-RPC endpoint must offer to run iotkx (README "Using another node"), checked from the outside:
// an EVM at London or later (EIP-1559 fees; contracts/build.ts compiles for London), blocks that keep coming
// (or the receiver's depth-0 fallback), and every method the relay forwards to devices (PROTOCOL.md §8).
// `iotkx chain status` prints it.
import type { PublicClient } from 'viem';
import { ALLOWED_METHODS } from '../relay/rpc-policy.js';
import { evmFeatures } from './deploy.js';

export interface EndpointReport {
  /** Newest EVM the answers show: 'cancun+' (MCOPY), 'shanghai' (PUSH0), 'london' (base fee, no PUSH0), 'pre-london'. */
  evm: 'cancun+' | 'shanghai' | 'london' | 'pre-london' | 'unknown';
  baseFee: boolean;
  push0?: boolean;
  mcopy?: boolean;
  /** Seconds since the head block's timestamp (node clock against ours). */
  headAgeSec: number;
  /** Methods the relay forwards that the node does not have. */
  missingMethods: string[];
  /** Why the endpoint cannot run iotkx (empty = it can). */
  problems: string[];
  /** Things to know that do not stop it. */
  notes: string[];
}

const ZERO = '0x0000000000000000000000000000000000000000';
const DEAD = '0x000000000000000000000000000000000000dEaD';

/** Harmless parameters for each forwarded method: each call must not answer "method not found". */
const PROBES: Record<string, unknown[]> = {
  eth_chainId: [],
  eth_blockNumber: [],
  eth_getBlockByNumber: ['latest', false],
  eth_getTransactionCount: [DEAD, 'latest'],
  eth_getBalance: [DEAD, 'latest'],
  eth_gasPrice: [],
  eth_maxPriorityFeePerGas: [],
  eth_feeHistory: ['0x1', 'latest', [50]],
  eth_estimateGas: [{ from: ZERO, to: DEAD, value: '0x0' }],
  eth_call: [{ to: DEAD, data: '0x' }, 'latest'],
  eth_sendRawTransaction: ['0x00'], // not a transaction: any answer but "no such method" will do
  eth_getTransactionReceipt: [`0x${'00'.repeat(32)}`],
  eth_getLogs: [{ fromBlock: 'latest', toBlock: 'latest', address: DEAD }],
};

const NO_METHOD = /method .*(not found|not supported|does not exist|not available|unsupported)|unsupported method|unknown method|not implemented/i;

function isMissing(e: unknown): boolean {
  let cur: unknown = e;
  for (let i = 0; cur && i < 8; i++) {
    const x = cur as { code?: unknown; message?: unknown; details?: unknown; cause?: unknown };
    if (x.code === -32601) return true;
    if (typeof x.details === 'string' && NO_METHOD.test(x.details)) return true;
    cur = x.cause;
  }
  return false;
}

export async function checkEndpoint(pc: Pick<PublicClient, 'request' | 'call' | 'getBlock'>, idleDepthZeroSec = 30): Promise<EndpointReport> {
  const block = await pc.getBlock({ blockTag: 'latest' });
  const baseFee = block.baseFeePerGas !== null && block.baseFeePerGas !== undefined;
  const { push0, mcopy } = await evmFeatures(pc);
  const evm = !baseFee ? 'pre-london' : mcopy ? 'cancun+' : push0 ? 'shanghai' : push0 === false ? 'london' : 'unknown';
  const headAgeSec = Math.max(0, Math.floor(Date.now() / 1000 - Number(block.timestamp)));
  const missingMethods: string[] = [];
  for (const m of ALLOWED_METHODS) {
    try {
      await pc.request({ method: m as never, params: (PROBES[m] ?? []) as never });
    } catch (e) {
      if (isMissing(e)) missingMethods.push(m);
    }
  }
  const problems: string[] = [];
  const notes: string[] = [];
  if (!baseFee) problems.push('no base fee in the head block: the chain is older than London (EIP-1559); devices sign type-2 transactions and the contract is compiled for London');
  if (missingMethods.length) problems.push(`the node lacks methods the relay forwards to devices: ${missingMethods.join(', ')}`);
  if (evm === 'unknown') notes.push('could not tell the EVM version (the node refused eth_call without a target)');
  if (headAgeSec > 60) {
    notes.push(`no block for ${headAgeSec} s: the node may produce blocks only when a transaction arrives (automine); ` +
      `the receiver then acts at depth 0 after ${idleDepthZeroSec} s without a block (--idle-depth0-after), or give the node a block time`);
  }
  return { evm, baseFee, push0, mcopy, headAgeSec, missingMethods, problems, notes };
}
