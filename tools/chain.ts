/**
 * Chain access for the CLI (viem): connecting with clear errors, reading the KeyExchange views (§4), and
 * sending the operator's and receiver's transactions — always simulated first, so a revert (NotAuthorized,
 * NotEnrolled…) or missing funds is reported before anything is broadcast.
 */
import {
  BaseError, ContractFunctionRevertedError, createPublicClient, createWalletClient, formatEther, http,
  type Account, type Address, type Chain, type Hex, type PublicClient, type Transport, type WalletClient,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { keyExchangeAbi } from '../contracts/build/KeyExchange.js';
import { chainFor, probeViews } from '../hosts/chain/deploy.js';
import { chainError } from './errors.js';

export { keyExchangeAbi };
export const CHANNEL_STATES = ['none', 'offered', 'accepted', 'rejected'] as const;

export interface Chainish {
  rpcUrl: string;
  chainId: number;
  chain: Chain;
  pc: PublicClient<Transport, Chain>;
}

const isLoopback = (u: string) => /^https?:\/\/(127\.0\.0\.1|localhost|\[::1\])[:/]/.test(u);

/** Turns a viem error into a one-line reason (the custom error's name for a revert). */
export function reason(e: unknown): string {
  if (e instanceof BaseError) {
    const revert = e.walk((x) => x instanceof ContractFunctionRevertedError) as ContractFunctionRevertedError | null;
    if (revert?.data?.errorName) return `reverted with ${revert.data.errorName}`;
    if (revert?.reason) return `reverted: ${revert.reason}`;
    const insufficient = e.walk((x) => (x as BaseError).name === 'InsufficientFundsError');
    if (insufficient) return 'insufficient funds for gas × price + value';
    // A transport failure: name the OS error (ECONNREFUSED, ENOTFOUND…) rather than "HTTP request failed".
    let root: unknown = e;
    while ((root as { cause?: unknown })?.cause) root = (root as { cause: unknown }).cause;
    const code = (root as { code?: unknown })?.code;
    const detail = typeof code === 'string' ? code : root !== e && root instanceof Error ? root.message : undefined;
    return detail ? `${e.shortMessage.replace(/\.$/, '')} (${detail})` : e.shortMessage;
  }
  return (e as Error)?.message ?? String(e);
}

/** Connects and checks the node answers (and has the expected chain id); exit 4 with the URL otherwise. */
export async function connectChain(rpcUrl: string, expectChainId?: number): Promise<Chainish> {
  const probe = createPublicClient({ transport: http(rpcUrl, { retryCount: 1, timeout: 8000 }) });
  let id: number;
  try {
    id = await probe.getChainId();
  } catch (e) {
    throw chainError('chain-unreachable', `chain unreachable at ${rpcUrl}: ${reason(e)}`, 'check --rpc-url / IOTKX_RPC_URL, or start one with `iotkx chain up` or `npm start`');
  }
  if (expectChainId !== undefined && id !== expectChainId) {
    throw chainError('wrong-chain', `the node at ${rpcUrl} is chain ${id}, the configuration says ${expectChainId}`);
  }
  const chain = chainFor(rpcUrl, id);
  const pc = createPublicClient({ chain, cacheTime: 0, pollingInterval: isLoopback(rpcUrl) ? 100 : 2000, transport: http(rpcUrl, { retryCount: 2, timeout: 15_000 }) });
  return { rpcUrl, chainId: id, chain, pc };
}

/**
 * Checks there is a KeyExchange at `contract` whose code this node can run: offerTtlBlocks() answers, and so do
 * the views hosts read (probeViews: bytecode for a newer EVM than the chain's deploys but fails at its first call).
 */
export async function checkContract(c: Chainish, contract: Address): Promise<number> {
  const code = await c.pc.getCode({ address: contract }).catch((e) => { throw chainError('chain-unreachable', `reading ${contract}: ${reason(e)}`); });
  if (!code || code === '0x') throw chainError('no-contract', `no contract at ${contract} on chain ${c.chainId}`, 'deploy one with `iotkx chain deploy`, or fix --contract');
  let ttl: number;
  try {
    ttl = Number(await c.pc.readContract({ address: contract, abi: keyExchangeAbi, functionName: 'offerTtlBlocks' }));
  } catch (e) {
    await probeViews(c.pc, contract).catch((p: Error) => {
      if (/cannot run/.test(p.message)) throw chainError('evm-unsupported', p.message);
    });
    throw chainError('not-keyexchange', `the contract at ${contract} is not a KeyExchange (${reason(e)})`);
  }
  await probeViews(c.pc, contract).catch((p: Error) => {
    throw chainError(/cannot run/.test(p.message) ? 'evm-unsupported' : 'not-keyexchange', p.message);
  });
  return ttl;
}

export interface ChannelInfo {
  enrolled: boolean;
  epoch: bigint;
  state: (typeof CHANNEL_STATES)[number];
  keyVersion: number;
  offeredAt: bigint;
  acceptedAt: bigint;
}

export async function readChannel(c: Chainish, contract: Address, device: Address, receiver: Address): Promise<ChannelInfo> {
  const [enrolled, epoch, state, keyVersion, , offeredAt, acceptedAt] = await c.pc.readContract({
    address: contract, abi: keyExchangeAbi, functionName: 'channel', args: [device, receiver],
  });
  return { enrolled, epoch, state: CHANNEL_STATES[state] ?? 'none', keyVersion, offeredAt, acceptedAt };
}

export async function receiverKeyVersion(c: Chainish, contract: Address, receiver: Address): Promise<{ version: number; encKey: Hex }> {
  const [encKey, version] = await c.pc.readContract({ address: contract, abi: keyExchangeAbi, functionName: 'receiverKey', args: [receiver] });
  return { version, encKey };
}

export async function isOperator(c: Chainish, contract: Address, receiver: Address, operator: Address): Promise<boolean> {
  return c.pc.readContract({ address: contract, abi: keyExchangeAbi, functionName: 'isOperator', args: [receiver, operator] });
}

export interface Signer {
  account: Account;
  wc: WalletClient<Transport, Chain, Account>;
}

export function signer(c: Chainish, key: Hex): Signer {
  const account = privateKeyToAccount(key);
  return { account, wc: createWalletClient({ chain: c.chain, account, transport: http(c.rpcUrl, { retryCount: 2, timeout: 15_000 }) }) };
}

type Fn = 'enroll' | 'revoke' | 'setOperator' | 'setReceiverKey';

/** Dry-runs a contract call as `from` (eth_call): throws exit 4 with the custom error's name. Returns the gas estimate. */
export async function simulate(c: Chainish, contract: Address, from: Address, functionName: Fn, args: readonly unknown[]): Promise<bigint> {
  try {
    await c.pc.simulateContract({ address: contract, abi: keyExchangeAbi, functionName, args, account: from } as any);
    return await c.pc.estimateContractGas({ address: contract, abi: keyExchangeAbi, functionName, args, account: from } as any);
  } catch (e) {
    throw chainError('would-revert', `${functionName} would fail: ${reason(e)}`);
  }
}

/** Simulates, sends and waits for the receipt of a contract call. */
export async function sendContract(c: Chainish, s: Signer, contract: Address, functionName: Fn, args: readonly unknown[]): Promise<Hex> {
  await simulate(c, contract, s.account.address, functionName, args);
  let hash: Hex;
  try {
    hash = await s.wc.writeContract({ address: contract, abi: keyExchangeAbi, functionName, args } as any);
  } catch (e) {
    throw chainError('send-failed', `${functionName} not sent: ${reason(e)}`);
  }
  const receipt = await c.pc.waitForTransactionReceipt({ hash, timeout: 120_000 }).catch((e) => {
    throw chainError('no-receipt', `${functionName} sent (${hash}) but no receipt yet: ${reason(e)}`, 'check it later with `iotkx status`');
  });
  if (receipt.status !== 'success') throw chainError('reverted', `${functionName} reverted in ${hash}`);
  return hash;
}

/** Sends `value` wei to `to` and waits for the receipt. */
export async function sendValue(c: Chainish, s: Signer, to: Address, value: bigint): Promise<Hex> {
  let hash: Hex;
  try {
    hash = await s.wc.sendTransaction({ to, value });
  } catch (e) {
    throw chainError('send-failed', `funding ${to} not sent: ${reason(e)}`);
  }
  const receipt = await c.pc.waitForTransactionReceipt({ hash, timeout: 120_000 }).catch((e) => {
    throw chainError('no-receipt', `funding sent (${hash}) but no receipt yet: ${reason(e)}`);
  });
  if (receipt.status !== 'success') throw chainError('reverted', `funding ${to} failed in ${hash}`);
  return hash;
}

/* ---------- fees and the device's budget ---------- */

/** Default gas limit of an offer: twice the measured ≤ 60k of offerKey at epoch 1 (test/contract/abi.test.ts gas targets). */
export const DEFAULT_OFFER_GAS = 120_000n;

export interface FeePlan {
  baseFee: bigint;
  /** Caps provisioned into the device (§5.2). */
  maxFeePerGas: bigint;
  maxPriorityFeePerGas: bigint;
  offerGas: bigint;
  exchanges: number;
  /** exchanges × offerGas × maxFeePerGas: what N offers cost at worst within the caps. */
  budget: bigint;
}

/**
 * The device's spending caps and funding (documented in README.md):
 *   tip cap   = max(node's eth_maxPriorityFeePerGas, 1 gwei) unless given;
 *   fee cap   = 2 × current base fee + tip cap unless given (the usual EIP-1559 headroom: the base fee can
 *               rise 12.5 % a block, so 2× survives six full blocks in a row);
 *   budget    = N × offerGas × fee cap  (N exchanges, each one offer transaction; §5.3 retries of an epoch
 *               replace the same nonce, so only one of them is ever paid for).
 * The device is topped up to the budget (nothing is sent if its balance already covers it).
 */
export async function feePlan(c: Chainish, o: { exchanges: number; offerGas?: bigint; maxFeePerGas?: bigint; maxPriorityFeePerGas?: bigint }): Promise<FeePlan> {
  const block = await c.pc.getBlock({ blockTag: 'latest' });
  const baseFee = block.baseFeePerGas ?? (await c.pc.getGasPrice());
  let tip = o.maxPriorityFeePerGas;
  if (tip === undefined) {
    const fromNode = await c.pc.estimateMaxPriorityFeePerGas().catch(() => 0n);
    tip = fromNode > 1_000_000_000n ? fromNode : 1_000_000_000n;
  }
  const maxFeePerGas = o.maxFeePerGas ?? 2n * baseFee + tip;
  if (tip > maxFeePerGas) throw chainError('bad-fees', `max priority fee ${tip} exceeds max fee ${maxFeePerGas}`);
  const offerGas = o.offerGas ?? DEFAULT_OFFER_GAS;
  return { baseFee, maxFeePerGas, maxPriorityFeePerGas: tip, offerGas, exchanges: o.exchanges, budget: BigInt(o.exchanges) * offerGas * maxFeePerGas };
}

export const eth = (wei: bigint) => `${formatEther(wei)} ETH`;

/** Seconds per block from the last `n` blocks' timestamps (≥ 1 s resolution), else undefined. */
export async function measureBlockTime(c: Chainish, n = 10): Promise<number | undefined> {
  const head = await c.pc.getBlock({ blockTag: 'latest' });
  if (head.number < BigInt(n)) return undefined;
  const old = await c.pc.getBlock({ blockNumber: head.number - BigInt(n) });
  const dt = Number(head.timestamp - old.timestamp);
  if (dt <= 0) return undefined;
  return Math.round((dt / n) * 100) / 100;
}
