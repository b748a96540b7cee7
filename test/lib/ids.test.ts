import { hkdfSync } from 'node:crypto';
import { encodeAbiParameters, encodePacked, keccak256, hexToBytes as viemHexToBytes, toHex as viemToHex } from 'viem';
import { channelId, commitmentOf, dataKeyOf, proofOf } from '../../lib/ids.js';

const contract = viemHexToBytes('0x5fbdb2315678afecb367f032d93f642f64180aa3');
const device = viemHexToBytes('0x70997970c51812dc3a010c7d01b50e0d17dc79c8');
const receiver = viemHexToBytes('0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc');
const K = new Uint8Array(32).map((_, i) => 255 - i);

test('channelId equals viem keccak256(abi.encode(uint256, address, address, address))', () => {
  for (const chainId of [1n, 31337n, 2n ** 256n - 1n]) {
    const want = keccak256(encodeAbiParameters(
      [{ type: 'uint256' }, { type: 'address' }, { type: 'address' }, { type: 'address' }],
      [chainId, viemToHex(contract), viemToHex(device), viemToHex(receiver)],
    ));
    expect(viemToHex(channelId(chainId, contract, device, receiver))).toBe(want);
  }
  // Order matters: device and receiver swapped give another channel.
  expect(channelId(1n, contract, device, receiver)).not.toEqual(channelId(1n, contract, receiver, device));
});

test('proof and commitment equal viem keccak256(encodePacked(...))', () => {
  const ch = channelId(31337n, contract, device, receiver);
  for (const epoch of [1n, 2n ** 64n - 1n]) {
    const proof = proofOf(K, ch, epoch);
    const want = keccak256(encodePacked(['string', 'bytes32', 'bytes32', 'uint64'], ['iotkx/1/confirm', viemToHex(K), viemToHex(ch), epoch]));
    expect(viemToHex(proof)).toBe(want);
    expect(viemToHex(commitmentOf(proof))).toBe(keccak256(want));
  }
});

test('dataKey equals node:crypto HKDF-SHA256(K, salt = channelId, info = "iotkx/1/data")', () => {
  const ch = channelId(1n, contract, device, receiver);
  const want = Buffer.from(hkdfSync('sha256', K, ch, Buffer.from('iotkx/1/data'), 32));
  expect(Buffer.from(dataKeyOf(K, ch))).toEqual(want);
});

test('refuses wrong lengths and ranges', () => {
  const ch = channelId(1n, contract, device, receiver);
  expect(() => channelId(1n, contract.subarray(1), device, receiver)).toThrow(expect.objectContaining({ code: 'bad-length' }));
  expect(() => channelId(-1n, contract, device, receiver)).toThrow(expect.objectContaining({ code: 'out-of-range' }));
  expect(() => channelId(2n ** 256n, contract, device, receiver)).toThrow(expect.objectContaining({ code: 'out-of-range' }));
  expect(() => proofOf(K.subarray(1), ch, 1n)).toThrow(expect.objectContaining({ code: 'bad-length' }));
  expect(() => proofOf(K, ch, 2n ** 64n)).toThrow(expect.objectContaining({ code: 'out-of-range' }));
  expect(() => dataKeyOf(K, ch.subarray(1))).toThrow(expect.objectContaining({ code: 'bad-length' }));
});
