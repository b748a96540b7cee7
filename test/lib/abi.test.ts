import '../helpers/node-random.js';
import {
  decodeAbiParameters, decodeEventLog, decodeFunctionResult, encodeAbiParameters, encodeErrorResult, encodeEventTopics, encodeFunctionData,
  encodeFunctionResult, hexToBytes, keccak256, toEventSelector, toFunctionSelector, toHex,
} from 'viem';
import { decodeParams, encodeFunctionCall, encodeParams, parseSignatureTypes, selector, type AbiType } from '../../lib/abi.js';
import * as kx from '../../lib/keyexchange-abi.js';
import { IotkxError } from '../../lib/errors.js';

/** PROTOCOL.md §4 as a viem ABI (written from the spec, independently of lib/keyexchange-abi.ts). */
const ABI = [
  { type: 'function', name: 'setReceiverKey', stateMutability: 'nonpayable', inputs: [{ name: 'encKey', type: 'bytes' }, { name: 'sig', type: 'bytes' }], outputs: [] },
  { type: 'function', name: 'setOperator', stateMutability: 'nonpayable', inputs: [{ name: 'operator', type: 'address' }, { name: 'allowed', type: 'bool' }], outputs: [] },
  { type: 'function', name: 'enroll', stateMutability: 'nonpayable', inputs: [{ name: 'receiver', type: 'address' }, { name: 'device', type: 'address' }], outputs: [] },
  { type: 'function', name: 'revoke', stateMutability: 'nonpayable', inputs: [{ name: 'receiver', type: 'address' }, { name: 'device', type: 'address' }], outputs: [] },
  { type: 'function', name: 'offerKey', stateMutability: 'nonpayable', inputs: [{ name: 'receiver', type: 'address' }, { name: 'epoch', type: 'uint64' }, { name: 'keyVersion', type: 'uint32' }, { name: 'wrappedKey', type: 'bytes' }, { name: 'commitment', type: 'bytes32' }], outputs: [] },
  { type: 'function', name: 'acceptKey', stateMutability: 'nonpayable', inputs: [{ name: 'device', type: 'address' }, { name: 'epoch', type: 'uint64' }, { name: 'proof', type: 'bytes32' }, { name: 'sig', type: 'bytes' }], outputs: [] },
  { type: 'function', name: 'rejectKey', stateMutability: 'nonpayable', inputs: [{ name: 'device', type: 'address' }, { name: 'epoch', type: 'uint64' }, { name: 'reason', type: 'uint8' }], outputs: [] },
  { type: 'function', name: 'receiverKey', stateMutability: 'view', inputs: [{ name: 'receiver', type: 'address' }], outputs: [{ name: 'encKey', type: 'bytes' }, { name: 'version', type: 'uint32' }, { name: 'sig', type: 'bytes' }] },
  { type: 'function', name: 'channel', stateMutability: 'view', inputs: [{ name: 'device', type: 'address' }, { name: 'receiver', type: 'address' }], outputs: [{ name: 'enrolled', type: 'bool' }, { name: 'epoch', type: 'uint64' }, { name: 'state', type: 'uint8' }, { name: 'keyVersion', type: 'uint32' }, { name: 'commitment', type: 'bytes32' }, { name: 'offeredAt', type: 'uint64' }, { name: 'acceptedAt', type: 'uint64' }] },
  { type: 'function', name: 'isOperator', stateMutability: 'view', inputs: [{ name: 'receiver', type: 'address' }, { name: 'operator', type: 'address' }], outputs: [{ name: '', type: 'bool' }] },
  { type: 'function', name: 'offerTtlBlocks', stateMutability: 'view', inputs: [], outputs: [{ name: '', type: 'uint64' }] },
  { type: 'event', name: 'ReceiverKeySet', inputs: [{ name: 'receiver', type: 'address', indexed: true }, { name: 'version', type: 'uint32', indexed: false }, { name: 'encKey', type: 'bytes', indexed: false }, { name: 'sig', type: 'bytes', indexed: false }] },
  { type: 'event', name: 'OperatorSet', inputs: [{ name: 'receiver', type: 'address', indexed: true }, { name: 'operator', type: 'address', indexed: true }, { name: 'allowed', type: 'bool', indexed: false }] },
  { type: 'event', name: 'DeviceEnrolled', inputs: [{ name: 'receiver', type: 'address', indexed: true }, { name: 'device', type: 'address', indexed: true }, { name: 'by', type: 'address', indexed: false }] },
  { type: 'event', name: 'DeviceRevoked', inputs: [{ name: 'receiver', type: 'address', indexed: true }, { name: 'device', type: 'address', indexed: true }, { name: 'by', type: 'address', indexed: false }] },
  { type: 'event', name: 'KeyOffered', inputs: [{ name: 'device', type: 'address', indexed: true }, { name: 'receiver', type: 'address', indexed: true }, { name: 'epoch', type: 'uint64', indexed: true }, { name: 'keyVersion', type: 'uint32', indexed: false }, { name: 'wrappedKey', type: 'bytes', indexed: false }, { name: 'commitment', type: 'bytes32', indexed: false }] },
  { type: 'event', name: 'KeyAccepted', inputs: [{ name: 'device', type: 'address', indexed: true }, { name: 'receiver', type: 'address', indexed: true }, { name: 'epoch', type: 'uint64', indexed: true }, { name: 'proof', type: 'bytes32', indexed: false }, { name: 'sig', type: 'bytes', indexed: false }] },
  { type: 'event', name: 'KeyRejected', inputs: [{ name: 'device', type: 'address', indexed: true }, { name: 'receiver', type: 'address', indexed: true }, { name: 'epoch', type: 'uint64', indexed: true }, { name: 'reason', type: 'uint8', indexed: false }] },
  ...['NotAuthorized', 'NotEnrolled', 'BadKey', 'BadSignature', 'BadEpoch', 'UnknownKeyVersion', 'NotOffered', 'OfferExpired', 'BadProof', 'BadReason']
    .map((name) => ({ type: 'error', name, inputs: [] }) as const),
] as const;

const b = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed * 7 + 1) & 0xff);
const A = b(20, 1), B = b(20, 2);
const SIZES = [0, 1, 31, 32, 33, 65, 137, 600];

function code(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return e instanceof IotkxError ? e.code : `not-iotkx: ${e}`; }
  return undefined;
}

const fnAbi = (name: string) => ABI.find((x) => x.type === 'function' && x.name === name) as any;
const sig = (x: any) => `${x.name}(${x.inputs.map((i: any) => i.type).join(',')})`;

test('selector, topic and error constants equal keccak of the §4 signatures (viem)', () => {
  for (const [name, f] of Object.entries(kx.FUNCTIONS)) {
    expect(f.signature).toBe(sig(fnAbi(name)));
    expect(f.selector).toBe(toFunctionSelector(f.signature));
    expect(toHex(selector(f.signature))).toBe(f.selector);
    expect([...f.inputs]).toEqual(fnAbi(name).inputs.map((i: any) => i.type));
    expect([...f.outputs]).toEqual(fnAbi(name).outputs.map((i: any) => i.type));
  }
  for (const [name, e] of Object.entries(kx.EVENTS)) {
    const ev = ABI.find((x) => x.type === 'event' && x.name === name) as any;
    expect(e.signature).toBe(sig(ev));
    expect(e.topic0).toBe(toEventSelector(e.signature));
    expect(toHex(kx.eventTopic(name as kx.EventName))).toBe(e.topic0);
  }
  expect(Object.keys(kx.ERRORS)).toHaveLength(10);
  for (const [name, s] of Object.entries(kx.ERRORS)) {
    expect(s).toBe(toFunctionSelector(`${name}()`));
    const revert = hexToBytes(encodeErrorResult({ abi: ABI, errorName: name as any }));
    expect(kx.errorName(revert)).toBe(name);
  }
  expect(kx.errorName(new Uint8Array([1, 2, 3, 4]))).toBeUndefined();
  expect(kx.errorName(new Uint8Array([0xea, 0x8e, 0x4e]))).toBeUndefined();
  // Error(string) from a require(): not one of ours.
  expect(kx.errorName(hexToBytes('0x08c379a0'))).toBeUndefined();
});

test('calldata of every function equals viem encodeFunctionData', () => {
  const enc = (name: string, args: unknown[]) => encodeFunctionData({ abi: ABI, functionName: name as any, args: args as any });
  for (const n of SIZES) {
    expect(toHex(kx.encodeSetReceiverKey(b(n, 3), b(65, 4)))).toBe(enc('setReceiverKey', [toHex(b(n, 3)), toHex(b(65, 4))]));
    expect(toHex(kx.encodeOfferKey({ receiver: A, epoch: BigInt(n) + 1n, keyVersion: 7n, wrappedKey: b(n, 5), commitment: b(32, 6) })))
      .toBe(enc('offerKey', [toHex(A), BigInt(n) + 1n, 7, toHex(b(n, 5)), toHex(b(32, 6))]));
    expect(toHex(kx.encodeAcceptKey({ device: A, epoch: (1n << 64n) - 1n, proof: b(32, 7), sig: b(n, 8) })))
      .toBe(enc('acceptKey', [toHex(A), (1n << 64n) - 1n, toHex(b(32, 7)), toHex(b(n, 8))]));
  }
  for (const allowed of [true, false]) expect(toHex(kx.encodeSetOperator(B, allowed))).toBe(enc('setOperator', [toHex(B), allowed]));
  expect(toHex(kx.encodeEnroll(A, B))).toBe(enc('enroll', [toHex(A), toHex(B)]));
  expect(toHex(kx.encodeRevoke(B, A))).toBe(enc('revoke', [toHex(B), toHex(A)]));
  for (const reason of [1n, 2n, 3n, 255n]) expect(toHex(kx.encodeRejectKey({ device: A, epoch: 9n, reason }))).toBe(enc('rejectKey', [toHex(A), 9n, Number(reason)]));
  expect(toHex(kx.encodeReceiverKeyCall(A))).toBe(enc('receiverKey', [toHex(A)]));
  expect(toHex(kx.encodeChannelCall(A, B))).toBe(enc('channel', [toHex(A), toHex(B)]));
  expect(toHex(kx.encodeIsOperatorCall(A, B))).toBe(enc('isOperator', [toHex(A), toHex(B)]));
  expect(toHex(kx.encodeOfferTtlBlocksCall())).toBe(enc('offerTtlBlocks', []));
  expect(toHex(encodeFunctionCall('enroll(address,address)', [A, B]))).toBe(enc('enroll', [toHex(A), toHex(B)]));
});

test('view results decode like viem decodeFunctionResult', () => {
  for (const n of SIZES) {
    const data = encodeFunctionResult({ abi: ABI, functionName: 'receiverKey', result: [toHex(b(n, 1)), 4294967295, toHex(b(65 + n, 2))] });
    const ours = kx.decodeReceiverKey(hexToBytes(data));
    const theirs = decodeFunctionResult({ abi: ABI, functionName: 'receiverKey', data }) as any;
    expect({ encKey: toHex(ours.encKey), version: Number(ours.version), sig: toHex(ours.sig) }).toEqual({ encKey: theirs[0], version: theirs[1], sig: theirs[2] });
  }
  for (const [enrolled, state] of [[true, 0], [false, 3], [true, 2]] as const) {
    const r = [enrolled, (1n << 64n) - 1n, state, 4294967295, toHex(b(32, 9)), 12345n, 0n] as const;
    const data = encodeFunctionResult({ abi: ABI, functionName: 'channel', result: r as any });
    const theirs = decodeFunctionResult({ abi: ABI, functionName: 'channel', data }) as any;
    const ours = kx.decodeChannel(hexToBytes(data));
    expect([ours.enrolled, ours.epoch, ours.state, Number(ours.keyVersion), toHex(ours.commitment), ours.offeredAt, ours.acceptedAt]).toEqual([...theirs]);
  }
  for (const v of [true, false]) {
    const data = encodeFunctionResult({ abi: ABI, functionName: 'isOperator', result: v });
    expect(kx.decodeIsOperator(hexToBytes(data))).toBe(decodeFunctionResult({ abi: ABI, functionName: 'isOperator', data }));
  }
  const ttl = encodeFunctionResult({ abi: ABI, functionName: 'offerTtlBlocks', result: 7200n });
  expect(kx.decodeOfferTtlBlocks(hexToBytes(ttl))).toBe(decodeFunctionResult({ abi: ABI, functionName: 'offerTtlBlocks', data: ttl }));
  // state outside 0..3 is refused
  const bad = encodeFunctionResult({ abi: ABI, functionName: 'channel', result: [true, 1n, 4, 1, toHex(b(32, 9)), 1n, 0n] as any });
  expect(code(() => kx.decodeChannel(hexToBytes(bad)))).toBe('bad-abi');
});

/** A log as a node would return it, built by viem from the §4 ABI. */
function viemLog(eventName: string, args: Record<string, unknown>) {
  const ev = ABI.find((x) => x.type === 'event' && x.name === eventName) as any;
  const topics = encodeEventTopics({ abi: ABI, eventName: eventName as any, args: args as any }) as `0x${string}`[];
  const nonIndexed = ev.inputs.filter((i: any) => !i.indexed);
  const data = encodeAbiParameters(nonIndexed, nonIndexed.map((i: any) => args[i.name]));
  return { topics, data };
}

test('decodeLog agrees with viem decodeEventLog for all 7 events', () => {
  const cases: [string, Record<string, unknown>][] = [
    ['ReceiverKeySet', { receiver: toHex(A), version: 2, encKey: toHex(b(65, 1)), sig: toHex(b(65, 2)) }],
    ['OperatorSet', { receiver: toHex(A), operator: toHex(B), allowed: true }],
    ['OperatorSet', { receiver: toHex(A), operator: toHex(B), allowed: false }],
    ['DeviceEnrolled', { receiver: toHex(A), device: toHex(B), by: toHex(b(20, 3)) }],
    ['DeviceRevoked', { receiver: toHex(B), device: toHex(A), by: toHex(B) }],
    ['KeyOffered', { device: toHex(A), receiver: toHex(B), epoch: (1n << 64n) - 1n, keyVersion: 1, wrappedKey: toHex(b(137, 4)), commitment: toHex(b(32, 5)) }],
    ['KeyAccepted', { device: toHex(A), receiver: toHex(B), epoch: 3n, proof: toHex(b(32, 6)), sig: toHex(b(65, 7)) }],
    ['KeyRejected', { device: toHex(A), receiver: toHex(B), epoch: 4n, reason: 2 }],
  ];
  const norm = (v: unknown) => (v instanceof Uint8Array ? toHex(v) : typeof v === 'bigint' ? v : v);
  for (const [name, args] of cases) {
    const log = viemLog(name, args);
    const theirs = decodeEventLog({ abi: ABI, ...log } as any) as any;
    const ours = kx.decodeLog({ topics: log.topics.map((t) => hexToBytes(t)), data: hexToBytes(log.data) });
    expect(ours.event).toBe(theirs.eventName);
    const expected: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(theirs.args)) expected[k] = typeof v === 'string' ? v.toLowerCase() : typeof v === 'number' ? BigInt(v) : v;
    const got: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(ours)) if (k !== 'event') got[k] = norm(v);
    expect(got).toEqual(expected);
  }
  const good = viemLog('KeyAccepted', cases[6][1]);
  const topics = good.topics.map((t) => hexToBytes(t));
  expect(code(() => kx.decodeLog({ topics: [b(32, 1), ...topics.slice(1)], data: hexToBytes(good.data) }))).toBe('unknown-event');
  expect(code(() => kx.decodeLog({ topics: topics.slice(0, 3), data: hexToBytes(good.data) }))).toBe('bad-log');
  expect(code(() => kx.decodeLog({ topics: [], data: hexToBytes(good.data) }))).toBe('bad-log');
  const dirtyTopic = topics.map((t) => t.slice());
  dirtyTopic[1][0] = 1; // address topic with non-zero high bytes
  expect(code(() => kx.decodeLog({ topics: dirtyTopic, data: hexToBytes(good.data) }))).toBe('bad-abi');
  expect(code(() => kx.decodeLog({ topics, data: hexToBytes(good.data).slice(0, 100) }))).toBe('bad-abi');
});

describe('strict decoding', () => {
  const types: AbiType[] = ['bytes', 'uint32', 'bytes'];
  const canonical = encodeParams(types, [b(65, 1), 5n, b(3, 2)]);
  const word = (x: bigint) => hexToBytes(toHex(x, { size: 32 }));
  const withWord = (data: Uint8Array, i: number, w: Uint8Array) => { const d = data.slice(); d.set(w, i * 32); return d; };

  test('canonical encoding equals viem encodeAbiParameters and round-trips', () => {
    expect(toHex(canonical)).toBe(encodeAbiParameters(types.map((type) => ({ type })), [toHex(b(65, 1)), 5, toHex(b(3, 2))]));
    expect(decodeParams(types, canonical)).toEqual([b(65, 1), 5n, b(3, 2)]);
  });
  test('offsets out of range or out of place', () => {
    expect(code(() => decodeParams(types, withWord(canonical, 0, word(BigInt(canonical.length)))))).toBe('bad-abi');
    expect(code(() => decodeParams(types, withWord(canonical, 0, word(1n << 200n))))).toBe('bad-abi');
    expect(code(() => decodeParams(types, withWord(canonical, 0, word(0x80n))))).toBe('bad-abi'); // one word past where the tail starts
    expect(code(() => decodeParams(types, withWord(canonical, 2, word(0x60n))))).toBe('bad-abi'); // both tails share one
    // A gap word before the tail: viem accepts this non-canonical layout, we do not.
    const gap = new Uint8Array([...word(0x40n), ...word(0n), ...word(3n), ...b(3, 1), ...new Uint8Array(29)]);
    expect(decodeAbiParameters([{ type: 'bytes' }], toHex(gap))).toEqual([toHex(b(3, 1))]);
    expect(code(() => decodeParams(['bytes'], gap))).toBe('bad-abi');
  });
  test('lengths beyond the data, non-zero padding, trailing bytes, short head', () => {
    expect(code(() => decodeParams(types, withWord(canonical, 3, word(1000n))))).toBe('bad-abi');
    const padded = canonical.slice();
    padded[0x80 + 65] = 1; // first padding byte after the 65-byte tail
    expect(code(() => decodeParams(types, padded))).toBe('bad-abi');
    expect(code(() => decodeParams(types, new Uint8Array([...canonical, ...new Uint8Array(32)])))).toBe('bad-abi');
    expect(code(() => decodeParams(types, canonical.slice(0, canonical.length - 32)))).toBe('bad-abi');
    expect(code(() => decodeParams(types, canonical.slice(0, 64)))).toBe('bad-abi');
  });
  test('static words: high bytes of uintN/address must be zero, bool 0 or 1', () => {
    expect(code(() => decodeParams(['uint8'], word(256n)))).toBe('bad-abi');
    expect(code(() => decodeParams(['uint32'], word(1n << 32n)))).toBe('bad-abi');
    expect(code(() => decodeParams(['uint64'], word(1n << 64n)))).toBe('bad-abi');
    expect(decodeParams(['uint256'], word((1n << 256n) - 1n))).toEqual([(1n << 256n) - 1n]);
    expect(code(() => decodeParams(['address'], word(1n << 160n)))).toBe('bad-abi');
    expect(code(() => decodeParams(['bool'], word(2n)))).toBe('bad-abi');
    expect(code(() => encodeParams(['uint8'], [256n]))).toBe('bad-abi');
    expect(code(() => encodeParams(['address'], [new Uint8Array(19)]))).toBe('bad-abi');
    expect(code(() => parseSignatureTypes('f(uint128)'))).toBe('bad-abi');
    expect(code(() => parseSignatureTypes('f(address'))).toBe('bad-abi');
  });
  test('keccak sanity: selector() is keccak of the text', () => {
    expect(toHex(selector('transfer(address,uint256)'))).toBe(keccak256(new TextEncoder().encode('transfer(address,uint256)')).slice(0, 10));
  });
});

test('the tables match the compiled contracts/KeyExchange.sol ABI (selectors, outputs, events, errors)', async () => {
  const { build } = await import('../../contracts/build.js');
  const { loadArtifact } = await import('../../contracts/artifact.js');
  build(); // no-op when contracts/build is up to date
  const abi = loadArtifact().abi as readonly any[];
  const fns = abi.filter((x) => x.type === 'function');
  for (const [name, f] of Object.entries(kx.FUNCTIONS)) {
    const c = fns.find((x) => x.name === name);
    expect(c).toBeDefined();
    expect(toFunctionSelector(c)).toBe(f.selector);
    expect(c.outputs.map((o: any) => o.type)).toEqual([...f.outputs]);
  }
  for (const [name, e] of Object.entries(kx.EVENTS)) {
    const c = abi.find((x) => x.type === 'event' && x.name === name);
    expect(toEventSelector(c)).toBe(e.topic0);
    expect(c.inputs.filter((i: any) => i.indexed).map((i: any) => [i.name, i.type])).toEqual(e.indexed.map((p) => [...p]));
    expect(c.inputs.filter((i: any) => !i.indexed).map((i: any) => [i.name, i.type])).toEqual(e.data.map((p) => [...p]));
  }
  const errs = abi.filter((x) => x.type === 'error');
  expect(errs.map((e) => e.name).sort()).toEqual(Object.keys(kx.ERRORS).sort());
  for (const e of errs) expect(toFunctionSelector(e)).toBe(kx.ERRORS[e.name as kx.ErrorName]);
});
