/**
 * The KeyExchange contract interface (PROTOCOL.md §4) over lib/abi.ts: calldata
 * for every function, decoders for the views, event topics and log decoding,
 * and the custom errors' selectors. Selectors and topics are written out as
 * constants (keccak of the signature beside each; test/lib/abi.test.ts
 * recomputes them) so the device does not hash ~30 signatures at load.
 */
import { decodeParams, decodeWord, encodeCall, type AbiType, type AbiValue } from './abi.js';
import { bytesToHex, equalBytes, hexToBytes, type Hex } from './bytes.js';
import { IotkxError, check } from './errors.js';

interface FunctionSpec {
  readonly signature: string;
  readonly selector: Hex;
  readonly inputs: readonly AbiType[];
  readonly outputs: readonly AbiType[];
}

/** PROTOCOL.md §4, selector = keccak(signature)[0..4]. */
export const FUNCTIONS = {
  setReceiverKey: { signature: 'setReceiverKey(bytes,bytes)', selector: '0x6b36e452', inputs: ['bytes', 'bytes'], outputs: [] },
  setOperator: { signature: 'setOperator(address,bool)', selector: '0x558a7297', inputs: ['address', 'bool'], outputs: [] },
  enroll: { signature: 'enroll(address,address)', selector: '0x4eb42d41', inputs: ['address', 'address'], outputs: [] },
  revoke: { signature: 'revoke(address,address)', selector: '0xdcf3fb2a', inputs: ['address', 'address'], outputs: [] },
  offerKey: {
    signature: 'offerKey(address,uint64,uint32,bytes,bytes32)', selector: '0x8b0ebcc5',
    inputs: ['address', 'uint64', 'uint32', 'bytes', 'bytes32'], outputs: [],
  },
  acceptKey: { signature: 'acceptKey(address,uint64,bytes32,bytes)', selector: '0x14a657f3', inputs: ['address', 'uint64', 'bytes32', 'bytes'], outputs: [] },
  rejectKey: { signature: 'rejectKey(address,uint64,uint8)', selector: '0xfe08daa0', inputs: ['address', 'uint64', 'uint8'], outputs: [] },
  receiverKey: { signature: 'receiverKey(address)', selector: '0x3705a903', inputs: ['address'], outputs: ['bytes', 'uint32', 'bytes'] },
  channel: {
    signature: 'channel(address,address)', selector: '0x2b10eefa', inputs: ['address', 'address'],
    outputs: ['bool', 'uint64', 'uint8', 'uint32', 'bytes32', 'uint64', 'uint64'],
  },
  isOperator: { signature: 'isOperator(address,address)', selector: '0xb6363cf2', inputs: ['address', 'address'], outputs: ['bool'] },
  offerTtlBlocks: { signature: 'offerTtlBlocks()', selector: '0xc15dec5d', inputs: [], outputs: ['uint64'] },
} as const satisfies Record<string, FunctionSpec>;

export type FunctionName = keyof typeof FUNCTIONS;

function call(name: FunctionName, values: AbiValue[]): Uint8Array {
  const f: FunctionSpec = FUNCTIONS[name];
  return encodeCall(hexToBytes(f.selector), f.inputs, values);
}

/* ---------- calldata ---------- */

export const encodeSetReceiverKey = (encKey: Uint8Array, sig: Uint8Array) => call('setReceiverKey', [encKey, sig]);
export const encodeSetOperator = (operator: Uint8Array, allowed: boolean) => call('setOperator', [operator, allowed]);
export const encodeEnroll = (receiver: Uint8Array, device: Uint8Array) => call('enroll', [receiver, device]);
export const encodeRevoke = (receiver: Uint8Array, device: Uint8Array) => call('revoke', [receiver, device]);
export const encodeOfferKey = (o: { receiver: Uint8Array; epoch: bigint; keyVersion: bigint; wrappedKey: Uint8Array; commitment: Uint8Array }) =>
  call('offerKey', [o.receiver, o.epoch, o.keyVersion, o.wrappedKey, o.commitment]);
export const encodeAcceptKey = (a: { device: Uint8Array; epoch: bigint; proof: Uint8Array; sig: Uint8Array }) =>
  call('acceptKey', [a.device, a.epoch, a.proof, a.sig]);
/** reason: 1 undecryptable, 2 commitment mismatch, 3 policy (PROTOCOL.md §4). */
export const encodeRejectKey = (r: { device: Uint8Array; epoch: bigint; reason: bigint }) => call('rejectKey', [r.device, r.epoch, r.reason]);
export const encodeReceiverKeyCall = (receiver: Uint8Array) => call('receiverKey', [receiver]);
export const encodeChannelCall = (device: Uint8Array, receiver: Uint8Array) => call('channel', [device, receiver]);
export const encodeIsOperatorCall = (receiver: Uint8Array, operator: Uint8Array) => call('isOperator', [receiver, operator]);
export const encodeOfferTtlBlocksCall = () => call('offerTtlBlocks', []);

/* ---------- view results ---------- */

export interface ReceiverKeyRecord {
  encKey: Uint8Array;
  version: bigint;
  sig: Uint8Array;
}

export function decodeReceiverKey(data: Uint8Array): ReceiverKeyRecord {
  const [encKey, version, sig] = decodeParams(FUNCTIONS.receiverKey.outputs, data) as [Uint8Array, bigint, Uint8Array];
  return { encKey, version, sig };
}

/** Channel `state` (PROTOCOL.md §4). */
export const ChannelState = { none: 0, offered: 1, accepted: 2, rejected: 3 } as const;

export interface ChannelRecord {
  enrolled: boolean;
  epoch: bigint;
  state: number;
  keyVersion: bigint;
  commitment: Uint8Array;
  offeredAt: bigint;
  acceptedAt: bigint;
}

export function decodeChannel(data: Uint8Array): ChannelRecord {
  const v = decodeParams(FUNCTIONS.channel.outputs, data);
  const state = Number(v[2] as bigint);
  check(state <= 3, 'bad-abi', 'channel: unknown state');
  return {
    enrolled: v[0] as boolean,
    epoch: v[1] as bigint,
    state,
    keyVersion: v[3] as bigint,
    commitment: v[4] as Uint8Array,
    offeredAt: v[5] as bigint,
    acceptedAt: v[6] as bigint,
  };
}

export const decodeIsOperator = (data: Uint8Array) => decodeParams(FUNCTIONS.isOperator.outputs, data)[0] as boolean;
export const decodeOfferTtlBlocks = (data: Uint8Array) => decodeParams(FUNCTIONS.offerTtlBlocks.outputs, data)[0] as bigint;

/* ---------- events ---------- */

type Param = readonly [name: string, type: AbiType];
interface EventSpec {
  readonly signature: string;
  readonly topic0: Hex;
  readonly indexed: readonly Param[];
  readonly data: readonly Param[];
}

/** PROTOCOL.md §4, topic0 = keccak(signature). */
export const EVENTS = {
  ReceiverKeySet: {
    signature: 'ReceiverKeySet(address,uint32,bytes,bytes)',
    topic0: '0xdcbb60a655ab4f85736fe8966b5c96be338bbd30719dff9f0a56b90c7ce59386',
    indexed: [['receiver', 'address']],
    data: [['version', 'uint32'], ['encKey', 'bytes'], ['sig', 'bytes']],
  },
  OperatorSet: {
    signature: 'OperatorSet(address,address,bool)',
    topic0: '0xceb576d9f15e4e200fdb5096d64d5dfd667e16def20c1eefd14256d8e3faa267',
    indexed: [['receiver', 'address'], ['operator', 'address']],
    data: [['allowed', 'bool']],
  },
  DeviceEnrolled: {
    signature: 'DeviceEnrolled(address,address,address)',
    topic0: '0xe1f4628bed951e20134fb195fb18c623808584ce8efddef46a7f10d7b37e350d',
    indexed: [['receiver', 'address'], ['device', 'address']],
    data: [['by', 'address']],
  },
  DeviceRevoked: {
    signature: 'DeviceRevoked(address,address,address)',
    topic0: '0xcdbdacc72401a75636785ccc2a7fca30be86b4fe1a26be8189437f0eda1fb402',
    indexed: [['receiver', 'address'], ['device', 'address']],
    data: [['by', 'address']],
  },
  KeyOffered: {
    signature: 'KeyOffered(address,address,uint64,uint32,bytes,bytes32)',
    topic0: '0x08ef92e27f4e256e6c66372ab40d363711ba3bf17a23d5713d0036938dbb367a',
    indexed: [['device', 'address'], ['receiver', 'address'], ['epoch', 'uint64']],
    data: [['keyVersion', 'uint32'], ['wrappedKey', 'bytes'], ['commitment', 'bytes32']],
  },
  KeyAccepted: {
    signature: 'KeyAccepted(address,address,uint64,bytes32,bytes)',
    topic0: '0x452ecf1a19e5c9126a586c6767b128131b6d49568db396a677506815149cc20a',
    indexed: [['device', 'address'], ['receiver', 'address'], ['epoch', 'uint64']],
    data: [['proof', 'bytes32'], ['sig', 'bytes']],
  },
  KeyRejected: {
    signature: 'KeyRejected(address,address,uint64,uint8)',
    topic0: '0x98aff89702b02d77f1a37d1fe8723226bbebe74376a550970640c023d42f8e79',
    indexed: [['device', 'address'], ['receiver', 'address'], ['epoch', 'uint64']],
    data: [['reason', 'uint8']],
  },
} as const satisfies Record<string, EventSpec>;

export type EventName = keyof typeof EVENTS;

/** topic0 of each event, as bytes (for eth_getLogs filters). */
export function eventTopic(name: EventName): Uint8Array {
  return hexToBytes(EVENTS[name].topic0);
}

export interface RawLog {
  topics: readonly Uint8Array[];
  data: Uint8Array;
}

/** A decoded event: `event` is its name, the other fields its parameters by name. */
export type DecodedLog = { event: EventName } & Record<string, AbiValue | string>;

/**
 * Decode a KeyExchange log. An unknown topic0 is 'unknown-event'; a wrong topic
 * count is 'bad-log'; malformed data or topics are 'bad-abi'.
 */
export function decodeLog(log: RawLog): DecodedLog {
  check(log && Array.isArray(log.topics) && log.topics.length > 0, 'bad-log', 'log: no topics');
  const t0 = log.topics[0];
  check(t0 instanceof Uint8Array && t0.length === 32, 'bad-log', 'log: topic0 must be 32 bytes');
  const hex = `0x${bytesToHex(t0)}`;
  const name = (Object.keys(EVENTS) as EventName[]).find((n) => EVENTS[n].topic0 === hex);
  if (!name) throw new IotkxError('unknown-event', `log: unknown event topic ${hex}`);
  const spec: EventSpec = EVENTS[name];
  check(log.topics.length === 1 + spec.indexed.length, 'bad-log', `log: ${name} has ${1 + spec.indexed.length} topics`);
  const out: DecodedLog = { event: name };
  spec.indexed.forEach(([field, type], i) => {
    out[field] = decodeWord(type, log.topics[i + 1]);
  });
  const values = decodeParams(spec.data.map((p) => p[1]), log.data);
  spec.data.forEach(([field], i) => {
    out[field] = values[i];
  });
  return out;
}

/* ---------- custom errors ---------- */

/** PROTOCOL.md §4 error table; contracts/KeyExchange.sol declares them without parameters. selector = keccak("Name()")[0..4]. */
export const ERRORS = {
  NotAuthorized: '0xea8e4eb5',
  NotEnrolled: '0xc950bf92',
  BadKey: '0xee9f2d53',
  BadSignature: '0x5cd5d233',
  BadEpoch: '0x0aa733db',
  UnknownKeyVersion: '0xfcc749be',
  NotOffered: '0xff43b88f',
  OfferExpired: '0x9cb13087',
  BadProof: '0x7ca55c77',
  BadReason: '0xe228f47f',
} as const satisfies Record<string, Hex>;

export type ErrorName = keyof typeof ERRORS;

/** The custom error named by revert data (its first 4 bytes), or undefined if none of §4's. */
export function errorName(revertData: Uint8Array): ErrorName | undefined {
  if (!(revertData instanceof Uint8Array) || revertData.length < 4) return undefined;
  const sel = revertData.subarray(0, 4);
  return (Object.keys(ERRORS) as ErrorName[]).find((n) => equalBytes(hexToBytes(ERRORS[n]), sel));
}
