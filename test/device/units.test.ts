import '../helpers/node-random.js';
import { encodeFunctionData, type Hex } from 'viem';
import { keyExchangeAbi } from '../../contracts/build/KeyExchange.js';
import { hexToBytes } from '../../lib/bytes.js';
import { decodeConfig, encodeConfig, parseConfig } from '../../lib/device/config.js';
import { bumpFees, clampFees, quoteFees } from '../../lib/device/fees.js';
import { assertSignable } from '../../lib/device/policy.js';
import { decodeChannel, emptyChannel, encodeChannel, encodeReceiverKey, encodeSeq, decodeSeq, decodeReceiverKey } from '../../lib/device/records.js';
import { RpcClient } from '../../lib/rpc.js';
import type { Eip1559Tx, LegacyTx } from '../../lib/tx.js';
import { CONTRACT, FakeChain, GWEI, RpcFail, deviceConfig } from './fake-chain.js';

const RECEIVER = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8';
const cfg = parseConfig(deviceConfig(RECEIVER));

describe('config', () => {
  test('parses decimal strings and numbers, normalizes, and round-trips through storage', () => {
    const c = parseConfig(deviceConfig(RECEIVER, { chainId: 31337, maxTxPerDay: '7', network: { ssid: 'lab', password: 'pw' } }));
    expect(c.chainId).toBe(31337n);
    expect(c.maxTxPerDay).toBe(7);
    expect(c.receiver).toEqual(hexToBytes(RECEIVER.toLowerCase()));
    const back = decodeConfig(encodeConfig(c));
    expect(back).toEqual(c);
    expect(encodeConfig(c).length).toBeLessThan(600);
  });
  test.each([
    [{ chainId: '0x7a69' }, 'chainId'],
    [{ chainId: '007' }, 'chainId'],
    [{ chainId: 1.5 }, 'chainId'],
    [{ chainId: 0 }, 'chainId'],
    [{ contract: '0x5FBdb2315678afecb367f032d93F642f64180aa3' }, 'contract'], // bad EIP-55 checksum
    [{ receiver: '0x0000000000000000000000000000000000000000' }, 'receiver'],
    [{ relayUrl: 'ftp://x' }, 'relayUrl'],
    [{ maxPriorityFeePerGas: String(60n * GWEI) }, 'maxPriorityFeePerGas'],
    [{ offerGas: '1000' }, 'offerGas'],
    [{ maxTxPerDay: 0 }, 'maxTxPerDay'],
    [{ blockTime: 0 }, 'blockTime'],
    [{ rotation: { maxReadings: -1, maxAgeSec: 0 } }, 'rotation.maxReadings'],
    [{ rotation: { everyHour: true } }, 'rotation.everyHour'],
    [{ surprise: 1 }, 'surprise'],
    [{ network: { ssid: 'x'.repeat(33), password: '' } }, 'network.ssid'],
  ])('refuses %j', (over, field) => {
    expect(() => parseConfig(deviceConfig(RECEIVER, over))).toThrow(expect.objectContaining({ code: 'bad-config', message: expect.stringContaining(`config.${field}`) }));
  });
  test('refuses a missing field and a non-object', () => {
    const c = deviceConfig(RECEIVER);
    delete c.offerGas;
    expect(() => parseConfig(c)).toThrow(expect.objectContaining({ code: 'bad-config' }));
    expect(() => parseConfig([])).toThrow(expect.objectContaining({ code: 'bad-config' }));
    expect(() => decodeConfig(new Uint8Array([0x7b]))).toThrow(expect.objectContaining({ code: 'bad-config' }));
  });
});

describe('policy: verify what you sign', () => {
  const data = hexToBytes(encodeFunctionData({
    abi: keyExchangeAbi, functionName: 'offerKey',
    args: [RECEIVER as Hex, 1n, 1, `0x${'aa'.repeat(137)}`, `0x${'bb'.repeat(32)}`],
  }));
  const ok: Eip1559Tx = { type: 'eip1559', chainId: 31337n, nonce: 0n, maxFeePerGas: cfg.maxFeePerGas, maxPriorityFeePerGas: cfg.maxPriorityFeePerGas, gas: cfg.offerGas, to: hexToBytes(CONTRACT), value: 0n, data };
  test('an offerKey within every limit passes', () => {
    expect(() => assertSignable(ok, cfg)).not.toThrow();
    const legacy: LegacyTx = { type: 'legacy', chainId: 31337n, nonce: 0n, gasPrice: cfg.maxFeePerGas, gas: 21_000n, to: ok.to, value: 0n, data };
    expect(() => assertSignable(legacy, cfg)).not.toThrow();
    expect(() => assertSignable({ ...legacy, gasPrice: cfg.maxFeePerGas + 1n }, cfg)).toThrow(expect.objectContaining({ code: 'policy-refused' }));
  });
  const otherCall = hexToBytes(encodeFunctionData({ abi: keyExchangeAbi, functionName: 'enroll', args: [RECEIVER as Hex, RECEIVER as Hex] }));
  const otherReceiver = hexToBytes(encodeFunctionData({ abi: keyExchangeAbi, functionName: 'offerKey', args: [CONTRACT, 1n, 1, '0x', `0x${'bb'.repeat(32)}`] }));
  test.each([
    ['chain id', { chainId: 1n }],
    ['destination', { to: hexToBytes(RECEIVER) }],
    ['value', { value: 1n }],
    ['gas', { gas: cfg.offerGas + 1n }],
    ['max fee', { maxFeePerGas: cfg.maxFeePerGas + 1n }],
    ['priority fee', { maxPriorityFeePerGas: cfg.maxPriorityFeePerGas + 1n }],
    ['another function', { data: otherCall }],
    ['another receiver', { data: otherReceiver }],
    ['truncated calldata', { data: data.subarray(0, 40) }],
  ])('refuses a wrong %s', (_what, over) => {
    expect(() => assertSignable({ ...ok, ...over } as Eip1559Tx, cfg)).toThrow(expect.objectContaining({ code: 'policy-refused' }));
  });
});

describe('fees', () => {
  test('clamp keeps priority ≤ max fee ≤ cap', () => {
    expect(clampFees({ type: 'eip1559', maxFeePerGas: 10n ** 40n, maxPriorityFeePerGas: 10n ** 40n }, cfg)).toEqual({ type: 'eip1559', maxFeePerGas: cfg.maxFeePerGas, maxPriorityFeePerGas: cfg.maxPriorityFeePerGas });
    expect(clampFees({ type: 'eip1559', maxFeePerGas: 1n, maxPriorityFeePerGas: 5n }, cfg)).toEqual({ type: 'eip1559', maxFeePerGas: 1n, maxPriorityFeePerGas: 1n });
  });
  test('a node without eth_feeHistory gets a legacy price from eth_gasPrice', async () => {
    const chain = new FakeChain();
    chain.tamper = (m) => { if (m === 'eth_feeHistory') throw new RpcFail(-32601, 'no'); return undefined; };
    const rpc = new RpcClient(chain.transport(), cfg.relayUrl);
    expect(await quoteFees(rpc, cfg)).toEqual({ type: 'legacy', gasPrice: 3n * GWEI });
    chain.tamper = (m) => { if (m === 'eth_maxPriorityFeePerGas') throw new RpcFail(-32601, 'no'); return undefined; };
    expect(await quoteFees(rpc, cfg)).toEqual({ type: 'eip1559', maxFeePerGas: 3n * GWEI, maxPriorityFeePerGas: 1n * GWEI });
  });
  test('bumps are ≥ +10% on both fields and stop at the caps', () => {
    const q = { type: 'eip1559' as const, maxFeePerGas: 1n, maxPriorityFeePerGas: 1n };
    const b = bumpFees({ type: 'eip1559', maxFeePerGas: 10n * GWEI, maxPriorityFeePerGas: 1n * GWEI }, q, cfg)!;
    expect(b.type === 'eip1559' && b.maxFeePerGas * 10n >= 110n * GWEI && b.maxPriorityFeePerGas * 10n >= 11n * GWEI).toBe(true);
    expect(bumpFees({ type: 'eip1559', maxFeePerGas: cfg.maxFeePerGas, maxPriorityFeePerGas: 1n * GWEI }, q, cfg)).toBeUndefined();
  });
});

describe('records', () => {
  test('channel record round-trips and stays far below the NVS value limit', () => {
    const c = {
      ...emptyChannel(), lastOffered: 7n, nextNonce: 9n, backoffExp: 3, lastOfferAt: Date.UTC(2025, 0, 1), budgetDay: 20089, budgetCount: 2, rotateNow: true,
      pending: { epoch: 7n, K: new Uint8Array(32).fill(1), nonce: 8n, keyVersion: 2, raw: new Uint8Array(520).fill(2), txHash: new Uint8Array(32).fill(3), sentAt: 5 },
      active: { epoch: 6n, K: new Uint8Array(32).fill(4), activatedAt: 6 },
      previous: { epoch: 5n, K: new Uint8Array(32).fill(5) },
    };
    const b = encodeChannel(c);
    expect(decodeChannel(b)).toEqual(c);
    expect(b.length).toBe(1 + 1 + 8 + 8 + 1 + 8 + 4 + 4 + (8 + 32 + 8 + 4 + 2 + 520 + 2 + 32 + 8) + (8 + 32 + 8) + (8 + 32));
    expect(encodeChannel(emptyChannel()).length).toBe(35);
    expect(() => decodeChannel(b.subarray(0, b.length - 1))).toThrow(expect.objectContaining({ code: 'bad-record' }));
    expect(() => decodeChannel(new Uint8Array([...b, 0]))).toThrow(expect.objectContaining({ code: 'bad-record' }));
    expect(() => decodeChannel(new Uint8Array([2, ...b.subarray(1)]))).toThrow(expect.objectContaining({ code: 'bad-record' }));
  });
  test('superseded Ks of the pending epoch (one per receiver key version change) round-trip, at most 4', () => {
    const pending = { epoch: 7n, K: new Uint8Array(32).fill(1), nonce: 8n, keyVersion: 3, raw: new Uint8Array(520).fill(2), txHash: new Uint8Array(32).fill(3), sentAt: 5 };
    const sup = [{ K: new Uint8Array(32).fill(7), keyVersion: 1 }, { K: new Uint8Array(32).fill(8), keyVersion: 2 }];
    const c = { ...emptyChannel(), lastOffered: 7n, nextNonce: 9n, pending: { ...pending, superseded: sup } };
    const b = encodeChannel(c);
    expect(decodeChannel(b)).toEqual(c);
    expect(b.length).toBe(encodeChannel({ ...c, pending }).length + 1 + 2 * 36);
    const five = Array.from({ length: 5 }, (_, i) => ({ K: new Uint8Array(32).fill(i), keyVersion: i + 1 }));
    expect(() => encodeChannel({ ...c, pending: { ...pending, superseded: five } })).toThrow(expect.objectContaining({ code: 'bad-record' }));
    expect(() => decodeChannel(new Uint8Array([...b.subarray(0, b.length - 73), 0]))).toThrow(expect.objectContaining({ code: 'bad-record' }));
  });
  test('the extension block (highest offered epoch, kept record, measured time, acceptance block) round-trips', () => {
    const pending = { epoch: 7n, K: new Uint8Array(32).fill(1), nonce: 8n, keyVersion: 3, raw: new Uint8Array(300).fill(2), txHash: new Uint8Array(32).fill(3), sentAt: 5 };
    const kept = { ...pending, epoch: 6n, K: new Uint8Array(32).fill(9), superseded: [{ K: new Uint8Array(32).fill(7), keyVersion: 2 }] };
    const c = {
      ...emptyChannel(), lastOffered: 7n, nextNonce: 9n, pending, kept, maxOffered: 8n, measuredMs: 123_456_789, budgetStart: 100_000,
      active: { epoch: 5n, K: new Uint8Array(32).fill(4), activatedAt: 6, acceptedBlock: 4242n },
    };
    const b = encodeChannel(c);
    expect(decodeChannel(b)).toEqual(c);
    expect(b.length).toBeLessThan(1500);
    expect(() => decodeChannel(b.subarray(0, b.length - 1))).toThrow(expect.objectContaining({ code: 'bad-record' }));
    expect(() => decodeChannel(new Uint8Array([...b, 0]))).toThrow(expect.objectContaining({ code: 'bad-record' }));
    const plain = { ...emptyChannel(), lastOffered: 7n, nextNonce: 9n, pending };
    expect(encodeChannel(plain).length).toBe(encodeChannel({ ...plain, maxOffered: 7n }).length - 1 - 8 - 8 - 8); // written only when set
  });
  test('receiver key and seq records', () => {
    const rk = { version: 3, encKey: new Uint8Array(65).fill(4) };
    expect(encodeReceiverKey(rk).length).toBe(70);
    expect(decodeReceiverKey(encodeReceiverKey(rk))).toEqual(rk);
    expect(decodeSeq(encodeSeq({ epoch: 2n, hwm: 48n }))).toEqual({ epoch: 2n, hwm: 48n });
    expect(encodeSeq({ epoch: 2n, hwm: 48n }).length).toBe(17);
  });
});
