// Deploys KeyExchange and funds accounts on any EVM JSON-RPC node (the embedded anvil or another chain),
// and keeps a deployment record on disk so the relay, receiver and tools find the contract.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  createPublicClient,
  createWalletClient,
  defineChain,
  getAddress,
  http,
  isAddress,
  type Account,
  type Address,
  type Chain,
  type Hex,
  type PublicClient,
  type WalletClient,
  type Transport,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { loadArtifact } from '../../contracts/artifact.js';
import { EVM_VERSION as EVM_TARGET } from '../../contracts/build.js';

export { EVM_TARGET };

export const DEFAULT_DEPLOYMENT_PATH = '.iotkx/deployment.json';

/** What a host needs to find the contract again (§5.2: devices pin chainId and address). */
export interface DeploymentRecord {
  chainId: number;
  address: Address;
  block: number;
  offerTtlBlocks: number;
  rpcUrl: string;
}

export interface ChainSession {
  rpcUrl: string;
  chain: Chain;
  account: Account;
  publicClient: PublicClient<Transport, Chain>;
  walletClient: WalletClient<Transport, Chain, Account>;
}

/** A viem chain description for a node known only by its URL and id. */
export function chainFor(rpcUrl: string, chainId: number): Chain {
  return defineChain({
    id: chainId,
    name: `iotkx-${chainId}`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  });
}

/** Receipt polling interval: viem's 4 s default suits remote chains; a loopback node answers at once. */
function pollingIntervalFor(rpcUrl: string): number | undefined {
  return /^https?:\/\/(127\.0\.0\.1|localhost|\[::1\])[:/]/.test(rpcUrl) ? 50 : undefined;
}

/** Connects with `deployerKey`; the chain id is asked of the node unless given. */
export async function connect(rpcUrl: string, deployerKey: Hex, chainId?: number): Promise<ChainSession> {
  const id = chainId ?? (await createPublicClient({ transport: http(rpcUrl) }).getChainId());
  const chain = chainFor(rpcUrl, id);
  const account = privateKeyToAccount(deployerKey);
  const transport = http(rpcUrl);
  const pollingInterval = pollingIntervalFor(rpcUrl);
  return {
    rpcUrl,
    chain,
    account,
    publicClient: createPublicClient({ chain, transport, pollingInterval }),
    walletClient: createWalletClient({ chain, transport, account, pollingInterval }),
  };
}

/** Connects to an existing node (any EVM chain) with the deployer key from IOTKX_DEPLOYER_KEY. */
export async function attach(
  rpcUrl: string | undefined = process.env.IOTKX_RPC_URL,
  deployerKey: string | undefined = process.env.IOTKX_DEPLOYER_KEY,
): Promise<ChainSession> {
  if (!rpcUrl) throw new Error('no RPC URL: pass one or set IOTKX_RPC_URL');
  if (!deployerKey || !/^0x[0-9a-fA-F]{64}$/.test(deployerKey)) {
    throw new Error('IOTKX_DEPLOYER_KEY must hold the deployer private key as 0x + 64 hex digits');
  }
  return connect(rpcUrl, deployerKey as Hex);
}

/**
 * Deploys KeyExchange(offerTtlBlocks), waits for its receipt, then checks that the node can run the deployed
 * code (probeViews): a node whose EVM lacks an opcode of the bytecode is reported here, with the fix.
 * `code` replaces the built artifact (tests deploy variants compiled for another EVM).
 */
export async function deployKeyExchange(
  s: ChainSession, offerTtlBlocks: number | bigint, code?: { abi: readonly unknown[]; bytecode: Hex },
): Promise<DeploymentRecord> {
  const { abi, bytecode } = code ?? loadArtifact();
  const hash = await s.walletClient.deployContract({ abi, bytecode, args: [BigInt(offerTtlBlocks)] } as Parameters<typeof s.walletClient.deployContract>[0]);
  const receipt = await s.publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== 'success' || !receipt.contractAddress) {
    throw new Error(`KeyExchange deployment failed in tx ${hash}`);
  }
  const address = getAddress(receipt.contractAddress);
  await probeViews(s.publicClient, address);
  return {
    chainId: s.chain.id,
    address,
    block: Number(receipt.blockNumber),
    offerTtlBlocks: Number(offerTtlBlocks),
    rpcUrl: s.rpcUrl,
  };
}

/**
 * Which of the opcodes a newer solc target emits the node's EVM runs, found by eth_call of tiny creation codes
 * (no `to`, nothing deployed): PUSH0 (EIP-3855, Shanghai) and MCOPY (EIP-5656, Cancun). `undefined` when the
 * node's answer is neither success nor an opcode error (it refuses calls without `to`, say).
 */
export async function evmFeatures(publicClient: Pick<PublicClient, 'call'>): Promise<{ push0?: boolean; mcopy?: boolean }> {
  const runs = async (data: Hex): Promise<boolean | undefined> => {
    try {
      await publicClient.call({ data });
      return true;
    } catch (e) {
      const m = e as { details?: string; shortMessage?: string; message?: string };
      return UNSUPPORTED_OPCODE.test(`${m.details ?? ''} ${m.shortMessage ?? ''} ${m.message ?? ''}`) ? false : undefined;
    }
  };
  const [push0, mcopy] = await Promise.all([
    runs('0x5f5ff3'), // PUSH0 PUSH0 RETURN
    runs('0x6000600060005e60006000f3'), // PUSH1 0 ×3, MCOPY, PUSH1 0 ×2, RETURN
  ]);
  return { push0, mcopy };
}

/** Words a node uses for an opcode its EVM does not have (anvil/revm, geth, ganache, Hardhat EDR, Besu, Nethermind). */
const UNSUPPORTED_OPCODE = /invalid opcode|opcode.*(not|un)(defined|supported|activated|known)|not activated|InvalidFEOpcode|OpcodeNotFound|NotActivated|undefined instruction|bad instruction/i;

/**
 * Calls the contract's views that touch every code path a host reads (the dispatcher, `offerTtlBlocks`,
 * `receiverKey` with its bytes copies, `channel`, `isOperator`) at the latest block. Throws an error naming the
 * cause and the fix when the node cannot run the code: most often bytecode compiled for a newer EVM than the
 * chain runs (PUSH0 needs Shanghai, MCOPY Cancun), which deploys fine and then fails at the first call.
 */
export async function probeViews(publicClient: Pick<PublicClient, 'readContract'>, address: Address): Promise<void> {
  const abi = loadArtifact().abi;
  const someone = '0x000000000000000000000000000000000000dEaD' as Address;
  const calls = [
    ['offerTtlBlocks', []],
    ['receiverKey', [someone]],
    ['channel', [someone, someone]],
    ['isOperator', [someone, someone]],
  ] as const;
  for (const [functionName, args] of calls) {
    try {
      await publicClient.readContract({ address, abi, functionName, args } as Parameters<typeof publicClient.readContract>[0]);
    } catch (e) {
      const msg = (e as { shortMessage?: string; details?: string; message?: string });
      const text = `${msg.details ?? ''} ${msg.shortMessage ?? ''} ${msg.message ?? ''}`;
      const first = (msg.details || msg.shortMessage || msg.message || String(e)).split('\n')[0];
      if (UNSUPPORTED_OPCODE.test(text)) {
        throw new Error(
          `the node cannot run the KeyExchange code at ${address}: ${functionName}() failed with "${first}". ` +
            `The bytecode uses an opcode this chain's EVM does not have (PUSH0 needs Shanghai, MCOPY Cancun). ` +
            `Compile for an EVM the chain runs (solc evmVersion; contracts/build.ts targets '${EVM_TARGET}': an older ` +
            `build or a copy compiled elsewhere may target a newer one), rebuild with \`npm run build:contracts -- --force\` ` +
            `and deploy again; the chain must be at hardfork ${EVM_TARGET} or later.`,
        );
      }
      throw new Error(`the contract at ${address} does not answer the view ${functionName}(): ${first}`);
    }
  }
}

/** Sends `amount` wei from the session's account to `to` and waits for the receipt. */
export async function fund(s: ChainSession, to: Address, amount: bigint): Promise<Hex> {
  const hash = await s.walletClient.sendTransaction({ to, value: amount });
  const receipt = await s.publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== 'success') throw new Error(`funding ${to} failed in tx ${hash}`);
  return hash;
}

/**
 * Checks that the record's node has the same chain id and a KeyExchange with the same TTL at the address, and
 * that the node can run its code (probeViews).
 */
export async function verifyDeployment(s: Pick<ChainSession, 'publicClient'>, rec: DeploymentRecord): Promise<void> {
  const id = await s.publicClient.getChainId();
  if (id !== rec.chainId) throw new Error(`node reports chain id ${id}, deployment record says ${rec.chainId}`);
  const code = await s.publicClient.getCode({ address: rec.address });
  if (!code || code === '0x') throw new Error(`no contract at ${rec.address} on chain ${rec.chainId}`);
  let ttl: bigint;
  try {
    ttl = await s.publicClient.readContract({ address: rec.address, abi: loadArtifact().abi, functionName: 'offerTtlBlocks' });
  } catch {
    await probeViews(s.publicClient, rec.address); // names the cause (an opcode the chain lacks) if that is it
    throw new Error(`the contract at ${rec.address} does not answer offerTtlBlocks(): not a KeyExchange`);
  }
  if (Number(ttl) !== rec.offerTtlBlocks) {
    throw new Error(`contract at ${rec.address} has offerTtlBlocks ${ttl}, record says ${rec.offerTtlBlocks}`);
  }
  await probeViews(s.publicClient, rec.address);
}

export function writeDeployment(rec: DeploymentRecord, path = DEFAULT_DEPLOYMENT_PATH): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(rec, null, 2) + '\n');
}

/** Reads and validates a record written by writeDeployment. */
export function readDeployment(path = DEFAULT_DEPLOYMENT_PATH): DeploymentRecord {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`cannot read deployment record ${path}: ${(e as Error).message}`);
  }
  const r = raw as Partial<DeploymentRecord>;
  const ok =
    Number.isSafeInteger(r.chainId) && r.chainId! > 0 &&
    typeof r.address === 'string' && isAddress(r.address) &&
    Number.isSafeInteger(r.block) && r.block! >= 0 &&
    Number.isSafeInteger(r.offerTtlBlocks) && r.offerTtlBlocks! >= 0 &&
    typeof r.rpcUrl === 'string';
  if (!ok) throw new Error(`deployment record ${path} is malformed`);
  return { chainId: r.chainId!, address: getAddress(r.address!), block: r.block!, offerTtlBlocks: r.offerTtlBlocks!, rpcUrl: r.rpcUrl! };
}
