// The Ethereum layer against a real node and the compiled contract: transactions we
// sign are accepted by anvil, our EIP-712 digests satisfy the contract's checks, our
// logs/results decode what Solidity emits, and revert data maps to §4's error names.
import '../helpers/node-random.js';
import { hexToBytes } from 'viem';
import { setupChain, type ChainEnv } from '../helpers/chain.js';
import { RpcClient, RpcError } from '../../lib/rpc.js';
import type { Transport } from '../../lib/platform.js';
import { signTransaction, transactionHash, type Transaction } from '../../lib/tx.js';
import { receiverKeyDigest, recoverTypedSigner, signTyped } from '../../lib/eip712.js';
import * as kx from '../../lib/keyexchange-abi.js';
import { addressHex, addressOf } from '../../lib/address.js';
import { getPublicKey } from '../../lib/secp256k1.js';
import { CURVE_ORDER } from '../../lib/secp256k1.js';
import { bigIntToBytes, bytesToBigInt } from '../../lib/bytes.js';

const fetchTransport: Transport = {
  async request(method, url, body, contentType) {
    const res = await fetch(url, { method, body, headers: contentType ? { 'content-type': contentType } : {} });
    return { status: res.status, body: new Uint8Array(await res.arrayBuffer()) };
  },
};

let env: ChainEnv;
let rpc: RpcClient;
let contract: Uint8Array;
const keyOf = (name: string) => hexToBytes(env.anvil.accounts[['receiver', 'device'].indexOf(name) + 1].privateKey);

beforeAll(async () => {
  env = await setupChain(['receiver', 'device']);
  rpc = new RpcClient(fetchTransport, env.anvil.rpcUrl);
  contract = hexToBytes(env.address);
}, 120000);
afterAll(() => env?.stop());

async function send(sk: Uint8Array, type: 'eip1559' | 'legacy', data: Uint8Array) {
  const from = addressOf(getPublicKey(sk));
  const nonce = await rpc.getTransactionCount(from, 'pending');
  const chainId = BigInt(env.chainId);
  const base = { chainId, nonce, gas: 500_000n, to: contract, value: 0n, data };
  const tx: Transaction = type === 'eip1559'
    ? { ...base, type, maxFeePerGas: 10n ** 10n, maxPriorityFeePerGas: 10n ** 9n }
    : { ...base, type, gasPrice: 10n ** 10n };
  const raw = signTransaction(tx, sk);
  const hash = await rpc.sendRawTransaction(raw);
  expect(hash).toEqual(transactionHash(raw));
  // anvil mines asynchronously: on a loaded machine the receipt can lag the send.
  let receipt = await rpc.getTransactionReceipt(hash);
  for (let i = 0; receipt === null && i < 100; i++) {
    await new Promise((r) => setTimeout(r, 50));
    receipt = await rpc.getTransactionReceipt(hash);
  }
  expect(receipt).not.toBeNull();
  return receipt!;
}

test('receiver key record (type 2) and enrolment (legacy EIP-155) land; logs and views decode', async () => {
  expect(await rpc.chainId()).toBe(BigInt(env.chainId));
  const rsk = keyOf('receiver');
  const receiver = addressOf(getPublicKey(rsk));
  const device = addressOf(getPublicKey(keyOf('device')));
  const domain = { chainId: BigInt(env.chainId), verifyingContract: contract };
  const encKey = getPublicKey(hexToBytes(env.anvil.accounts[5].privateKey));
  const sig = signTyped(receiverKeyDigest(domain, { receiver, version: 1n, encKey }), rsk);

  const r1 = await send(rsk, 'eip1559', kx.encodeSetReceiverKey(encKey, sig));
  expect(r1.status).toBe(1);
  const ev1 = kx.decodeLog(r1.logs[0]);
  expect(ev1).toEqual({ event: 'ReceiverKeySet', receiver, version: 1n, encKey, sig });
  expect(r1.logs[0].address).toEqual(contract);

  const r2 = await send(rsk, 'legacy', kx.encodeEnroll(receiver, device));
  expect(r2.status).toBe(1);
  expect(kx.decodeLog(r2.logs[0])).toEqual({ event: 'DeviceEnrolled', receiver, device, by: receiver });

  const rec = kx.decodeReceiverKey(await rpc.call({ to: contract, data: kx.encodeReceiverKeyCall(receiver) }));
  expect(rec).toEqual({ encKey, version: 1n, sig });
  expect(recoverTypedSigner(receiverKeyDigest(domain, { receiver, version: rec.version, encKey: rec.encKey }), rec.sig)).toEqual(receiver);
  const ch = kx.decodeChannel(await rpc.call({ to: contract, data: kx.encodeChannelCall(device, receiver) }));
  expect(ch).toMatchObject({ enrolled: true, epoch: 0n, state: kx.ChannelState.none });
  expect(kx.decodeOfferTtlBlocks(await rpc.call({ to: contract, data: kx.encodeOfferTtlBlocksCall() }))).toBe(BigInt(env.ttl));
  const logs = await rpc.getLogs({ address: contract, topics: [kx.eventTopic('DeviceEnrolled')], fromBlock: 0n, toBlock: 'latest' });
  expect(logs.map((l) => kx.decodeLog(l).event)).toEqual(['DeviceEnrolled']);
  expect(addressHex(device)).toBe(env.actors.device.address.toLowerCase());
}, 60000);

test('revert data of eth_call maps to the §4 error names', async () => {
  const rsk = keyOf('receiver');
  const receiver = addressOf(getPublicKey(rsk));
  const device = addressOf(getPublicKey(keyOf('device')));
  const revert = async (from: Uint8Array, data: Uint8Array) => {
    const e = await rpc.call({ from, to: contract, data }).catch((x) => x);
    expect(e).toBeInstanceOf(RpcError);
    return kx.errorName(hexToBytes(e.data));
  };
  const offer = (epoch: bigint) => kx.encodeOfferKey({ receiver, epoch, keyVersion: 1n, wrappedKey: new Uint8Array(137), commitment: new Uint8Array(32) });
  expect(await revert(device, offer(2n))).toBe('BadEpoch');
  expect(await revert(device, kx.encodeOfferKey({ receiver, epoch: 1n, keyVersion: 2n, wrappedKey: new Uint8Array(137), commitment: new Uint8Array(32) }))).toBe('UnknownKeyVersion');
  expect(await revert(receiver, kx.encodeEnroll(device, receiver))).toBe('NotAuthorized');
  // A high-s twin of a valid key-record signature is refused by the contract as by parseSignature.
  const domain = { chainId: BigInt(env.chainId), verifyingContract: contract };
  const encKey = getPublicKey(hexToBytes(env.anvil.accounts[6].privateKey));
  const sig = signTyped(receiverKeyDigest(domain, { receiver, version: 2n, encKey }), rsk);
  const twin = sig.slice();
  twin.set(bigIntToBytes(CURVE_ORDER - bytesToBigInt(sig.subarray(32, 64)), 32), 32);
  twin[64] = sig[64] === 27 ? 28 : 27;
  expect(await revert(receiver, kx.encodeSetReceiverKey(encKey, twin))).toBe('BadSignature');
  // The genuine one would pass.
  expect(await rpc.call({ from: receiver, to: contract, data: kx.encodeSetReceiverKey(encKey, sig) })).toEqual(new Uint8Array(0));
}, 60000);
