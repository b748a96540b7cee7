// Chain access for the receiver through a node it trusts (PROTOCOL.md §5.4), with viem and the ABI generated
// from KeyExchange.sol. Transactions are signed locally and their raw bytes persisted BEFORE broadcast, so a
// restart re-broadcasts the same transaction (same nonce, same hash) instead of sending a second one.
import {
  createPublicClient, defineChain, encodeFunctionData, http, keccak256,
  type Address, type Chain, type Hex, type PublicClient, type Transport,
} from 'viem';
import { privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts';
import { keyExchangeAbi } from '../../contracts/build/KeyExchange.js';
import { toHex } from '../../lib/bytes.js';

export { keyExchangeAbi };

export interface ChannelView {
  enrolled: boolean;
  epoch: bigint;
  /** 0 none, 1 offered, 2 accepted, 3 rejected (§4). */
  state: number;
  keyVersion: number;
  commitment: Hex;
  offeredAt: bigint;
  acceptedAt: bigint;
}

export interface SignedTx {
  hash: Hex;
  raw: Hex;
  nonce: number;
}

export class ReceiverChain {
  readonly client: PublicClient<Transport, Chain>;
  readonly account: PrivateKeyAccount;
  readonly contract: Address;
  readonly chainId: number;

  constructor(rpcUrl: string, chainId: number, contract: Address, accountKey: Uint8Array) {
    const chain = defineChain({
      id: chainId, name: `iotkx-${chainId}`,
      nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
      rpcUrls: { default: { http: [rpcUrl] } },
    });
    // No retries inside viem: the watcher loop is the retry, and it must see failures to count them.
    // cacheTime 0: viem otherwise caches eth_blockNumber for 4 s and the watcher would scan behind the head.
    this.client = createPublicClient({ chain, cacheTime: 0, transport: http(rpcUrl, { retryCount: 0, timeout: 15_000 }) });
    this.account = privateKeyToAccount(toHex(accountKey));
    this.contract = contract;
    this.chainId = chainId;
  }

  get address(): Address {
    return this.account.address;
  }

  async channel(device: Address): Promise<ChannelView> {
    const [enrolled, epoch, state, keyVersion, commitment, offeredAt, acceptedAt] = await this.client.readContract({
      address: this.contract, abi: keyExchangeAbi, functionName: 'channel', args: [device, this.address],
    });
    return { enrolled, epoch, state, keyVersion, commitment, offeredAt, acceptedAt };
  }

  async receiverKey(): Promise<{ encKey: Hex; version: number; sig: Hex }> {
    const [encKey, version, sig] = await this.client.readContract({
      address: this.contract, abi: keyExchangeAbi, functionName: 'receiverKey', args: [this.address],
    });
    return { encKey, version, sig };
  }

  async offerTtlBlocks(): Promise<bigint> {
    return this.client.readContract({ address: this.contract, abi: keyExchangeAbi, functionName: 'offerTtlBlocks' });
  }

  /** Builds and signs a contract call (gas estimated: a call that would revert fails here, before signing). */
  async sign(data: Hex): Promise<SignedTx> {
    const req = await this.client.prepareTransactionRequest({
      account: this.account, to: this.contract, data, chain: this.client.chain,
    });
    const raw = await this.account.signTransaction(req as Parameters<PrivateKeyAccount['signTransaction']>[0]);
    return { hash: keccak256(raw), raw, nonce: req.nonce };
  }

  acceptData(device: Address, epoch: bigint, proof: Hex, sig: Hex): Hex {
    return encodeFunctionData({ abi: keyExchangeAbi, functionName: 'acceptKey', args: [device, epoch, proof, sig] });
  }

  rejectData(device: Address, epoch: bigint, reason: number): Hex {
    return encodeFunctionData({ abi: keyExchangeAbi, functionName: 'rejectKey', args: [device, epoch, reason] });
  }

  setReceiverKeyData(encKey: Hex, sig: Hex): Hex {
    return encodeFunctionData({ abi: keyExchangeAbi, functionName: 'setReceiverKey', args: [encKey, sig] });
  }

  /** Broadcasts; "already known"-style answers are fine (it is a re-broadcast of the same bytes). */
  async broadcast(raw: Hex): Promise<void> {
    try {
      await this.client.sendRawTransaction({ serializedTransaction: raw });
    } catch (e) {
      const msg = String((e as Error).message).toLowerCase();
      if (/already known|already imported|known transaction|already exists/.test(msg)) return;
      throw e;
    }
  }

  /** The receipt, or undefined while the node does not know one. */
  async receipt(hash: Hex) {
    try {
      return await this.client.getTransactionReceipt({ hash });
    } catch (e) {
      if ((e as Error).name === 'TransactionReceiptNotFoundError') return undefined;
      throw e;
    }
  }

  async transaction(hash: Hex) {
    try {
      return await this.client.getTransaction({ hash });
    } catch (e) {
      if ((e as Error).name === 'TransactionNotFoundError') return undefined;
      throw e;
    }
  }

  async confirmedNonce(): Promise<number> {
    return this.client.getTransactionCount({ address: this.address, blockTag: 'latest' });
  }
}
