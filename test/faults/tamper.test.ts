// Replay and tampering through the whole system (issue 6, PROTOCOL.md §7, §9, §5.6): real
// anvil, relay, receiver and Node devices. A replayed envelope is a relay duplicate; a
// bit-flipped or relabelled one is stored by the relay as a variant (only the receiver can
// judge it) and refused by the receiver as auth-failed without touching its state; readings
// of a revoked device, an unaccepted epoch or an unknown device are refused by reason.
import '../helpers/node-random.js';
import { nodeRandom } from '../helpers/node-random.js';
import { randomBytes } from 'node:crypto';
import type { Address } from 'viem';
import { decodeEnvelope, encodeEnvelope } from '../../lib/envelope.js';
import { channelId, dataKeyOf } from '../../lib/ids.js';
import { sealReading } from '../../lib/reading.js';
import { hexBytes, startFaultSystem, until, type FaultDevice, type FaultSystem } from './system.js';

jest.setTimeout(180_000);

let sys: FaultSystem;
let a: FaultDevice;
let b: FaultDevice;
beforeAll(async () => {
  // The relay's channel check is off here: these tests reach the receiver's own refusals (an unknown device among them).
  sys = await startFaultSystem({ relay: { requireChannel: false } });
  a = await sys.addDevice('a');
  b = await sys.addDevice('b');
  await until('both devices active with readings decrypted', () => [a, b].every((d) => sys.stored(d.address).length >= 2), 120_000);
}, 180_000);
afterAll(() => sys?.stop());

const post = async (body: Uint8Array) => {
  const r = await fetch(`${sys.relay.url}/v1/readings`, { method: 'POST', body: Buffer.from(body), headers: { 'content-type': 'application/cbor' } });
  return { status: r.status, json: (await r.json()) as any };
};
const relayHeld = async () => ((await (await fetch(`${sys.relay.url}/v1/readings?limit=1000`)).json()) as any).envelopes as string[];
const refused = async (reason: string) =>
  (await sys.receiver.metrics.readingsRefused.get()).values.filter((v) => v.labels.reason === reason).reduce((n, v) => n + v.value, 0);
/** The receiver's whole view of a device: §9 devices entry, stored readings, and the epoch rows' seq state. */
async function receiverState(d: FaultDevice) {
  const devices = (await (await fetch(`${sys.receiver.url}/v1/devices`)).json()) as any[];
  const entry = devices.find((x) => x.device.toLowerCase() === d.address.toLowerCase());
  const epochs = sys.receiver.store.db.prepare('SELECT epoch, seq_state, readings, replays FROM epochs WHERE device = ? ORDER BY epoch').all(d.address.toLowerCase());
  return { entry, epochs, stored: sys.stored(d.address) };
}
/** Stop a device's own traffic so the receiver's state for it can only change through what the test posts. */
async function quiet(d: FaultDevice) {
  await d.stop();
  await until(`${d.address}'s readings all pulled`, async () => {
    await sys.receiver.sync();
    const want = d.posts.filter((p) => p.status === 202 || p.status === 200).length;
    return sys.stored(d.address).length === want;
  }, 60_000);
}
/** Pull until the receiver has judged everything the relay holds. */
async function drainReceiver() {
  const n = (await relayHeld()).length;
  await until('receiver caught up with the relay', async () => {
    await sys.receiver.sync();
    const cur = sys.receiver.store.getMeta('relay_cursor');
    return cur !== undefined && Number(cur) >= n;
  }, 30_000);
}

test('a replayed envelope is refused by the relay as a duplicate, and changes nothing', async () => {
  await quiet(a);
  const sent = a.posts.find((p) => p.status === 202)!;
  const before = (await relayHeld()).length;
  const r = await post(sent.body);
  expect(r).toEqual({ status: 200, json: { stored: false, duplicate: true } });
  expect((await relayHeld()).length).toBe(before);
});

test('bit-flipped and relabelled envelopes: stored by the relay as variants, refused by the receiver as auth-failed, no receiver state changed', async () => {
  const last = a.posts.filter((p) => p.status === 202).at(-1)!;
  const env = decodeEnvelope(last.body);
  const stateBefore = await receiverState(a);
  const authFailedBefore = await refused('auth-failed');

  const flippedCt = env.ciphertext.slice();
  flippedCt[3] ^= 0x01; // one bit of the ciphertext
  const flippedTag = env.ciphertext.slice();
  flippedTag[flippedTag.length - 1] ^= 0x80; // one bit of the tag
  const nonce = env.nonce.slice();
  nonce[23] ^= 0x01;
  const forgeries = [
    encodeEnvelope({ ...env, ciphertext: flippedCt }),
    encodeEnvelope({ ...env, ciphertext: flippedTag }),
    encodeEnvelope({ ...env, nonce }),
    encodeEnvelope({ ...env, seq: env.seq + 50n }), // a future seq: would open a 49-seq gap if it were believed
    encodeEnvelope({ ...env, seq: env.seq + 1n }),
  ];
  for (const f of forgeries) {
    const r = await post(f);
    expect(r.status).toBe(202); // the relay cannot tell: only the receiver holds K (§9 variants)
    expect(r.json.stored).toBe(true);
  }
  await drainReceiver();
  expect(await refused('auth-failed')).toBe(authFailedBefore + forgeries.length);
  expect(await receiverState(a)).toEqual(stateBefore);
  // The reason is visible to an operator on /metrics.
  const text = await (await fetch(`${sys.receiver.url}/metrics`)).text();
  expect(text).toMatch(new RegExp(`iotkx_receiver_readings_refused_total\\{reason="auth-failed"\\} ${authFailedBefore + forgeries.length}`));
});

test('an envelope for an epoch that was never accepted, or from an unknown device, is refused by reason', async () => {
  const active = a.device.engine.activeKey()!;
  const stateBefore = await receiverState(a);
  const unknownEpochBefore = await refused('unknown-epoch');
  const unknownDeviceBefore = await refused('unknown-device');
  const ch = (device: string) => channelId(BigInt(sys.chainId), hexBytes(sys.contract), hexBytes(device), hexBytes(sys.receiverAddress));
  const device = hexBytes(a.address);
  // The device's genuine K, but labelled with the next epoch (not offered, not accepted)…
  const nextEpoch = sealReading({ dataKey: dataKeyOf(active.K, ch(a.address)), device, epoch: active.epoch + 1n, seq: 1n, values: { t: 1, temp: 20 }, random: nodeRandom });
  // …and a fresh K for that epoch, as an attacker who offered nothing would use.
  const freshK = sealReading({ dataKey: dataKeyOf(new Uint8Array(randomBytes(32)), ch(a.address)), device, epoch: active.epoch + 1n, seq: 2n, values: { t: 1, temp: 20 }, random: nodeRandom });
  const stranger = `0x${randomBytes(20).toString('hex')}`;
  const unknown = sealReading({ dataKey: dataKeyOf(new Uint8Array(randomBytes(32)), ch(stranger)), device: hexBytes(stranger), epoch: 1n, seq: 1n, values: { t: 1 }, random: nodeRandom });
  for (const e of [nextEpoch, freshK, unknown]) expect((await post(e)).status).toBe(202);
  await drainReceiver();
  expect(await refused('unknown-epoch')).toBe(unknownEpochBefore + 2);
  expect(await refused('unknown-device')).toBe(unknownDeviceBefore + 1);
  expect(await receiverState(a)).toEqual(stateBefore);
});

test('after revocation, the device\'s further readings are refused as revoked, genuine as they are', async () => {
  const storedBefore = sys.stored(b.address).length;
  await sys.enroll(b.address as Address, 'revoke');
  await until('the receiver saw the revocation', async () => {
    await sys.receiver.sync();
    const devices = (await (await fetch(`${sys.receiver.url}/v1/devices`)).json()) as any[];
    return devices.find((x) => x.device.toLowerCase() === b.address.toLowerCase())?.state === 'revoked';
  }, 60_000);
  const revokedBefore = await refused('revoked');
  // The device learns of the revocation only at its next channel() check, so it may still be
  // sealing: whatever it posts from now on is authentic, and refused.
  const active = b.device.engine.activeKey()!;
  const ch = channelId(BigInt(sys.chainId), hexBytes(sys.contract), hexBytes(b.address), hexBytes(sys.receiverAddress));
  const genuine = sealReading({ dataKey: dataKeyOf(active.K, ch), device: hexBytes(b.address), epoch: active.epoch, seq: 1_000_000n, values: { t: Math.floor(Date.now() / 1000), temp: 21 }, random: nodeRandom });
  expect((await post(genuine)).status).toBe(202);
  await b.stop();
  await drainReceiver();
  expect(await refused('revoked')).toBeGreaterThanOrEqual(revokedBefore + 1);
  const stored = sys.stored(b.address);
  expect(stored).not.toContain(`${active.epoch}:1000000`);
  expect(stored.length).toBeGreaterThanOrEqual(storedBefore);
  // Every envelope b got a 202 for was judged: stored if judged before the revocation, refused as revoked after.
  const acked = b.posts.filter((p) => p.status === 202).length;
  expect(await refused('revoked')).toBe(acked + 1 - stored.length);
});
