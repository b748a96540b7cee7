// Readings ingestion through a stand-in relay (GET /v1/readings as in PROTOCOL.md §9) and the receiver's §9
// HTTP API, after a real key exchange on anvil. Offers are independent (viem + eciesjs); envelopes are sealed
// with lib/reading (the device's code) or, for the cases it refuses to make, by hand with @noble/ciphers.
import '../helpers/node-random.js';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ECIES_CONFIG, encrypt as eciesEncrypt } from 'eciesjs';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, concatHex, encodeAbiParameters, hexToBytes, keccak256, toHex as vToHex, type Address, type Hex } from 'viem';
import { setupChain, type Actor, type ChainEnv } from '../helpers/chain.js';
import { startReceiver, type RunningReceiver } from '../../hosts/receiver/receiver.js';
import { sealReading } from '../../lib/reading.js';
import { encodeEnvelope } from '../../lib/envelope.js';
import { nodeRandom } from '../helpers/node-random.js';

ECIES_CONFIG.symmetricAlgorithm = 'xchacha20';

let env: ChainEnv;
let dir: string;
let relay: Server;
let relayUrl: string;
const relayed: Uint8Array[] = [];
let rcv: RunningReceiver;

/** §9 relay stand-in: envelopes in the order stored, cursor = index of the next one. */
function startRelay(): Promise<void> {
  relay = createServer((req, res) => {
    const url = new URL(req.url!, 'http://relay');
    const after = Number(url.searchParams.get('after') ?? '0');
    const limit = Number(url.searchParams.get('limit') ?? '100');
    const page = relayed.slice(after, after + limit);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ envelopes: page.map((e) => bytesToHex(e)), next: String(after + page.length) }));
  });
  return new Promise((r) => relay.listen(0, '127.0.0.1', () => {
    relayUrl = `http://127.0.0.1:${(relay.address() as { port: number }).port}`;
    r();
  }));
}

interface Channel { dev: Actor; epoch: bigint; dataKey: Uint8Array }

function channelIdOf(device: Address, receiver: Address): Hex {
  return keccak256(encodeAbiParameters([{ type: 'uint256' }, { type: 'address' }, { type: 'address' }, { type: 'address' }],
    [BigInt(env.chainId), env.address, device, receiver]));
}

/** Independent offer; returns the data key of §7 computed with noble's HKDF. */
async function exchange(dev: Actor): Promise<Channel> {
  const [encKey, version] = await env.read<[Hex, number]>('receiverKey', [rcv.address]);
  const [, stored] = await env.read<[boolean, bigint]>('channel', [dev.address, rcv.address]);
  const epoch = stored + 1n;
  const K = bytesToHex(randomBytes(32));
  const chId = channelIdOf(dev.address, rcv.address);
  const proof = keccak256(concatHex([vToHex('iotkx/1/confirm'), K, chId, vToHex(epoch, { size: 8 })]));
  const wrapped = bytesToHex(eciesEncrypt(encKey.slice(2), Buffer.from(K.slice(2), 'hex')));
  const r = await env.tx(dev, 'offerKey', [rcv.address, epoch, version, wrapped, keccak256(proof)]);
  expect(r.error).toBeUndefined();
  await rcv.sync();
  const sent = rcv.store.db.prepare("SELECT action_tx FROM epochs WHERE state = 'acceptSent'").all() as { action_tx: Hex }[];
  for (const s of sent) await env.pub.waitForTransactionReceipt({ hash: s.action_tx, pollingInterval: 50 });
  await rcv.sync();
  const [, ep, state] = await env.read<[boolean, bigint, number]>('channel', [dev.address, rcv.address]);
  expect([ep, state]).toEqual([epoch, 2]);
  return { dev, epoch, dataKey: hkdf(sha256, hexToBytes(K), hexToBytes(chId), new TextEncoder().encode('iotkx/1/data'), 32) };
}

const now = () => Math.floor(Date.now() / 1000);
function seal(c: Channel, seq: bigint, values: Record<string, number> = { t: now(), temp: 21.5 }): Uint8Array {
  return sealReading({ dataKey: c.dataKey, device: hexToBytes(c.dev.address), epoch: c.epoch, seq, values, random: nodeRandom });
}

/** A reading whose plaintext holds NaN (lib refuses to seal one): CBOR {"t": 1, "x": NaN} sealed by hand. */
function sealNaN(c: Channel, seq: bigint): Uint8Array {
  const plaintext = Uint8Array.from([0xa2, 0x61, 0x74, 0x01, 0x61, 0x78, 0xf9, 0x7e, 0x00]);
  const seqBytes = hexToBytes(vToHex(seq, { size: 8 }));
  const nonce = new Uint8Array([...seqBytes, ...randomBytes(16)]);
  const aad = new Uint8Array([...new TextEncoder().encode('iotkx/1/reading'), ...hexToBytes(c.dev.address), ...hexToBytes(vToHex(c.epoch, { size: 8 })), ...seqBytes]);
  const ciphertext = xchacha20poly1305(c.dataKey, nonce, aad).encrypt(plaintext);
  return encodeEnvelope({ device: hexToBytes(c.dev.address), epoch: c.epoch, seq, nonce, ciphertext });
}

async function get(path: string, base = rcv.url, headers: Record<string, string> = {}) {
  const res = await fetch(base + path, { headers });
  const text = await res.text();
  let body: any;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: res.status, body, type: res.headers.get('content-type') };
}

const refused = async (reason: string) => {
  const text = await rcv.metrics.registry.getSingleMetricAsString('iotkx_receiver_readings_refused_total');
  const m = new RegExp(`reason="${reason}"} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
};
const deviceView = async (dev: Actor) => (await get('/v1/devices')).body.find((d: any) => d.device === dev.address.toLowerCase());

let a: Channel;

beforeAll(async () => {
  env = await setupChain(['receiver', 'd1', 'd2', 'd3'], 50);
  dir = mkdtempSync(join(tmpdir(), 'iotkx-rcv-ingest-'));
  await startRelay();
  rcv = await startReceiver({
    rpcUrl: env.anvil.rpcUrl, chainId: env.chainId, contract: env.address, startBlock: env.deployBlock,
    dataDir: dir, pollIntervalMs: 0, relayUrl, env: { IOTKX_RECEIVER_KEY: env.anvil.accounts[1].privateKey },
    exchange: { confirmations: 0 },
  });
  for (const d of ['d1', 'd2', 'd3']) await env.tx(env.actors.receiver, 'enroll', [rcv.address, env.actors[d].address]);
  a = await exchange(env.actors.d1);
}, 120_000);
afterAll(async () => {
  await rcv?.stop();
  relay?.close();
  await env?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('GET /healthz and the device list before any reading', async () => {
  expect(await get('/healthz')).toMatchObject({ status: 200, body: { ok: true } });
  const list = (await get('/v1/devices')).body;
  expect(list).toHaveLength(3); // every enrolled device, offered or not
  expect(await deviceView(env.actors.d1)).toEqual({
    device: env.actors.d1.address.toLowerCase(), epoch: '1', pendingEpoch: null, state: 'accepted', keyVersion: 1,
    readings: 0, lastSeq: null, gaps: 0,
  });
  expect(await deviceView(env.actors.d2)).toEqual({
    device: env.actors.d2.address.toLowerCase(), epoch: null, pendingEpoch: null, state: 'none', keyVersion: null,
    readings: 0, lastSeq: null, gaps: 0,
  });
});

test('seen seqs: gaps recorded, replays refused, forgeries change nothing, late envelopes fill gaps', async () => {
  relayed.push(seal(a, 1n), seal(a, 2n), seal(a, 5n));
  await rcv.sync();
  expect(await deviceView(env.actors.d1)).toMatchObject({ readings: 3, lastSeq: '5', gaps: 2 });
  // A replay of seq 2 (byte-identical) and a forgery for seq 9 (one bit flipped) and for gap seq 3.
  const forged9 = seal(a, 9n);
  forged9[forged9.length - 1] ^= 1;
  const forged3 = seal(a, 3n);
  forged3[forged3.length - 1] ^= 1;
  const replays = await refused('replay');
  const auth = await refused('auth-failed');
  relayed.push(relayed[1], forged9, forged3);
  await rcv.sync();
  expect(await refused('replay')).toBe(replays + 1);
  expect(await refused('auth-failed')).toBe(auth + 2);
  expect(await deviceView(env.actors.d1)).toMatchObject({ readings: 3, lastSeq: '5', gaps: 2 });
  // Late authentic seq 3 and 4 fill both gaps.
  relayed.push(seal(a, 4n, { t: now(), temp: -3.25, rh: 40 }), seal(a, 3n));
  await rcv.sync();
  expect(await deviceView(env.actors.d1)).toMatchObject({ readings: 5, lastSeq: '5', gaps: 0 });
});

test('NaN readings, unknown devices and malformed envelopes are refused and counted', async () => {
  const nan = await refused('non-finite');
  const unknown = await refused('unknown-device');
  const malformed = await refused('malformed');
  const stranger = new Uint8Array(seal(a, 6n));
  const other = { ...a, dev: { ...a.dev, address: bytesToHex(randomBytes(20)) as Address } };
  relayed.push(sealNaN(a, 6n), seal(other, 1n), Uint8Array.from([0x80]), stranger.slice(0, 10));
  await rcv.sync();
  expect(await refused('non-finite')).toBe(nan + 1);
  expect(await refused('unknown-device')).toBe(unknown + 1);
  expect(await refused('malformed')).toBe(malformed + 2);
  expect(await deviceView(env.actors.d1)).toMatchObject({ readings: 5, lastSeq: '5', gaps: 0 });
});

test('GET /v1/devices/<address>/readings: (epoch, seq) order, values, RFC 3339 receivedAt, paging, 404, 400', async () => {
  const addr = env.actors.d1.address;
  const p1 = await get(`/v1/devices/${addr}/readings?limit=2`);
  expect(p1.status).toBe(200);
  expect(p1.body.readings.map((r: any) => r.seq)).toEqual(['1', '2']);
  expect(p1.body.readings[0]).toEqual({ epoch: '1', seq: '1', values: { t: expect.any(Number), temp: 21.5 }, receivedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/) });
  expect(typeof p1.body.next).toBe('string');
  const p2 = await get(`/v1/devices/${addr.toLowerCase()}/readings?after=${p1.body.next}&limit=10`);
  expect(p2.body.readings.map((r: any) => r.seq)).toEqual(['3', '4', '5']);
  expect(p2.body.readings[1].values).toEqual({ t: expect.any(Number), temp: -3.25, rh: 40 });
  const p3 = await get(`/v1/devices/${addr}/readings?after=${p2.body.next}`);
  expect(p3.body).toEqual({ readings: [], next: p2.body.next });
  expect(await get(`/v1/devices/${bytesToHex(randomBytes(20))}/readings`)).toMatchObject({ status: 404, body: { error: 'unknown-device', message: expect.any(String) } });
  expect(await get(`/v1/devices/${addr}/readings?after=abc`)).toMatchObject({ status: 400, body: { error: 'bad-cursor' } });
  expect(await get(`/v1/devices/nothex/readings`)).toMatchObject({ status: 400, body: { error: 'bad-address' } });
  expect(await get('/nope')).toMatchObject({ status: 404, body: { error: 'not-found' } });
});

test('old epoch: accepted within the grace period after the next epoch starts, refused after it', async () => {
  const b = await exchange(env.actors.d1); // epoch 2
  expect(b.epoch).toBe(2n);
  const t0 = Date.now();
  expect(rcv.ingest.ingest(seal(b, 1n), t0)).toMatchObject({ status: 'accepted' });
  expect(rcv.ingest.ingest(seal(a, 6n), t0 + 3600_000)).toMatchObject({ status: 'accepted' });
  expect(rcv.ingest.ingest(seal(a, 7n), t0 + 25 * 3600_000)).toEqual({ status: 'refused', reason: 'old-epoch' });
  expect(await deviceView(env.actors.d1)).toMatchObject({ epoch: '2', state: 'accepted', readings: 7, lastSeq: '1' });
  const all = (await get(`/v1/devices/${env.actors.d1.address}/readings`)).body.readings.map((r: any) => `${r.epoch}/${r.seq}`);
  expect(all).toEqual(['1/1', '1/2', '1/3', '1/4', '1/5', '1/6', '2/1']);
});

test('an envelope for an epoch whose acceptance is not signed yet is authenticated, held, then accepted', async () => {
  const c = await exchange(env.actors.d3);
  // K stored, acceptance deferred (not signed): the device cannot have a valid acceptance, so its envelopes wait.
  rcv.store.db.prepare("UPDATE epochs SET state = 'keyStored', signed_block = NULL WHERE device = ?").run(c.dev.address.toLowerCase());
  const forged = seal(c, 2n);
  forged[forged.length - 1] ^= 1;
  expect(rcv.ingest.ingest(seal(c, 1n))).toEqual({ status: 'parked' });
  expect(rcv.ingest.ingest(forged)).toEqual({ status: 'refused', reason: 'auth-failed' });
  expect((rcv.store.db.prepare('SELECT COUNT(*) AS n FROM parked').get() as { n: number }).n).toBe(1);
  rcv.store.db.prepare("UPDATE epochs SET state = 'accepted' WHERE device = ?").run(c.dev.address.toLowerCase());
  rcv.ingest.retryParked();
  expect(await deviceView(env.actors.d3)).toMatchObject({ readings: 1, lastSeq: '1' });
  // Signed but not confirmed (acceptSent): it counts as accepted for readings (§5.6, §7), nothing is parked.
  rcv.store.db.prepare("UPDATE epochs SET state = 'acceptSent' WHERE device = ?").run(c.dev.address.toLowerCase());
  expect(rcv.ingest.ingest(seal(c, 3n))).toMatchObject({ status: 'accepted', seq: 3n });
  rcv.store.db.prepare("UPDATE epochs SET state = 'accepted' WHERE device = ?").run(c.dev.address.toLowerCase());
  expect(await deviceView(env.actors.d3)).toMatchObject({ readings: 2, lastSeq: '3' });
});

test('a revoked device: state revoked, its readings refused', async () => {
  const d = env.actors.d1;
  expect((await env.tx(env.actors.receiver, 'revoke', [rcv.address, d.address])).error).toBeUndefined();
  await rcv.sync();
  expect(await deviceView(d)).toMatchObject({ state: 'revoked', epoch: '2' });
  const counted = () => rcv.store.db.prepare('SELECT COALESCE(SUM(n), 0) AS n FROM refused WHERE device = ?').get(d.address.toLowerCase());
  const before = counted();
  const b = { dev: d, epoch: 2n, dataKey: new Uint8Array(32) };
  expect(rcv.ingest.ingest(seal(b, 2n))).toEqual({ status: 'refused', reason: 'revoked' });
  // Forged under the device's name (it does not authenticate): refused, and not counted for the device (§7).
  expect(counted()).toEqual(before);
});

test('GET /metrics is Prometheus text with exchanges by outcome and readings by reason', async () => {
  const m = await get('/metrics');
  expect(m.status).toBe(200);
  expect(m.type).toMatch(/^text\/plain/);
  expect(m.body).toMatch(/iotkx_receiver_exchanges_total\{outcome="accepted"\} 3/);
  expect(m.body).toMatch(/iotkx_receiver_readings_accepted_total \d+/);
  expect(m.body).toMatch(/iotkx_receiver_readings_refused_total\{reason="replay"\} 1/);
});

test('a pulled page and the relay cursor commit together: a failure mid-page stores none of it, the next pull all of it once', async () => {
  const c = await exchange(env.actors.d2);
  const accepted = async () => Number(/_total (\d+)/.exec(await rcv.metrics.registry.getSingleMetricAsString('iotkx_receiver_readings_accepted_total'))![1]);
  const cursor = rcv.store.getMeta('relay_cursor');
  const [acc, replays] = [await accepted(), await refused('replay')];
  relayed.push(seal(c, 1n), seal(c, 2n), seal(c, 3n));
  // Fault injection: the third reading's write fails (as a full disk would) after two were written.
  const stmt = rcv.store.stmt as unknown as Record<string, { run: (...a: unknown[]) => unknown }>;
  const real = stmt.recordSeq;
  let writes = 0;
  stmt.recordSeq = { run: (...args) => { if (++writes === 3) throw new Error('disk full'); return real.run(...args); } };
  try {
    await expect(rcv.ingest.pull(relayUrl)).rejects.toThrow('disk full');
  } finally {
    stmt.recordSeq = real;
  }
  expect(writes).toBe(3);
  expect(rcv.store.getMeta('relay_cursor')).toBe(cursor);
  expect(await deviceView(c.dev)).toMatchObject({ readings: 0, lastSeq: null });
  expect(await accepted()).toBe(acc);
  await rcv.sync();
  expect(rcv.store.getMeta('relay_cursor')).toBe(String(relayed.length));
  expect(await deviceView(c.dev)).toMatchObject({ readings: 3, lastSeq: '3', gaps: 0 });
  expect(await accepted()).toBe(acc + 3);
  expect(await refused('replay')).toBe(replays);
});

test('bound to a non-loopback-default address every request needs the bearer token (127.0.0.2, no traffic leaves the machine)', async () => {
  const token = bytesToHex(randomBytes(16));
  const other = await startReceiver({
    rpcUrl: env.anvil.rpcUrl, chainId: env.chainId, contract: env.address, startBlock: env.deployBlock,
    dataDir: dir, dbPath: join(dir, 'second.db'), pollIntervalMs: 0, env: { IOTKX_RECEIVER_KEY: env.anvil.accounts[1].privateKey },
    http: { host: '127.0.0.2', token },
  });
  try {
    expect(other.url.startsWith('http://127.0.0.2:')).toBe(true);
    for (const path of ['/healthz', '/v1/devices', '/metrics']) {
      expect(await get(path, other.url)).toMatchObject({ status: 401, body: { error: 'unauthorized' } });
      expect(await get(path, other.url, { authorization: 'Bearer wrong' })).toMatchObject({ status: 401 });
      expect((await get(path, other.url, { authorization: `Bearer ${token}` })).status).toBe(200);
    }
  } finally {
    await other.stop();
  }
  await expect(startReceiver({
    rpcUrl: env.anvil.rpcUrl, chainId: env.chainId, contract: env.address, dataDir: dir, dbPath: join(dir, 'third.db'),
    pollIntervalMs: 0, env: { IOTKX_RECEIVER_KEY: env.anvil.accounts[1].privateKey }, http: { host: '127.0.0.2' },
  })).rejects.toThrow(/bearer token/);
});
