import '../helpers/node-random.js';
import { decode as cborxDecode } from 'cbor-x';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { hexToBytes, type Address, type Hex } from 'viem';
import { nodeRandom } from '../helpers/node-random.js';
import { channelId as viemChannelId } from '../../hosts/chain/signing.js';
import { Device } from '../../lib/device/device.js';
import { MAX_RESEALS_PER_DRAIN, ReadingQueue, readingsUrl, type QueueOptions } from '../../lib/device/queue.js';
import type { HttpResponse, Transport } from '../../lib/platform.js';
import { CHAIN_ID, PowerCut } from './fake-chain.js';
import { rig, type Rig } from './harness.js';

// The readings queue against the fake chain (an engine made active for real) and a
// scripted relay; envelopes are opened with independent code (noble HKDF/AEAD, cbor-x,
// viem's channelId) using the K the test receiver unwrapped.

const CONTRACT = '0x5FbDB2315678afecb367f032d93F642f64180aa3';

/** A relay whose /v1/readings answers are scripted; everything else goes to the fake chain. */
class FakeRelay {
  posts: Array<{ url: string; body: Uint8Array; contentType?: string }> = [];
  /** Status for the next POST (default 202); throw for a network error. */
  answer: (body: Uint8Array, n: number) => number = () => 202;
  constructor(private readonly chain: Transport) {}
  transport(): Transport {
    return {
      request: async (method, url, body, contentType): Promise<HttpResponse> => {
        if (!url.endsWith('/v1/readings')) return this.chain.request(method, url, body, contentType);
        const status = this.answer(body!, this.posts.length);
        this.posts.push({ url, body: body!.slice(), contentType });
        return { status, body: new Uint8Array(0) };
      },
    };
  }
}

async function activeRig(over: Record<string, unknown> = {}): Promise<{ r: Rig; relay: FakeRelay; queue: (o?: QueueOptions) => ReadingQueue }> {
  const r = await rig(over);
  await r.dev.run('active', { sleep: r.sleep });
  const relay = new FakeRelay(r.chain.transport());
  return { r, relay, queue: (o?: QueueOptions) => new ReadingQueue(r.storage, relay.transport(), o) };
}

/** Open an envelope with independent code: cbor-x, noble HKDF + XChaCha20-Poly1305, viem channelId. */
function open(r: Rig, env: Uint8Array): { epoch: bigint; seq: bigint; values: Record<string, number> } {
  const [version, dev, epoch, seq, nonce, ct] = cborxDecode(Buffer.from(env));
  expect(version).toBe(1);
  expect(Buffer.from(dev).toString('hex')).toBe(r.device.slice(2));
  const K = hexToBytes(r.chain.receiver.accepted.get(BigInt(epoch)) as Hex);
  const chan = hexToBytes(viemChannelId(CHAIN_ID, CONTRACT as Address, r.device as Address, r.chain.receiver.address as Address));
  const dataKey = hkdf(sha256, K, chan, new TextEncoder().encode('iotkx/1/data'), 32);
  const u64 = (x: bigint) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(x); return b; };
  const aad = Buffer.concat([Buffer.from('iotkx/1/reading'), dev, u64(BigInt(epoch)), u64(BigInt(seq))]);
  expect(Buffer.from(nonce.subarray(0, 8))).toEqual(u64(BigInt(seq)));
  const pt = xchacha20poly1305(dataKey, new Uint8Array(nonce), aad).decrypt(new Uint8Array(ct));
  return { epoch: BigInt(epoch), seq: BigInt(seq), values: cborxDecode(Buffer.from(pt)) };
}

const seqs = (r: Rig, envs: Uint8Array[]) => envs.map((e) => open(r, e).seq);
const T0 = 1_735_718_400;

test('readings URL sits beside /rpc (§9)', () => {
  expect(readingsUrl('http://relay.test/rpc')).toBe('http://relay.test/v1/readings');
  expect(readingsUrl('https://x.example/iotkx/rpc/')).toBe('https://x.example/iotkx/v1/readings');
  expect(readingsUrl('http://127.0.0.1:8545')).toBe('http://127.0.0.1:8545/v1/readings');
});

test('drains in order as application/cbor; deletes only what was acknowledged; a 5xx stops and keeps', async () => {
  const { r, relay, queue } = await activeRig();
  const q = queue();
  for (let i = 0; i < 5; i++) q.seal(r.dev, nodeRandom, T0 + i, { temp: 21 + i / 4, rh: 45 });
  expect(q.counters()).toMatchObject({ queued: 5, sent: 0, dropped: 0 });
  relay.answer = (_b, n) => (n < 2 ? 202 : n === 2 ? 200 : 503); // stored, stored, duplicate, then down
  const d = await q.drain(r.dev.config!.relayUrl);
  expect(d).toEqual({ sent: 3, refused: 0, resealed: 0, stopped: 'http-503', remaining: 2 });
  expect(relay.posts.map((p) => [p.url, p.contentType])).toEqual(Array(4).fill(['http://relay.test/v1/readings', 'application/cbor']));
  expect(seqs(r, relay.posts.map((p) => p.body))).toEqual([1n, 2n, 3n, 4n]);
  expect(open(r, relay.posts[0].body).values).toEqual({ t: T0, temp: 21, rh: 45 });
  // What is left is exactly the unacknowledged tail, also after a reboot.
  const q2 = queue();
  expect(seqs(r, q2.envelopes())).toEqual([4n, 5n]);
  expect(q2.counters()).toMatchObject({ queued: 2, sent: 3, dropped: 0 });
  // A network error stops too, and keeps everything.
  relay.answer = () => { throw new Error('ECONNREFUSED'); };
  expect(await q2.drain(r.dev.config!.relayUrl)).toMatchObject({ sent: 0, stopped: 'transport-error', remaining: 2 });
  relay.answer = () => 202;
  expect(await q2.drain(r.dev.config!.relayUrl)).toEqual({ sent: 2, refused: 0, resealed: 0, stopped: null, remaining: 0 });
  expect(seqs(r, relay.posts.slice(-2).map((p) => p.body))).toEqual([4n, 5n]);
  expect([...r.storage.map.keys()].filter((k) => /^q\d+$/.test(k))).toEqual([]);
  // `sent` is persisted with the failed drain (3), not after every success (flash wear): a reboot may lag below STATS_EVERY_SENT.
  expect(queue().counters()).toEqual({ queued: 0, sent: 3, dropped: 0, droppedFull: 0, refused: 0, resealed: 0 });
});

test('400/413 drop that envelope (counted); 404/429 stop like a 5xx', async () => {
  const { r, relay, queue } = await activeRig();
  const q = queue();
  for (let i = 0; i < 5; i++) q.seal(r.dev, nodeRandom, T0 + i, { temp: 20 });
  relay.answer = (_b, n) => [202, 400, 413, 404][n] ?? 202;
  expect(await q.drain(r.dev.config!.relayUrl)).toEqual({ sent: 1, refused: 2, resealed: 0, stopped: 'http-404', remaining: 2 });
  relay.answer = (_b, n) => (n === 4 ? 429 : 202);
  expect(await q.drain(r.dev.config!.relayUrl)).toMatchObject({ sent: 0, stopped: 'http-429', remaining: 2 });
  expect(seqs(r, q.envelopes())).toEqual([4n, 5n]);
  expect(q.counters()).toEqual({ queued: 2, sent: 1, dropped: 2, droppedFull: 0, refused: 2, resealed: 0 });
});

test('409 (seq squatted, §7): the same measurement is re-sealed under the next seq and sent, never dropped', async () => {
  const { r, relay, queue } = await activeRig();
  const q = queue();
  const n = 6;
  for (let i = 0; i < n; i++) q.seal(r.dev, nodeRandom, T0 + i, { temp: 20 + i, rh: 40 });
  // An attacker filled seqs 2..4 and 7..9 (the ones the re-seals will be given next) with 4 junk bodies each.
  const squatted = new Set([2n, 3n, 4n, 7n, 8n, 9n]);
  relay.answer = (b) => (squatted.has(open(r, b).seq) ? 409 : 202);
  const d = await q.drain(r.dev.config!.relayUrl);
  expect(d).toEqual({ sent: n, refused: 0, resealed: 6, stopped: null, remaining: 0 });
  const acked = relay.posts.filter((p) => !squatted.has(open(r, p.body).seq)).map((p) => open(r, p.body));
  // Every measurement arrived once, each with its own t and values; seqs never reused.
  expect(acked.map((a) => a.values).sort((a, b) => a.t - b.t)).toEqual(Array.from({ length: n }, (_, i) => ({ t: T0 + i, temp: 20 + i, rh: 40 })));
  expect(new Set(relay.posts.map((p) => open(r, p.body).seq)).size).toBe(relay.posts.length);
  expect(acked.map((a) => a.seq)).toEqual([1n, 10n, 11n, 12n, 5n, 6n]);
  expect(q.counters()).toMatchObject({ queued: 0, sent: n, dropped: 0, resealed: 6 });
});

test('a relay that answers 409 to everything: bounded re-seals per drain, the measurement stays queued (also across a reboot)', async () => {
  const { r, relay, queue } = await activeRig();
  const q = queue();
  q.seal(r.dev, nodeRandom, T0, { temp: 21, rh: 50 });
  relay.answer = () => 409;
  const d = await q.drain(r.dev.config!.relayUrl, { keys: r.dev, random: nodeRandom });
  expect(d).toEqual({ sent: 0, refused: 0, resealed: MAX_RESEALS_PER_DRAIN, stopped: 'squatted', remaining: 1 });
  expect(relay.posts.length).toBe(MAX_RESEALS_PER_DRAIN + 1);
  // What is stored is the latest re-seal: a reboot sends that one, with the same measurement.
  r.reboot();
  const q2 = queue();
  expect(q2.envelopes().map((e) => open(r, e))).toEqual([{ epoch: 1n, seq: BigInt(MAX_RESEALS_PER_DRAIN + 1), values: { t: T0, temp: 21, rh: 50 } }]);
  // Without keys (a fresh boot, nothing sealed yet) a 409 stops the drain and keeps the envelope.
  expect(await q2.drain(r.dev.config!.relayUrl)).toMatchObject({ sent: 0, refused: 0, stopped: 'cannot-reseal', remaining: 1 });
  relay.answer = (_b, k) => (k % 2 ? 202 : 409);
  expect(await q2.drain(r.dev.config!.relayUrl, { keys: r.dev, random: nodeRandom })).toMatchObject({ sent: 1, resealed: 1, remaining: 0 });
  expect(open(r, relay.posts[relay.posts.length - 1].body).values).toEqual({ t: T0, temp: 21, rh: 50 });
});

test('bounded: when full the oldest readings are dropped and counted; order kept; NVS limits hold', async () => {
  const { r, relay, queue } = await activeRig();
  const q = queue({ slots: 3, slotBytes: 300 });
  const n = 40;
  for (let i = 0; i < n; i++) q.seal(r.dev, nodeRandom, T0 + i, { temp: 21.123456 + i, rh: 45.5 });
  const c = q.counters();
  expect(c.droppedFull).toBeGreaterThan(0);
  expect(c.queued + c.droppedFull).toBe(n);
  const perSlot = Math.floor((300 - 5) / 100); // envelopes are > 98 B here
  expect(c.queued).toBeLessThanOrEqual(3 * perSlot + perSlot); // the ring, and RAM up to one slot's worth
  const held = seqs(r, q.envelopes());
  expect(held).toEqual(Array.from({ length: c.queued }, (_, i) => BigInt(n - c.queued + 1 + i))); // the newest, in order
  for (const [k, v] of r.storage.map) {
    expect(k.length).toBeLessThanOrEqual(15);
    expect(v.length).toBeLessThanOrEqual(k.startsWith('q') && k !== 'qs' ? 300 : 4000);
  }
  // A reboot sees the spilled part (RAM's unsaved tail is a §7 gap) and the counters; draining sends the newest in order.
  const spilled = held.slice(0, held.length - q.unsaved);
  const q2 = queue({ slots: 3, slotBytes: 300 });
  expect(q2.counters()).toEqual({ ...c, queued: spilled.length });
  await q2.drain(r.dev.config!.relayUrl);
  expect(seqs(r, relay.posts.map((p) => p.body))).toEqual(spilled);
});

test('default size: a full queue stays within 10 KiB of NVS values', async () => {
  const { r, queue } = await activeRig();
  const q = queue();
  for (let i = 0; i < 200; i++) q.seal(r.dev, nodeRandom, T0 + i, { temp: 21.1 + i / 7, rh: 45.3 });
  let total = 0;
  for (const [k, v] of r.storage.map) total += k.length + v.length;
  expect(q.counters().queued).toBeGreaterThanOrEqual(60);
  expect(total).toBeLessThan(10 * 1024);
  // eslint-disable-next-line no-console
  console.log(`default queue full: ${q.counters().queued} readings held, ${total} B of NVS keys+values in all`);
});

test('a power cut between sealing and enqueueing never reuses a seq', async () => {
  const { r, relay, queue } = await activeRig();
  const opts = { ramEnvelopes: 1 }; // every reading spilled at once: the cut falls on its slot write
  let q = queue(opts);
  q.seal(r.dev, nodeRandom, T0, { temp: 20 }); // seq 1 (reserves up to 16)
  r.storage.cutAt = 0; // the slot write of the next reading
  expect(() => q.seal(r.dev, nodeRandom, T0 + 1, { temp: 21 })).toThrow(PowerCut);
  r.reboot();
  q = queue(opts);
  const next = q.seal(r.dev, nodeRandom, T0 + 2, { temp: 22 });
  expect(next.seq).toBeGreaterThan(2n);
  // Cut the high-water-mark write itself: seq 16 was the last reserved; 17 needs a write.
  for (let s = next.seq + 1n; s <= 16n * 2n; s++) q.seal(r.dev, nodeRandom, T0 + 3, { temp: 23 });
  r.storage.cutAt = 0;
  expect(() => q.seal(r.dev, nodeRandom, T0 + 4, { temp: 24 })).toThrow(PowerCut);
  r.reboot();
  q = queue(opts);
  q.seal(r.dev, nodeRandom, T0 + 5, { temp: 25 });
  await q.drain(r.dev.config!.relayUrl);
  const sent = seqs(r, relay.posts.map((p) => p.body));
  expect(new Set(sent).size).toBe(sent.length);
  expect(sent).toEqual([...sent].sort((a, b) => (a < b ? -1 : 1)));
  expect(sent).not.toContain(2n);
});

test('flash wear: with a relay that acknowledges, the queue writes nothing; only the seq mark is written, once per 16 readings', async () => {
  const { r, relay, queue } = await activeRig();
  const q = queue();
  r.storage.writes = [];
  for (let i = 0; i < 160; i++) {
    q.seal(r.dev, nodeRandom, T0 + i, { temp: 20 + i / 100, rh: 40 });
    expect(await q.drain(r.dev.config!.relayUrl)).toMatchObject({ sent: 1, stopped: null, remaining: 0 });
  }
  expect(relay.posts.length).toBe(160);
  expect(r.storage.writes.filter((k) => k.startsWith('q'))).toEqual([]);
  expect(r.storage.writes.length).toBeLessThanOrEqual(160 / 16 + 1);
  expect(new Set(r.storage.writes)).toEqual(new Set(['seq']));
});

test('flash wear: the relay stops acknowledging → RAM is spilled (a write per batch); acknowledgements do not rewrite a slot', async () => {
  const { r, relay, queue } = await activeRig();
  const q = queue({ ramEnvelopes: 4, maxPerDrain: 3 });
  const qWrites = () => r.storage.writes.filter((k) => /^q\d+$/.test(k)).length;
  relay.answer = () => 503;
  q.seal(r.dev, nodeRandom, T0, { temp: 1 });
  r.storage.writes = [];
  expect(await q.drain(r.dev.config!.relayUrl)).toMatchObject({ stopped: 'http-503', remaining: 1 });
  expect(qWrites()).toBe(1); // the failed drain spilled RAM at once: slot [1]
  for (let i = 1; i <= 9; i++) q.seal(r.dev, nodeRandom, T0 + i, { temp: 1 + i });
  // RAM full at 4: [2..5], then [6..9], each appended to the slot while it fits one; [10] still in RAM.
  expect(qWrites()).toBe(3);
  expect(q.unsaved).toBe(1);
  expect(q.counters().queued).toBe(10);
  relay.answer = () => 202;
  r.storage.writes = [];
  expect(await q.drain(r.dev.config!.relayUrl)).toMatchObject({ sent: 3, stopped: null, remaining: 7 });
  expect(r.storage.writes).toEqual([]); // three acknowledgements, no write
  expect(seqs(r, q.envelopes())).toEqual([4n, 5n, 6n, 7n, 8n, 9n, 10n]);
  // A power cut now: the spilled readings are all there (the 3 acknowledged ones resent, the relay says
  // duplicate); [10], only in RAM and never acknowledged, is a gap (§7).
  r.reboot();
  const q2 = queue({ ramEnvelopes: 4 });
  expect(seqs(r, q2.envelopes())).toEqual([1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n, 9n]);
  const seen = new Set(relay.posts.map((p) => Buffer.from(p.body).toString('hex')));
  relay.answer = (b) => (seen.has(Buffer.from(b).toString('hex')) ? 200 : 202);
  expect(await q2.drain(r.dev.config!.relayUrl)).toMatchObject({ sent: 9, remaining: 0 });
  expect([...r.storage.map.keys()].filter((key) => /^q\d+$/.test(key))).toEqual([]);
});

test('non-finite values are refused before a seq is reserved', async () => {
  const { r, queue } = await activeRig();
  const q = queue();
  expect(() => q.seal(r.dev, nodeRandom, T0, { temp: NaN })).toThrow(expect.objectContaining({ code: 'bad-reading' }));
  expect(q.seal(r.dev, nodeRandom, T0, { temp: 1 }).seq).toBe(1n);
});

test('Device: readings every intervalSec; previous-epoch envelopes are sent before its key is released', async () => {
  const r = await rig({ rotation: { maxReadings: 3, maxAgeSec: 0 }, intervalSec: 60 });
  const relay = new FakeRelay(r.chain.transport());
  let relayUp = false;
  const prevAtPost: Array<[bigint, bigint | undefined]> = [];
  relay.answer = (b) => {
    if (!relayUp) return 503;
    prevAtPost.push([open(r, b).epoch, dev.engine.previousKey()?.epoch]);
    return 202;
  };
  const sensor = { read: () => ({ temp: 21.5, rh: 45 }) };
  const dev = new Device({ engine: r.dev, queue: new ReadingQueue(r.storage, relay.transport()), sensor, clock: r.clock, random: nodeRandom });
  for (let i = 0; i < 500 && dev.engine.activeKey()?.epoch !== 2n; i++) r.sleep(await dev.tick());
  expect(dev.engine.activeKey()?.epoch).toBe(2n);
  expect(dev.engine.previousKey()?.epoch).toBe(1n); // epoch-1 readings still queued
  expect(dev.queue.holdsEpoch(1n)).toBe(true);
  relayUp = true;
  for (let i = 0; i < 50 && dev.queue.size > 0; i++) r.sleep(await dev.tick());
  expect(dev.queue.size).toBe(0);
  expect(dev.engine.previousKey()).toBeUndefined();
  const e1 = prevAtPost.filter(([e]) => e === 1n);
  expect(e1.length).toBeGreaterThanOrEqual(3);
  expect(e1.every(([, prev]) => prev === 1n)).toBe(true); // released only after they were all sent
  // Readings are spaced by intervalSec: t values of consecutive epoch-2 readings differ by 60 s.
  const ts = relay.posts.filter((p) => open(r, p.body).epoch === 2n).map((p) => open(r, p.body).values.t);
  for (let i = 1; i < ts.length; i++) expect(ts[i] - ts[i - 1]).toBe(60);
  expect(dev.status()).toMatchObject({ state: 'active', epoch: '2', readings: { queued: 0, dropped: 0 } });
}, 60_000);
