import '../helpers/node-random.js';
import { privateKeyToAccount } from 'viem/accounts';
import { parseTransaction, recoverTransactionAddress, toHex, hexToBytes, keccak256, serializeTransaction } from 'viem';
import { decodeTransaction, signTransaction, signingHash, transactionHash, type Transaction, type Eip1559Tx } from '../../lib/tx.js';
import { addressHex } from '../../lib/address.js';
import { IotkxError } from '../../lib/errors.js';
import { SECRET_KEYS, txCases } from './eth-cases.js';
import { CURVE_ORDER } from '../../lib/secp256k1.js';
import { Transaction as MicroTx } from 'micro-eth-signer';

// viem takes nonce as a JS number: nonces above 2^53 are checked against micro-eth-signer instead.
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);
function microTx(tx: Transaction): any {
  const common = { chainId: tx.chainId, nonce: tx.nonce, gasLimit: tx.gas, to: toHex(tx.to), value: tx.value, data: toHex(tx.data).slice(2) };
  return tx.type === 'eip1559'
    ? { ...common, type: 'eip1559', maxFeePerGas: tx.maxFeePerGas, maxPriorityFeePerGas: tx.maxPriorityFeePerGas }
    : { ...common, type: 'legacy', gasPrice: tx.gasPrice };
}

function viemTx(tx: Transaction): any {
  const common = { chainId: Number(tx.chainId), nonce: Number(tx.nonce), gas: tx.gas, to: toHex(tx.to), value: tx.value, data: toHex(tx.data) };
  return tx.type === 'eip1559'
    ? { ...common, type: 'eip1559', maxFeePerGas: tx.maxFeePerGas, maxPriorityFeePerGas: tx.maxPriorityFeePerGas }
    : { ...common, type: 'legacy', gasPrice: tx.gasPrice };
}

const cases = txCases();

test(`signed transactions are byte-identical to viem's (${cases.length} cases × ${SECRET_KEYS.length} keys)`, async () => {
  expect(cases.length).toBeGreaterThanOrEqual(96);
  for (const sk of SECRET_KEYS) {
    const account = privateKeyToAccount(toHex(sk));
    for (const tx of cases) {
      const raw = signTransaction(tx, sk);
      const expected: `0x${string}` = tx.nonce > SAFE
        ? MicroTx.prepare(microTx(tx), false).signBy(toHex(sk), false).toHex() as `0x${string}`
        : await account.signTransaction(viemTx(tx));
      expect(toHex(raw)).toBe(expected);
      expect(toHex(transactionHash(raw))).toBe(keccak256(expected));
    }
  }
});

test('decodeTransaction round-trips and agrees with viem parseTransaction / recoverTransactionAddress', async () => {
  const sk = SECRET_KEYS[0];
  const account = privateKeyToAccount(toHex(sk));
  for (const tx of cases) {
    const raw = signTransaction(tx, sk);
    const d = decodeTransaction(raw);
    expect(d.tx).toEqual(tx);
    expect(addressHex(d.from)).toBe(account.address.toLowerCase());
    expect(d.hash).toEqual(hexToBytes(keccak256(raw)));
    if (tx.nonce > SAFE) {
      const m = MicroTx.fromHex(toHex(raw));
      expect(m.raw.nonce).toBe(tx.nonce);
      expect(m.sender.toLowerCase()).toBe(addressHex(d.from));
      continue;
    }
    const p = parseTransaction(toHex(raw)) as any;
    expect(BigInt(p.chainId)).toBe(tx.chainId);
    expect(BigInt(p.nonce)).toBe(tx.nonce);
    expect(p.to).toBe(toHex(tx.to));
    expect(p.value ?? 0n).toBe(tx.value);
    expect(p.data ?? '0x').toBe(toHex(tx.data));
    expect((await recoverTransactionAddress({ serializedTransaction: toHex(raw) as any })).toLowerCase()).toBe(addressHex(d.from));
  }
});

test('large nonce (2^64 − 2, EIP-2681 maximum) signs and decodes; 2^64 − 1 is refused', () => {
  const tx = cases.find((t) => t.nonce === (1n << 64n) - 2n)!;
  expect(decodeTransaction(signTransaction(tx, SECRET_KEYS[1])).tx.nonce).toBe((1n << 64n) - 2n);
  expect(code(() => signTransaction({ ...tx, nonce: (1n << 64n) - 1n }, SECRET_KEYS[1]))).toBe('bad-tx');
});

function code(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return e instanceof IotkxError ? e.code : `not-iotkx: ${e}`; }
  return undefined;
}

describe('malformed raw transactions are refused with codes', () => {
  const sk = SECRET_KEYS[0];
  const tx1559 = cases.find((t) => t.type === 'eip1559' && t.data.length === 36)! as Eip1559Tx;
  const txLegacy = cases.find((t) => t.type === 'legacy' && t.data.length === 36)!;
  const raw = signTransaction(tx1559, sk);
  const rawL = signTransaction(txLegacy, sk);
  const viemRaw = (tx: any, sig: any) => hexToBytes(serializeTransaction(tx, sig));

  test('truncated, trailing, empty', () => {
    for (let n = 0; n < raw.length; n += 7) expect(['bad-rlp', 'bad-tx']).toContain(code(() => decodeTransaction(raw.slice(0, n))));
    expect(code(() => decodeTransaction(raw.slice(0, raw.length - 1)))).toBe('bad-rlp');
    expect(code(() => decodeTransaction(new Uint8Array([...raw, 0])))).toBe('bad-rlp');
    expect(code(() => decodeTransaction(new Uint8Array([...rawL, 0x80])))).toBe('bad-rlp');
    expect(code(() => decodeTransaction(new Uint8Array(0)))).toBe('bad-rlp');
  });
  test('unknown types', () => {
    for (const t of [0x00, 0x01, 0x03, 0x04, 0x7f]) expect(code(() => decodeTransaction(new Uint8Array([t, ...raw.subarray(1)])))).toBe('unsupported-tx-type');
  });
  test('legacy without EIP-155 (v = 27/28) is refused', () => {
    const bare = { type: 'legacy', nonce: 1, gasPrice: 1n, gas: 21000n, to: toHex(txLegacy.to), value: 0n, data: '0x' } as const;
    const r = viemRaw(bare, { r: '0x' + '11'.repeat(32), s: '0x' + '22'.repeat(32), v: 27n });
    expect(code(() => decodeTransaction(r))).toBe('bad-tx');
  });
  test('non-canonical integer (leading zero) and a zero encoded as 0x00', () => {
    // Hand-built: nonce field as 0x820001 (leading zero) in a type-2 list.
    const { encode } = require('rlp');
    const f = (nonce: Uint8Array) => new Uint8Array([2, ...encode([
      new Uint8Array([1]), nonce, new Uint8Array([1]), new Uint8Array([2]), new Uint8Array([0x52, 0x08]), txLegacy.to,
      new Uint8Array(0), new Uint8Array(0), [], new Uint8Array(0), hexToBytes(('0x' + '11'.repeat(32)) as any), hexToBytes(('0x' + '22'.repeat(32)) as any),
    ])]);
    expect(code(() => decodeTransaction(f(new Uint8Array([0, 1]))))).toBe('bad-tx');
    expect(code(() => decodeTransaction(f(new Uint8Array([0]))))).toBe('bad-tx');
    // RLP-level non-canonical: a single byte < 0x80 wrapped in a string header.
    expect(code(() => decodeTransaction(new Uint8Array([2, 0xc3, 0x81, 0x05, 0x80])))).toBe('bad-rlp');
  });
  test('high-s and out-of-range signatures', () => {
    const base = { chainId: 1, type: 'eip1559', nonce: 0, maxFeePerGas: 2n, maxPriorityFeePerGas: 1n, gas: 21000n, to: toHex(txLegacy.to), value: 0n } as const;
    const r = 0x1111n;
    const high = viemRaw(base, { r: toHex(r, { size: 32 }), s: toHex(CURVE_ORDER - 5n, { size: 32 }), yParity: 0 });
    expect(code(() => decodeTransaction(high))).toBe('high-s');
    const zero = viemRaw(base, { r: toHex(r, { size: 32 }), s: '0x0', yParity: 0 });
    expect(code(() => decodeTransaction(zero))).toBe('bad-signature');
    const big = viemRaw(base, { r: toHex(CURVE_ORDER, { size: 32 }), s: '0x05', yParity: 0 });
    expect(code(() => decodeTransaction(big))).toBe('bad-signature');
  });
  test('a non-empty access list, contract creation and a wrong field count are refused', () => {
    const base = { chainId: 1, type: 'eip1559', nonce: 0, maxFeePerGas: 2n, maxPriorityFeePerGas: 1n, gas: 21000n, value: 0n } as const;
    const sig = { r: toHex(5n, { size: 32 }), s: toHex(7n, { size: 32 }), yParity: 0 } as const;
    const withList = viemRaw({ ...base, to: toHex(txLegacy.to), accessList: [{ address: toHex(txLegacy.to), storageKeys: [] }] }, sig);
    expect(code(() => decodeTransaction(withList))).toBe('bad-tx');
    expect(code(() => decodeTransaction(viemRaw(base, sig)))).toBe('bad-tx');
    expect(code(() => decodeTransaction(new Uint8Array([2, 0xc2, 0x01, 0x02])))).toBe('bad-tx');
    expect(code(() => decodeTransaction(new Uint8Array([2, 0x82, 0x01, 0x02])))).toBe('bad-tx');
  });
  test('a tampered field recovers another sender (signature binds the fields)', () => {
    const d = decodeTransaction(raw);
    const t = Uint8Array.from(raw);
    t[t.length - 70] ^= 1; // inside r
    let other: Uint8Array | undefined;
    try { other = decodeTransaction(t).from; } catch (e) { expect(e).toBeInstanceOf(IotkxError); }
    if (other) expect(other).not.toEqual(d.from);
  });
  test('invalid tx inputs are refused before signing', () => {
    expect(code(() => signTransaction({ ...tx1559, to: new Uint8Array(19) }, sk))).toBe('bad-tx');
    expect(code(() => signTransaction({ ...tx1559, chainId: 0n }, sk))).toBe('bad-tx');
    expect(code(() => signTransaction({ ...tx1559, value: -1n }, sk))).toBe('bad-tx');
    expect(code(() => signTransaction({ ...tx1559, maxPriorityFeePerGas: tx1559.maxFeePerGas + 1n } as Transaction, sk))).toBe('bad-tx');
    expect(code(() => signingHash({ ...txLegacy, gas: 1n << 256n }))).toBe('bad-tx');
  });
});
