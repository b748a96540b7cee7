import '../helpers/node-random.js';
import { hashTypedData, recoverTypedDataAddress, toHex, keccak256, hexToBytes } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import {
  EIP712_DOMAIN_TYPE, KEY_ACCEPTANCE_TYPE, RECEIVER_KEY_TYPE, keyAcceptanceDigest, receiverKeyDigest,
  recoverTypedSigner, signTyped, typeHash, type Eip712Domain,
} from '../../lib/eip712.js';
import { addressHex } from '../../lib/address.js';
import { getPublicKey } from '../../lib/secp256k1.js';
import { IotkxError } from '../../lib/errors.js';
import { SECRET_KEYS } from './eth-cases.js';

const types = {
  ReceiverKey: [{ name: 'receiver', type: 'address' }, { name: 'version', type: 'uint32' }, { name: 'encKey', type: 'bytes' }],
  KeyAcceptance: [{ name: 'device', type: 'address' }, { name: 'receiver', type: 'address' }, { name: 'epoch', type: 'uint64' }, { name: 'proof', type: 'bytes32' }],
} as const;

const b = (n: number, seed: number) => hexToBytes(keccak256(new Uint8Array([seed]))).slice(0, n);
const domains: Eip712Domain[] = [
  { chainId: 1n, verifyingContract: b(20, 1) },
  { chainId: 31337n, verifyingContract: b(20, 2) },
  { chainId: 11155111n, verifyingContract: new Uint8Array(20) },
  { chainId: 1n << 40n, verifyingContract: b(20, 3) },
];
const viemDomain = (d: Eip712Domain) => ({ name: 'iotkx', version: '1', chainId: d.chainId, verifyingContract: toHex(d.verifyingContract) });

function code(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return e instanceof IotkxError ? e.code : `not-iotkx: ${e}`; }
  return undefined;
}

test('type hashes are keccak of the type strings viem derives from the types', () => {
  expect(toHex(typeHash(EIP712_DOMAIN_TYPE))).toBe(keccak256(new TextEncoder().encode('EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)')));
  expect(RECEIVER_KEY_TYPE).toBe(`ReceiverKey(${types.ReceiverKey.map((f) => `${f.type} ${f.name}`).join(',')})`);
  expect(KEY_ACCEPTANCE_TYPE).toBe(`KeyAcceptance(${types.KeyAcceptance.map((f) => `${f.type} ${f.name}`).join(',')})`);
});

test('digests equal viem hashTypedData for both types and several domains', () => {
  for (const [i, d] of domains.entries()) {
    for (const encKey of [getPublicKey(SECRET_KEYS[i % 3]), new Uint8Array(0), b(1, i)]) {
      const m = { receiver: b(20, 10 + i), version: [1n, 2n, 0xffffffffn, 0n][i], encKey };
      expect(toHex(receiverKeyDigest(d, m))).toBe(hashTypedData({
        domain: viemDomain(d), types, primaryType: 'ReceiverKey',
        message: { receiver: toHex(m.receiver), version: Number(m.version), encKey: toHex(m.encKey) },
      }));
    }
    for (const epoch of [1n, 2n, (1n << 64n) - 1n]) {
      const m = { device: b(20, 20 + i), receiver: b(20, 30 + i), epoch, proof: b(32, 40 + i) };
      expect(toHex(keyAcceptanceDigest(d, m))).toBe(hashTypedData({
        domain: viemDomain(d), types, primaryType: 'KeyAcceptance',
        message: { device: toHex(m.device), receiver: toHex(m.receiver), epoch: m.epoch, proof: toHex(m.proof) },
      }));
    }
  }
});

test("viem's signTypedData recovers with ours, and ours with viem's recoverTypedDataAddress", async () => {
  for (const [i, sk] of SECRET_KEYS.entries()) {
    const account = privateKeyToAccount(toHex(sk));
    const d = domains[i];
    const m = { device: b(20, 50 + i), receiver: hexToBytes(account.address), epoch: BigInt(i + 1), proof: b(32, 60 + i) };
    const vm = { device: toHex(m.device), receiver: account.address, epoch: m.epoch, proof: toHex(m.proof) };
    const theirs = await account.signTypedData({ domain: viemDomain(d), types, primaryType: 'KeyAcceptance', message: vm });
    const digest = keyAcceptanceDigest(d, m);
    expect(addressHex(recoverTypedSigner(digest, hexToBytes(theirs)))).toBe(account.address.toLowerCase());
    const ours = signTyped(digest, sk);
    expect(toHex(ours)).toBe(theirs); // RFC 6979: same bytes
    expect(await recoverTypedDataAddress({ domain: viemDomain(d), types, primaryType: 'KeyAcceptance', message: vm, signature: toHex(ours) })).toBe(account.address);

    const rk = { receiver: hexToBytes(account.address), version: 3n, encKey: getPublicKey(SECRET_KEYS[(i + 1) % 3]) };
    const rs = signTyped(receiverKeyDigest(d, rk), sk);
    expect(await recoverTypedDataAddress({
      domain: viemDomain(d), types, primaryType: 'ReceiverKey',
      message: { receiver: account.address, version: 3, encKey: toHex(rk.encKey) }, signature: toHex(rs),
    })).toBe(account.address);
  }
});

test('bad inputs are refused; a signature over another domain recovers someone else', () => {
  const d = domains[0];
  const m = { device: b(20, 1), receiver: b(20, 2), epoch: 1n, proof: b(32, 3) };
  expect(code(() => keyAcceptanceDigest(d, { ...m, epoch: 1n << 64n }))).toBe('bad-typed-data');
  expect(code(() => keyAcceptanceDigest(d, { ...m, proof: b(31, 3) }))).toBe('bad-typed-data');
  expect(code(() => keyAcceptanceDigest({ ...d, name: 'other' }, m))).toBe('bad-typed-data');
  expect(code(() => receiverKeyDigest(d, { receiver: b(20, 1), version: 1n << 32n, encKey: new Uint8Array(0) }))).toBe('bad-typed-data');
  const sig = signTyped(keyAcceptanceDigest(d, m), SECRET_KEYS[0]);
  const signer = recoverTypedSigner(keyAcceptanceDigest(d, m), sig);
  expect(recoverTypedSigner(keyAcceptanceDigest(domains[1], m), sig)).not.toEqual(signer);
  const high = sig.slice();
  high[64] = 29;
  expect(code(() => recoverTypedSigner(keyAcceptanceDigest(d, m), high))).toBe('bad-signature');
});
