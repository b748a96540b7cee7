// The compiled ABI is exactly PROTOCOL.md §4 (other implementations are tested against it), and the gas of the
// device's and receiver's transactions stays within the targets.
import { parseAbi, toEventSelector, toFunctionSelector, type AbiEvent, type AbiFunction } from 'viem';
import { loadArtifact } from '../../contracts/artifact.js';
import { build } from '../../contracts/build.js';
import { gasBench } from '../../bench/gas.js';

// Copied from PROTOCOL.md §4 (calldata → plain types for parseAbi).
const SPEC = parseAbi([
  'constructor(uint64 offerTtlBlocks)',
  'function setReceiverKey(bytes encKey, bytes sig)',
  'function setOperator(address operator, bool allowed)',
  'function enroll(address receiver, address device)',
  'function revoke(address receiver, address device)',
  'function offerKey(address receiver, uint64 epoch, uint32 keyVersion, bytes wrappedKey, bytes32 commitment)',
  'function acceptKey(address device, uint64 epoch, bytes32 proof, bytes sig)',
  'function rejectKey(address device, uint64 epoch, uint8 reason)',
  'function receiverKey(address receiver) view returns (bytes encKey, uint32 version, bytes sig)',
  'function channel(address device, address receiver) view returns (bool enrolled, uint64 epoch, uint8 state, uint32 keyVersion, bytes32 commitment, uint64 offeredAt, uint64 acceptedAt)',
  'function isOperator(address receiver, address operator) view returns (bool)',
  'function offerTtlBlocks() view returns (uint64)',
  'event ReceiverKeySet(address indexed receiver, uint32 version, bytes encKey, bytes sig)',
  'event OperatorSet(address indexed receiver, address indexed operator, bool allowed)',
  'event DeviceEnrolled(address indexed receiver, address indexed device, address by)',
  'event DeviceRevoked(address indexed receiver, address indexed device, address by)',
  'event KeyOffered(address indexed device, address indexed receiver, uint64 indexed epoch, uint32 keyVersion, bytes wrappedKey, bytes32 commitment)',
  'event KeyAccepted(address indexed device, address indexed receiver, uint64 indexed epoch, bytes32 proof, bytes sig)',
  'event KeyRejected(address indexed device, address indexed receiver, uint64 indexed epoch, uint8 reason)',
  'error NotAuthorized()', 'error NotEnrolled()', 'error BadKey()', 'error BadSignature()', 'error BadEpoch()',
  'error UnknownKeyVersion()', 'error NotOffered()', 'error OfferExpired()', 'error BadProof()', 'error BadReason()',
]);

beforeAll(() => build());

test('ABI has exactly the §4 functions, events and errors', () => {
  const abi = loadArtifact().abi as readonly { type: string; name?: string }[];
  const key = (x: { type: string; name?: string }) => `${x.type}:${x.name ?? ''}`;
  expect(abi.map(key).sort()).toEqual(SPEC.map(key).sort());
  for (const s of SPEC) {
    const c = abi.find((x) => key(x) === key(s)) as Record<string, unknown>;
    const ins = (x: Record<string, unknown>) => ((x.inputs ?? []) as { type: string; indexed?: boolean }[]).map((i) => [i.type, !!i.indexed]);
    expect([key(s), ins(c)]).toEqual([key(s), ins(s as never)]);
    if (s.type === 'function') {
      const f = s as AbiFunction;
      expect([f.name, (c.outputs as { type: string }[]).map((o) => o.type), c.stateMutability])
        .toEqual([f.name, f.outputs.map((o) => o.type), f.stateMutability]);
      expect(toFunctionSelector(c as never)).toBe(toFunctionSelector(f));
    }
    if (s.type === 'event') expect(toEventSelector(c as never)).toBe(toEventSelector(s as AbiEvent));
  }
});

test('gas within targets: offerKey ≤ 60k (epoch 1), ≤ 45k (later), acceptKey ≤ 40k', async () => {
  const rows = await gasBench();
  const gas = Object.fromEntries(rows.map((r) => [r.op, r]));
  expect(gas['offerKey (epoch 1)'].gasUsed).toBeLessThanOrEqual(60_000);
  expect(gas['offerKey (epoch 2)'].gasUsed).toBeLessThanOrEqual(45_000);
  expect(gas['acceptKey'].gasUsed).toBeLessThanOrEqual(40_000);
  for (const r of rows) expect(r.gasUsed).toBeGreaterThanOrEqual(Math.max(r.floor, r.floor7623));
});
