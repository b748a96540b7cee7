import '../helpers/node-random.js';
import { hexToBytes, keccak256, toHex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { startGuest } from '../helpers/xs.js';
import type { XsWorker } from '../../hosts/xs/worker.js';
import { signTransaction, decodeTransaction } from '../../lib/tx.js';
import { receiverKeyDigest, keyAcceptanceDigest, signTyped } from '../../lib/eip712.js';
import { getPublicKey } from '../../lib/secp256k1.js';
import { encodeOfferKey } from '../../lib/keyexchange-abi.js';
import { encodeParams } from '../../lib/abi.js';
import { SECRET_KEYS, txCases } from '../lib/eth-cases.js';
import { wycheproof } from '../helpers/vectors.js';
import { toChecksumAddress, addressOf } from '../../lib/address.js';

// The Ethereum layer on XS (no TextEncoder, no crypto global): byte for byte the
// same as on Node, whose outputs test/lib/*.test.ts checks against viem.
let worker: XsWorker;
beforeAll(async () => { worker = await startGuest('test/xs/guests/eth.ts'); }, 120000);
afterAll(() => worker?.close());

const cases = txCases();

test('signed transactions on XS equal Node (and so viem) for all cases', async () => {
  const sk = SECRET_KEYS[1];
  const xs: Uint8Array[] = await worker.call('signTxs', cases, sk);
  expect(xs).toHaveLength(cases.length);
  xs.forEach((raw, i) => expect(toHex(raw)).toBe(toHex(signTransaction(cases[i], sk))));
  // And directly against viem for one of each type.
  const account = privateKeyToAccount(toHex(sk));
  const t = cases[3] as any;
  const expected = await account.signTransaction({ type: 'legacy', chainId: Number(t.chainId), nonce: Number(t.nonce), gasPrice: t.gasPrice, gas: t.gas, to: toHex(t.to), value: t.value, data: toHex(t.data) });
  expect(toHex(xs[3])).toBe(expected);
});

test('decodeTransaction on XS round-trips and refuses malformed input with the same codes', async () => {
  const sk = SECRET_KEYS[0];
  for (const tx of cases.slice(0, 8)) {
    const raw = signTransaction(tx, sk);
    const d = await worker.call('decodeTx', raw);
    expect(d).toEqual(decodeTransaction(raw));
  }
  const raw = signTransaction(cases[2], sk);
  const bad = [raw.slice(0, raw.length - 1), new Uint8Array([...raw, 0]), new Uint8Array([1, ...raw.subarray(1)]), new Uint8Array(0),
    new Uint8Array([2, 0xc3, 0x81, 0x05, 0x80]), new Uint8Array([2, 0xc2, 0x01, 0x02])];
  const codes = bad.map((r) => { try { decodeTransaction(r); return null; } catch (e: any) { return e.code; } });
  expect(codes).toEqual(['bad-rlp', 'bad-rlp', 'unsupported-tx-type', 'bad-rlp', 'bad-rlp', 'bad-tx']);
  expect(await worker.call('decodeCodes', bad)).toEqual(codes);
});

test('addresses, EIP-55 and parseAddress on XS', async () => {
  expect(await worker.call('addresses', SECRET_KEYS)).toEqual(SECRET_KEYS.map((sk) => privateKeyToAccount(toHex(sk)).address));
  expect(await worker.call('parseAddress', '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed')).toEqual(hexToBytes('0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed'));
  await expect(worker.call('parseAddress', '0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed')).rejects.toMatchObject({ code: 'bad-address' });
  expect(toChecksumAddress(addressOf(getPublicKey(SECRET_KEYS[0])))).toBe(privateKeyToAccount(toHex(SECRET_KEYS[0])).address);
});

test('EIP-712 digests and signatures on XS equal Node', async () => {
  const domain = { chainId: 11155111n, verifyingContract: hexToBytes(keccak256('0x01')).slice(0, 20) };
  const rk = { receiver: SECRET_KEYS[0].slice(0, 20), version: 1n, encKey: getPublicKey(SECRET_KEYS[2]) };
  const ka = { device: SECRET_KEYS[1].slice(0, 20), receiver: SECRET_KEYS[0].slice(0, 20), epoch: (1n << 64n) - 1n, proof: SECRET_KEYS[2] };
  const d1 = receiverKeyDigest(domain, rk);
  const d2 = keyAcceptanceDigest(domain, ka);
  expect(await worker.call('receiverKeyDigest', domain, rk)).toEqual(d1);
  expect(await worker.call('keyAcceptanceDigest', domain, ka)).toEqual(d2);
  const sig = await worker.call('signTyped', d2, SECRET_KEYS[0]);
  expect(sig).toEqual(signTyped(d2, SECRET_KEYS[0]));
  expect(toHex(await worker.call('recoverTyped', d2, sig))).toBe(privateKeyToAccount(toHex(SECRET_KEYS[0])).address.toLowerCase());
});

test('KeyExchange ABI on XS equals Node', async () => {
  const o = { receiver: SECRET_KEYS[0].slice(0, 20), epoch: 5n, keyVersion: 2n, wrappedKey: new Uint8Array(137).fill(3), commitment: SECRET_KEYS[1] };
  expect(await worker.call('offerKey', o)).toEqual(encodeOfferKey(o));
  const rkData = encodeParams(['bytes', 'uint32', 'bytes'], [getPublicKey(SECRET_KEYS[0]), 3n, new Uint8Array(65).fill(9)]);
  expect(await worker.call('decodeReceiverKey', rkData)).toEqual({ encKey: getPublicKey(SECRET_KEYS[0]), version: 3n, sig: new Uint8Array(65).fill(9) });
  const log = {
    topics: [hexToBytes('0x452ecf1a19e5c9126a586c6767b128131b6d49568db396a677506815149cc20a'), new Uint8Array(32).fill(0).map((_, i) => (i < 12 ? 0 : 1)),
      new Uint8Array(32).map((_, i) => (i < 12 ? 0 : 2)), new Uint8Array(32).map((_, i) => (i === 31 ? 7 : 0))],
    data: encodeParams(['bytes32', 'bytes'], [SECRET_KEYS[2], new Uint8Array(65).fill(4)]),
  };
  expect(await worker.call('decodeLog', log)).toEqual({
    event: 'KeyAccepted', device: new Uint8Array(20).fill(1), receiver: new Uint8Array(20).fill(2), epoch: 7n, proof: SECRET_KEYS[2], sig: new Uint8Array(65).fill(4),
  });
  expect(await worker.call('errorName', hexToBytes('0x9cb13087'))).toBe('OfferExpired');
  const badPad = rkData.slice(); badPad[rkData.length - 1] = 1;
  expect(await worker.call('decodeParamsCode', ['bytes', 'uint32', 'bytes'], badPad)).toBe('bad-abi');
});

test('Wycheproof ECDSA bitcoin vectors on XS: no failing tcId', async () => {
  expect(await worker.call('wycheproof', wycheproof('ecdsa_secp256k1_sha256_bitcoin_test.json'))).toEqual({ failing: [], count: 463 });
}, 120000);

test('RPC client on XS (JSON via lib/bytes, no TextEncoder)', async () => {
  const bodies = [
    '{"jsonrpc":"2.0","id":1,"result":"0xaa36a7"}',
    '{"jsonrpc":"2.0","id":2,"result":{"status":"0x1","blockNumber":"0x2a","logs":[]}}',
    '{"jsonrpc":"2.0","id":3,"result":"0x01"}',
  ];
  const { out, sent } = await worker.call('rpc', bodies);
  expect(out).toEqual([11155111n, { status: 1, blockNumber: 42n, logs: [] }, 'bad-response']);
  expect(JSON.parse(sent[1])).toEqual({ jsonrpc: '2.0', id: 2, method: 'eth_getTransactionReceipt', params: ['0x' + '01'.repeat(32)] });
});
