// Receiver hardening (issue 15, items 5, 6, 9, 13) against a real anvil + KeyExchange, with a stand-in relay
// (GET /v1/readings as in PROTOCOL.md §9) that can turn hostile. Offers are made by independent code (viem,
// eciesjs); envelopes are sealed with lib/reading (the device's code).
import '../helpers/node-random.js';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ECIES_CONFIG, encrypt as eciesEncrypt } from 'eciesjs';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, concatHex, encodeAbiParameters, hexToBytes, keccak256, toHex as vToHex, type Address, type Hex } from 'viem';
import { setupChain, type Actor, type ChainEnv } from '../helpers/chain.js';
import { startReceiver, type ReceiverOptions, type RunningReceiver } from '../../hosts/receiver/receiver.js';
import { sealReading } from '../../lib/reading.js';
import { nodeRandom } from '../helpers/node-random.js';
import { until } from '../helpers/until.js';

ECIES_CONFIG.symmetricAlgorithm = 'xchacha20';

jest.setTimeout(180_000);
const TTL = 12;
let env: ChainEnv;
let dir: string;

// ---------------------------------------------------------------- the stand-in relay

type RelayMode = 'honest' | 'huge' | 'endless-junk';
let relay: Server;
let relayUrl: string;
let mode: RelayMode = 'honest';
const relayed: Uint8Array[] = [];
/** Bytes the hostile relay managed to write before the receiver hung up. */
let hugeWritten = 0;
let hugeClosed = false;

function streamHuge(res: ServerResponse): void {
  // A syntactically endless page: `{"envelopes":["0x00…00","0x00…00",…` up to 128 MiB, as fast as the socket takes it.
  hugeWritten = 0;
  hugeClosed = false;
  const chunk = Buffer.from(`"0x${'00'.repeat(2000)}",`.repeat(16));
  res.writeHead(200, { 'content-type': 'application/json' });
  res.write('{"envelopes":[');
  res.on('close', () => { hugeClosed = true; });
  const pump = () => {
    while (!hugeClosed && hugeWritten < 128 * 1024 * 1024) {
      hugeWritten += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
    res.end();
  };
  pump();
}

function startStandInRelay(): Promise<void> {
  relay = createServer((req, res) => {
    const url = new URL(req.url!, 'http://relay');
    const after = Number(url.searchParams.get('after') ?? '0');
    const limit = Number(url.searchParams.get('limit') ?? '100');
    if (mode === 'huge') return streamHuge(res);
    if (mode === 'endless-junk') {
      // A relay flooded with junk (or lying about it): always a full page and a next cursor further on.
      const page = Array.from({ length: limit }, () => bytesToHex(randomBytes(90)));
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify({ envelopes: page, next: String(after + limit) }));
    }
    const from = Math.min(after, relayed.length);
    const page = relayed.slice(from, from + limit);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ envelopes: page.map((e) => bytesToHex(e)), next: String(from + page.length) }));
  });
  return new Promise((r) => relay.listen(0, '127.0.0.1', () => {
    relayUrl = `http://127.0.0.1:${(relay.address() as { port: number }).port}`;
    r();
  }));
}

// ---------------------------------------------------------------- independent offers and sealing

function channelIdOf(device: Address, receiver: Address): Hex {
  return keccak256(encodeAbiParameters([{ type: 'uint256' }, { type: 'address' }, { type: 'address' }, { type: 'address' }],
    [BigInt(env.chainId), env.address, device, receiver]));
}

interface Offer { dev: Actor; receiver: Address; epoch: bigint; K: Hex; tx: Hex; dataKey: Uint8Array }
async function offer(dev: Actor, receiver: Address): Promise<Offer> {
  const [encKey, version] = await env.read<[Hex, number]>('receiverKey', [receiver]);
  const [, stored] = await env.read<[boolean, bigint]>('channel', [dev.address, receiver]);
  const epoch = stored + 1n;
  const K = bytesToHex(randomBytes(32));
  const chId = channelIdOf(dev.address, receiver);
  const proof = keccak256(concatHex([vToHex('iotkx/1/confirm'), K, chId, vToHex(epoch, { size: 8 })]));
  const wrapped = bytesToHex(eciesEncrypt(encKey.slice(2), Buffer.from(K.slice(2), 'hex')));
  const r = await env.tx(dev, 'offerKey', [receiver, epoch, version, wrapped, keccak256(proof)]);
  expect(r.error).toBeUndefined();
  const dataKey = hkdf(sha256, hexToBytes(K), hexToBytes(chId), new TextEncoder().encode('iotkx/1/data'), 32);
  return { dev, receiver, epoch, K, tx: r.receipt.transactionHash, dataKey };
}

const seal = (o: Offer, seq: bigint, temp = 20 + Number(seq) / 10): Uint8Array =>
  sealReading({ dataKey: o.dataKey, device: hexToBytes(o.dev.address), epoch: o.epoch, seq, values: { t: Math.floor(Date.now() / 1000), temp }, random: nodeRandom });

async function channelOf(dev: Actor, receiver: Address) {
  const [enrolled, epoch, state, , , offeredAt, acceptedAt] =
    await env.read<[boolean, bigint, number, number, Hex, bigint, bigint]>('channel', [dev.address, receiver]);
  return { enrolled, epoch, state, offeredAt, acceptedAt };
}

async function acceptedEvents(dev: Actor): Promise<number> {
  const logs = await env.pub.getLogs({ address: env.address, fromBlock: env.deployBlock, toBlock: 'latest' });
  const { parseEventLogs } = await import('viem');
  return parseEventLogs({ abi: env.abi, logs }).filter((l) => l.eventName === 'KeyAccepted' && (l.args as { device: Address }).device === dev.address).length;
}

const rowOf = (r: RunningReceiver, dev: Actor, epoch: bigint) =>
  r.store.db.prepare('SELECT state FROM epochs WHERE device = ? AND epoch = ?').get(dev.address.toLowerCase(), epoch.toString().padStart(20, '0')) as
    { state: string } | undefined;
const readingsOf = (r: RunningReceiver, dev: Actor, epoch: bigint) =>
  (r.store.db.prepare('SELECT COUNT(*) AS n FROM readings WHERE device = ? AND epoch = ?').get(dev.address.toLowerCase(), epoch.toString().padStart(20, '0')) as { n: number }).n;
const parkedOf = (r: RunningReceiver, dev: Actor) =>
  (r.store.db.prepare('SELECT COUNT(*) AS n FROM parked WHERE device = ?').get(dev.address.toLowerCase()) as { n: number }).n;

/** One pass, then wait for the transactions it sent, then another pass to settle them. */
async function pass(r: RunningReceiver): Promise<void> {
  await r.sync();
  const sent = r.store.db.prepare("SELECT action_tx FROM epochs WHERE state IN ('acceptSent', 'rejectSent')").all() as { action_tx: Hex }[];
  for (const s of sent) await env.pub.waitForTransactionReceipt({ hash: s.action_tx, pollingInterval: 50, timeout: 10_000 }).catch(() => undefined);
  await r.sync();
}

const ACCOUNT: Record<string, number> = { main: 1, limited: 2, flood: 3 };
function opts(name: string, extra: Partial<ReceiverOptions> = {}): ReceiverOptions {
  return {
    rpcUrl: env.anvil.rpcUrl, chainId: env.chainId, contract: env.address, startBlock: env.deployBlock,
    dataDir: join(dir, name), pollIntervalMs: 0, http: false,
    env: { IOTKX_RECEIVER_KEY: env.anvil.accounts[ACCOUNT[name]].privateKey },
    exchange: { confirmations: 0 },
    logger: process.env.RCV_DEBUG ? (m, e) => console.log(m, e) : undefined,
    ...extra,
  };
}

beforeAll(async () => {
  env = await setupChain(['receiver', 'receiverB', 'receiverC', 'd1', 'd2', 'd3', 'd4', 'd5', 'd6'], TTL);
  dir = mkdtempSync(join(tmpdir(), 'iotkx-rcv-hard-'));
  await startStandInRelay();
}, 120_000);
afterAll(async () => {
  relay?.closeAllConnections();
  relay?.close();
  await env?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const enroll = async (receiver: Actor, dev: Actor) => expect((await env.tx(receiver, 'enroll', [receiver.address, dev.address])).error).toBeUndefined();

// ---------------------------------------------------------------- item 6

describe('item 6: an epoch whose acceptance the receiver signed counts as accepted for readings (§5.6, §7)', () => {
  test('acceptKey reverts (OfferExpired): the epoch is not on chain, but its envelopes are decrypted', async () => {
    const R = env.actors.receiver;
    const d = env.actors.d1;
    await enroll(R, d);
    let once = false;
    const r = await startReceiver(opts('main', {
      // Between signing and broadcasting, the chain moves past the offer's time to live: the acceptance reverts.
      hooks: { beforeBroadcast: async (kind, device) => { if (kind === 'accept' && device === d.address && !once) { once = true; await env.mine(TTL + 2); } } },
    }));
    try {
      const o = await offer(d, r.address);
      await pass(r);
      await pass(r);
      expect(once).toBe(true);
      const row = r.store.db.prepare('SELECT state, action_tx FROM epochs WHERE device = ?').get(d.address.toLowerCase()) as { state: string; action_tx: Hex };
      expect((await env.pub.getTransactionReceipt({ hash: row.action_tx })).status).toBe('reverted');
      expect(await channelOf(d, r.address)).toMatchObject({ epoch: 1n, state: 1 }); // still "offered" on chain, expired
      expect(row.state).toBe('expired');
      // A relay shows the device our signed acceptance from the reverted transaction's calldata; the device
      // activates and seals under epoch 1. The receiver must take those readings.
      for (const seq of [1n, 2n, 3n]) expect(r.ingest.ingest(seal(o, seq))).toMatchObject({ status: 'accepted', seq });
      expect(readingsOf(r, d, 1n)).toBe(3);
      // A forgery for the same epoch still changes nothing.
      const forged = seal({ ...o, dataKey: new Uint8Array(32) }, 4n);
      expect(r.ingest.ingest(forged)).toEqual({ status: 'refused', reason: 'auth-failed' });
    } finally {
      await r.stop();
    }
  });

  test('acceptance reorganised away: envelopes are taken at once (not parked), and the acceptance is sent again when the offer returns', async () => {
    const R = env.actors.receiver;
    const d = env.actors.d2;
    await enroll(R, d);
    const r = await startReceiver(opts('main'));
    try {
      const snap = await env.pub.request({ method: 'evm_snapshot' as never, params: [] as never }) as Hex;
      const o = await offer(d, r.address);
      const raw = await env.pub.request({ method: 'eth_getRawTransactionByHash' as never, params: [o.tx] as never }) as Hex;
      await pass(r);
      expect(await channelOf(d, r.address)).toMatchObject({ epoch: 1n, state: 2 });
      expect(rowOf(r, d, 1n)?.state).toBe('accepted');
      // The chain forgets the offer and our acceptance (a reorg deeper than our depth).
      await env.pub.request({ method: 'evm_revert' as never, params: [snap] as never });
      await env.mine(2);
      await pass(r);
      expect(await channelOf(d, r.address)).toMatchObject({ epoch: 0n, state: 0 });
      expect(rowOf(r, d, 1n)?.state).not.toBe('accepted');
      // The device had activated (it saw KeyAccepted, or a relay replays it): its readings are decrypted now.
      for (const seq of [1n, 2n]) expect(r.ingest.ingest(seal(o, seq))).toMatchObject({ status: 'accepted' });
      expect(parkedOf(r, d)).toBe(0);
      expect(readingsOf(r, d, 1n)).toBe(2);
      // The offer comes back (the device re-broadcasts it): the receiver accepts it again, same K.
      await env.pub.request({ method: 'eth_sendRawTransaction', params: [raw] });
      await env.pub.waitForTransactionReceipt({ hash: o.tx, pollingInterval: 50 });
      await pass(r);
      await pass(r);
      expect(await channelOf(d, r.address)).toMatchObject({ epoch: 1n, state: 2 });
      expect(rowOf(r, d, 1n)?.state).toBe('accepted');
      expect(r.ingest.ingest(seal(o, 3n))).toMatchObject({ status: 'accepted' });
    } finally {
      await r.stop();
    }
  });
});

// ---------------------------------------------------------------- item 9

describe('item 9: the parking quota is per device', () => {
  test('one device fills its quota; another device’s parked envelopes are still kept, and judged once accepted', async () => {
    const R = env.actors.receiverB;
    const d3 = env.actors.d3;
    const d4 = env.actors.d4;
    await enroll(R, d3);
    await enroll(R, d4);
    // Accepts deferred by the rate limit: K stored, acceptance not signed, envelopes authentic → parked.
    const slow = await startReceiver(opts('limited', { exchange: { confirmations: 0, acceptRate: { max: 0, windowMs: 3_600_000 } }, ingest: { maxParked: 5 } }));
    let o3: Offer, o4: Offer;
    try {
      o3 = await offer(d3, slow.address);
      o4 = await offer(d4, slow.address);
      await pass(slow);
      expect(rowOf(slow, d3, 1n)?.state).toBe('keyStored');
      expect(rowOf(slow, d4, 1n)?.state).toBe('keyStored');
      const verdicts = [];
      for (let seq = 1n; seq <= 20n; seq++) verdicts.push(slow.ingest.ingest(seal(o3, seq)).status);
      expect(verdicts.filter((v) => v === 'parked')).toHaveLength(5);
      expect(parkedOf(slow, d3)).toBe(5);
      // d3 is at its quota; d4 is not.
      for (const seq of [1n, 2n, 3n]) expect(slow.ingest.ingest(seal(o4, seq))).toEqual({ status: 'parked' });
      expect(parkedOf(slow, d4)).toBe(3);
    } finally {
      await slow.stop();
    }
    const relaxed = await startReceiver(opts('limited', { exchange: { confirmations: 0 }, ingest: { maxParked: 5 } }));
    try {
      await pass(relaxed);
      await pass(relaxed);
      expect(rowOf(relaxed, d3, 1n)?.state).toBe('accepted');
      expect(rowOf(relaxed, d4, 1n)?.state).toBe('accepted');
      expect(readingsOf(relaxed, d3, 1n)).toBe(5);
      expect(readingsOf(relaxed, d4, 1n)).toBe(3);
      expect(parkedOf(relaxed, d3) + parkedOf(relaxed, d4)).toBe(0);
    } finally {
      await relaxed.stop();
    }
  });
});

// ---------------------------------------------------------------- item 13

describe('item 13: relay pages are read with a size cap', () => {
  test('a relay streaming a huge page: the receiver stops reading, says why, keeps running, loses nothing', async () => {
    const R = env.actors.receiver;
    const d = env.actors.d5;
    await enroll(R, d);
    const lines: string[] = [];
    relayed.length = 0;
    mode = 'honest';
    const r = await startReceiver(opts('main', { relayUrl, http: { port: 0 }, logger: (m, e) => lines.push(`${m} ${JSON.stringify(e ?? {})}`) }));
    try {
      const o = await offer(d, r.address);
      await pass(r);
      expect(rowOf(r, d, 1n)?.state).toBe('accepted');
      relayed.push(seal(o, 1n), seal(o, 2n));
      await r.sync();
      expect(readingsOf(r, d, 1n)).toBe(2);
      const cursor = r.store.getMeta('relay_cursor');

      mode = 'huge';
      relayed.push(seal(o, 3n));
      await r.sync(); // the pass fails; sync() itself resolves
      await until('the hostile relay sees the receiver hang up', () => hugeClosed, 30_000, 50);
      expect(hugeWritten).toBeLessThan(16 * 1024 * 1024); // it stopped near its cap, not at 128 MiB
      expect(lines.some((l) => /ingestion pass failed.*relay page over \d+ bytes/.test(l))).toBe(true);
      expect(r.store.getMeta('relay_cursor')).toBe(cursor); // nothing skipped
      expect(await r.metrics.registry.getSingleMetricAsString('iotkx_receiver_errors_total')).toMatch(/stage="ingest"} [1-9]/);
      expect((await fetch(`${r.url}/healthz`)).status).toBe(200); // still running

      mode = 'honest';
      relayed.push(seal(o, 4n));
      await r.sync();
      expect(readingsOf(r, d, 1n)).toBe(4); // seq 3 (held by the relay during the attack) and 4
    } finally {
      mode = 'honest';
      await r.stop();
    }
  });
});

// ---------------------------------------------------------------- item 5

describe('item 5: the exchange does not wait behind ingestion', () => {
  test('a relay that never stops serving junk pages: an offer is still accepted within a few blocks', async () => {
    const R = env.actors.receiverC;
    const d = env.actors.d6;
    await enroll(R, d);
    mode = 'endless-junk';
    // Blocks come on their own (one per 500 ms), as on a live chain; time is measured in them.
    const miner = setInterval(() => void env.mine(1).catch(() => undefined), 500);
    const r = await startReceiver(opts('flood', { relayUrl, pollIntervalMs: 200 }));
    try {
      const junk = async () => Number(/reason="malformed"} (\d+)/.exec(await r.metrics.registry.getSingleMetricAsString('iotkx_receiver_readings_refused_total'))?.[1] ?? 0);
      await until('the receiver is pulling junk', async () => (await junk()) >= 500, 30_000, 100);
      const o = await offer(d, r.address);
      const offeredAt = (await env.pub.getTransactionReceipt({ hash: o.tx })).blockNumber;
      const settled = await until('accepted, or the offer expired', async () => {
        const ch = await channelOf(d, r.address);
        if (ch.state === 2) return ch;
        return (await env.blockNumber()) > offeredAt + BigInt(TTL) ? ch : undefined;
      }, 120_000, 100);
      expect(settled.state).toBe(2);
      expect(Number(settled.acceptedAt - offeredAt)).toBeLessThanOrEqual(6);
      // Ingestion goes on beside it.
      const before = await junk();
      await until('more junk judged', async () => (await junk()) >= before + 500, 30_000, 100);
    } finally {
      clearInterval(miner);
      mode = 'honest';
      await r.stop();
    }
  });
});
