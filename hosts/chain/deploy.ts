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

/** Deploys KeyExchange(offerTtlBlocks) and waits for its receipt. */
export async function deployKeyExchange(s: ChainSession, offerTtlBlocks: number | bigint): Promise<DeploymentRecord> {
  const { abi, bytecode } = loadArtifact();
  const hash = await s.walletClient.deployContract({ abi, bytecode, args: [BigInt(offerTtlBlocks)] });
  const receipt = await s.publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== 'success' || !receipt.contractAddress) {
    throw new Error(`KeyExchange deployment failed in tx ${hash}`);
  }
  return {
    chainId: s.chain.id,
    address: getAddress(receipt.contractAddress),
    block: Number(receipt.blockNumber),
    offerTtlBlocks: Number(offerTtlBlocks),
    rpcUrl: s.rpcUrl,
  };
}

/** Sends `amount` wei from the session's account to `to` and waits for the receipt. */
export async function fund(s: ChainSession, to: Address, amount: bigint): Promise<Hex> {
  const hash = await s.walletClient.sendTransaction({ to, value: amount });
  const receipt = await s.publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== 'success') throw new Error(`funding ${to} failed in tx ${hash}`);
  return hash;
}

/** Checks that the record's node has the same chain id and a KeyExchange with the same TTL at the address. */
export async function verifyDeployment(s: Pick<ChainSession, 'publicClient'>, rec: DeploymentRecord): Promise<void> {
  const id = await s.publicClient.getChainId();
  if (id !== rec.chainId) throw new Error(`node reports chain id ${id}, deployment record says ${rec.chainId}`);
  const code = await s.publicClient.getCode({ address: rec.address });
  if (!code || code === '0x') throw new Error(`no contract at ${rec.address} on chain ${rec.chainId}`);
  const ttl = await s.publicClient.readContract({
    address: rec.address,
    abi: loadArtifact().abi,
    functionName: 'offerTtlBlocks',
  });
  if (Number(ttl) !== rec.offerTtlBlocks) {
    throw new Error(`contract at ${rec.address} has offerTtlBlocks ${ttl}, record says ${rec.offerTtlBlocks}`);
  }
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
