// A fresh anvil + KeyExchange for one contract test file, driven with viem (the independent implementation).
import {
  BaseError,
  ContractFunctionRevertedError,
  decodeErrorResult,
  encodeFunctionData,
  hexToBytes,
  bytesToHex,
  parseEventLogs,
  type Address,
  type Hex,
  type PrivateKeyAccount,
  type TransactionReceipt,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { build } from '../../contracts/build.js';
import { loadArtifact, type KeyExchangeAbi } from '../../contracts/artifact.js';
import { startAnvil, type Anvil } from '../../hosts/chain/anvil.js';
import { connect, deployKeyExchange, type ChainSession } from '../../hosts/chain/deploy.js';

export interface Actor {
  name: string;
  account: PrivateKeyAccount;
  address: Address;
  session: ChainSession;
}

export interface TxResult {
  receipt: TransactionReceipt;
  /** Custom error name when the transaction reverted. */
  error?: string;
  events: ReturnType<typeof parseEventLogs<KeyExchangeAbi>>;
}

export interface ChainEnv {
  anvil: Anvil;
  abi: KeyExchangeAbi;
  address: Address;
  chainId: number;
  deployBlock: bigint;
  ttl: number;
  actors: Record<string, Actor>;
  pub: ChainSession['publicClient'];
  /** Sends a real transaction with a fixed gas limit (no estimate), waits, decodes a revert by name. */
  tx(from: Actor, functionName: string, args: readonly unknown[]): Promise<TxResult>;
  /** eth_call of a view. */
  read<T = unknown>(functionName: string, args?: readonly unknown[]): Promise<T>;
  /** simulateContract; returns the custom error name, or undefined if the call would succeed. */
  simulate(from: Actor, functionName: string, args: readonly unknown[]): Promise<string | undefined>;
  mine(blocks: number): Promise<void>;
  blockNumber(): Promise<bigint>;
  stop(): Promise<void>;
}

/** Walks a viem error chain to the decoded custom error name. */
export function revertName(err: unknown): string | undefined {
  if (err instanceof BaseError) {
    const r = err.walk((e) => e instanceof ContractFunctionRevertedError);
    if (r instanceof ContractFunctionRevertedError) return r.data?.errorName ?? `raw:${r.raw ?? r.reason}`;
  }
  return undefined;
}

/** `hardfork`: anvil's `--hardfork` (e.g. 'shanghai', 'paris'); absent = anvil's latest. */
export async function setupChain(names: string[], ttl = 20, chainId = 31337, opts: { hardfork?: string } = {}): Promise<ChainEnv> {
  build(); // no-op when contracts/build is up to date
  const anvil = await startAnvil({ chainId, accounts: Math.max(names.length + 1, 10), hardfork: opts.hardfork });
  const abi = loadArtifact().abi;
  const deployer = await connect(anvil.rpcUrl, anvil.accounts[0].privateKey, chainId);
  const dep = await deployKeyExchange(deployer, ttl);
  const actors: Record<string, Actor> = {};
  for (const [i, name] of names.entries()) {
    const key = anvil.accounts[i + 1].privateKey;
    const account = privateKeyToAccount(key);
    actors[name] = { name, account, address: account.address, session: await connect(anvil.rpcUrl, key, chainId) };
  }
  const pub = deployer.publicClient;
  const address = dep.address;
  const env: ChainEnv = {
    anvil, abi, address, chainId, deployBlock: BigInt(dep.block), ttl, actors, pub,
    async tx(from, functionName, args) {
      const data = encodeFunctionData({ abi, functionName, args } as never);
      const hash = await from.session.walletClient.sendTransaction({ to: address, data, gas: 300_000n });
      const receipt = await pub.waitForTransactionReceipt({ hash });
      let error: string | undefined;
      if (receipt.status !== 'success') {
        const trace = await pub.request({
          method: 'debug_traceTransaction' as never,
          params: [hash, { tracer: 'callTracer' }] as never,
        }) as { output?: Hex };
        try {
          error = decodeErrorResult({ abi, data: trace.output ?? '0x' }).errorName;
        } catch {
          error = `undecodable:${trace.output}`;
        }
      }
      return { receipt, error, events: parseEventLogs({ abi, logs: receipt.logs }) };
    },
    async read(functionName, args = []) {
      return pub.readContract({ address, abi, functionName, args } as never) as never;
    },
    async simulate(from, functionName, args) {
      try {
        await pub.simulateContract({ address, abi, functionName, args, account: from.account } as never);
        return undefined;
      } catch (e) {
        const name = revertName(e);
        if (!name) throw e;
        return name;
      }
    },
    async mine(blocks) {
      await pub.request({ method: 'anvil_mine' as never, params: [`0x${blocks.toString(16)}`] as never });
    },
    blockNumber: () => pub.getBlockNumber({ cacheTime: 0 }),
    stop: () => anvil.stop(),
  };
  return env;
}

/** The same signature with s' = n − s and v flipped: valid for ecrecover, refused by the contract (low-s). */
export function highS(sig: Hex): Hex {
  const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n; // secp256k1 order (SEC 2)
  const b = hexToBytes(sig);
  const s = BigInt(bytesToHex(b.slice(32, 64)));
  const out = new Uint8Array(65);
  out.set(b.slice(0, 32));
  out.set(hexToBytes(`0x${(N - s).toString(16).padStart(64, '0')}`), 32);
  out[64] = b[64] === 27 ? 28 : 27;
  return bytesToHex(out);
}
