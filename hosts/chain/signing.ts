// EIP-712 signing for KeyExchange with viem (PROTOCOL.md §2, §5.1, §5.4). Hosts and tests use this; the device
// uses lib/ — the two are independent implementations of the same typed data, and tests compare them.
import { keccak256, concatHex, toHex, encodeAbiParameters, type Address, type Hex, type LocalAccount } from 'viem';

/** §2: domain {name: "iotkx", version: "1", chainId, verifyingContract}. */
export function keyExchangeDomain(chainId: number, verifyingContract: Address) {
  return { name: 'iotkx', version: '1', chainId, verifyingContract } as const;
}

/** §5.1 ReceiverKey(address receiver,uint32 version,bytes encKey). */
export const receiverKeyTypes = {
  ReceiverKey: [
    { name: 'receiver', type: 'address' },
    { name: 'version', type: 'uint32' },
    { name: 'encKey', type: 'bytes' },
  ],
} as const;

/** §5.4 KeyAcceptance(address device,address receiver,uint64 epoch,bytes32 proof). */
export const keyAcceptanceTypes = {
  KeyAcceptance: [
    { name: 'device', type: 'address' },
    { name: 'receiver', type: 'address' },
    { name: 'epoch', type: 'uint64' },
    { name: 'proof', type: 'bytes32' },
  ],
} as const;

export function signReceiverKey(
  receiver: LocalAccount, chainId: number, contract: Address, version: number, encKey: Hex,
): Promise<Hex> {
  return receiver.signTypedData({
    domain: keyExchangeDomain(chainId, contract),
    types: receiverKeyTypes,
    primaryType: 'ReceiverKey',
    message: { receiver: receiver.address, version, encKey },
  });
}

export function signKeyAcceptance(
  receiver: LocalAccount, chainId: number, contract: Address, device: Address, epoch: bigint, proof: Hex,
): Promise<Hex> {
  return receiver.signTypedData({
    domain: keyExchangeDomain(chainId, contract),
    types: keyAcceptanceTypes,
    primaryType: 'KeyAcceptance',
    message: { device, receiver: receiver.address, epoch, proof },
  });
}

/** §3 channelId = keccak(abi.encode(uint256 chainId, address contract, address device, address receiver)). */
export function channelId(chainId: number, contract: Address, device: Address, receiver: Address): Hex {
  return keccak256(encodeAbiParameters(
    [{ type: 'uint256' }, { type: 'address' }, { type: 'address' }, { type: 'address' }],
    [BigInt(chainId), contract, device, receiver],
  ));
}

/** §5.3 proof = keccak("iotkx/1/confirm" || K || channelId || u64be(epoch)); commitment = keccak(proof). */
export function proofFor(k: Hex, chId: Hex, epoch: bigint): { proof: Hex; commitment: Hex } {
  const proof = keccak256(concatHex([toHex('iotkx/1/confirm'), k, chId, toHex(epoch, { size: 8 })]));
  return { proof, commitment: keccak256(proof) };
}
