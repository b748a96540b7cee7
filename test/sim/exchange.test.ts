import '../helpers/node-random.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeFunctionData, parseTransaction, type Hex } from 'viem';
import { keyExchangeAbi } from '../../contracts/build/KeyExchange.js';
import { decodeEnvelope } from '../../lib/envelope.js';
import { ReadingQueue } from '../../lib/device/queue.js';
import { SafeStorage } from '../../lib/device/safe-storage.js';
import type { Storage } from '../../lib/platform.js';
import { NVS_ENTRIES } from '../../hosts/device-node/storage.js';
import type { HttpEvent, NvsEvent, SimDevice } from '../../hosts/sim/device.js';
import { startSystem, type RunningSystem } from '../../hosts/system.js';
import { nodeTransport } from '../../hosts/device-node/transport.js';
import { IotkxError } from '../../lib/errors.js';
import type { Transport as DeviceTransport } from '../../lib/platform.js';
import { until } from '../helpers/until.js';

// A fleet of the sensor firmware in XS workers against real anvil + KeyExchange + relay +
// receiver. sim0 runs undisturbed; sim1 and sim2 lose power again and again at NVS steps
// (after an erase and before its write, after a write, after a delete) during the exchange
// and while sending readings, and are powered on again from their NVS files. Their network
// drops every third readings POST, so their queues spill to NVS (a failed drain writes the
// RAM queue, flash wear: issue 18) and cuts fall on queue writes too; sim0 keeps its queue in
// RAM. Readings only in RAM at a cut are an allowed gap (§7); acknowledged or spilled ones
// must all arrive.
jest.setTimeout(240_000);

const CUTS_PER_DEVICE = 16;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotkx-sim-exchange-'));
let sys: RunningSystem;
const cuts: Array<{ device: string; key: string; step: string }> = [];
const sinceRestart = new Map<string, number>();
const cycle = new Map<string, number>();
const http: HttpEvent[] = [];
/** (device, "epoch/seq") of every envelope that was durably queued at some power cut. */
const durable = new Map<string, Set<string>>();

/**
 * Cut after k NVS steps from each power-on: sim1 with k = 1, 2, 3, 1, 2, 3… sweeps every step
 * of the exchange's writes (erase, write, delete of each slot) in turn; sim2 varies k over 1..7.
 * Identity creation and provisioning (before the fleet is paired) are left alone.
 */
function cut(ev: NvsEvent): boolean {
  if (ev.device === 'sim0' || ev.key.startsWith('id.') || ev.key.startsWith('cfg.')) return false;
  const c = cycle.get(ev.device) ?? 0;
  if (c >= CUTS_PER_DEVICE) return false;
  const n = (sinceRestart.get(ev.device) ?? 0) + 1;
  const target = ev.device === 'sim1' ? 1 + (c % 3) : 1 + ((c * 3 + 4) % 7);
  if (n < target) { sinceRestart.set(ev.device, n); return false; }
  sinceRestart.set(ev.device, 0);
  cycle.set(ev.device, c + 1);
  cuts.push({ device: ev.device, key: ev.key, step: ev.step });
  return true;
}

const key = (epoch: bigint | string, seq: bigint | string) => `${epoch}/${seq}`;

/** Envelopes in a device's NVS queue right now, read through the firmware's own codecs on a copy. */
function queued(d: SimDevice): string[] {
  const copy = new Map(d.nvs.map);
  const store: Storage = { get: (k) => copy.get(k), set: (k, v) => { copy.set(k, v); }, delete: (k) => { copy.delete(k); } };
  const q = new ReadingQueue(new SafeStorage(store), { request: async () => { throw new Error('offline'); } });
  return q.envelopes().map((e) => { const x = decodeEnvelope(e); return key(x.epoch, x.seq); });
}

/** Addresses (lowercase hex, no 0x) of the devices whose readings POSTs fail now and then. */
const flaky = new Set<string>();
let flakyPosts = 0;
const inner = nodeTransport();
const transport: DeviceTransport = {
  async request(method, url, body, ct) {
    if (method === 'POST' && url.endsWith('/v1/readings') && body && flaky.has(Buffer.from(decodeEnvelope(body).device).toString('hex'))) {
      if (flakyPosts++ % 3 === 0) throw new IotkxError('transport-error', 'network dropped (test)');
    }
    return inner.request(method, url, body, ct);
  },
};

beforeAll(async () => {
  sys = await startSystem({
    dataDir: dir, devices: 3, intervalSec: 1, blockTime: 1, offerTtlBlocks: 60,
    sim: { maxSleepMs: 500, cut, onHttp: (e) => http.push(e), transport },
  });
  for (const d of sys.devices.slice(1)) flaky.add(d.address.slice(2).toLowerCase());
}, 120_000);
afterAll(async () => {
  await sys?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the fleet exchanges keys and the receiver decrypts readings, through dozens of power cuts', async () => {
  const byName = new Map(sys.devices.map((d, i) => [`sim${i}`, d]));
  // The power-cut harness: a device that lost power is powered on again from its NVS file.
  let restarting = true;
  const restarter = (async () => {
    while (restarting) {
      for (const [name, d] of byName) {
        if (d.running) continue;
        const set = durable.get(name) ?? new Set<string>();
        for (const k of queued(d)) set.add(k);
        durable.set(name, set);
        await d.restart().catch(() => undefined); // a cut during boot: tried again next round
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();

  try {
    await until('every cut made', async () => ([...cycle.values()].reduce((a, b) => a + b, 0) >= 2 * CUTS_PER_DEVICE ? true : undefined), 150_000);
    await until('all devices running and active', async () => {
      for (const d of sys.devices) {
        if (!d.running) return undefined;
        if ((await d.console({ cmd: 'status' })).state !== 'active') return undefined;
      }
      return true;
    }, 60_000);
  } finally {
    restarting = false;
    await restarter;
  }
  for (const [name, d] of byName) for (const k of queued(d)) durable.get(name)?.add(k);

  // Readings: every envelope the relay acknowledged, and every one that was durably queued
  // when power went out, comes out decrypted at the receiver.
  const acked = new Map<string, Set<string>>();
  const bodies = new Map<string, string>();
  for (const e of http) {
    if (e.method !== 'POST' || !e.url.endsWith('/v1/readings') || !e.body) continue;
    const env = decodeEnvelope(e.body);
    const k = `${e.device} ${key(env.epoch, env.seq)}`;
    const hex = Buffer.from(e.body).toString('hex');
    // No seq reuse: one (epoch, seq) never carries two different envelopes.
    expect(bodies.get(k) ?? hex).toBe(hex);
    bodies.set(k, hex);
    if (e.status === 202 || e.status === 200) {
      const s = acked.get(e.device) ?? new Set<string>();
      s.add(key(env.epoch, env.seq));
      acked.set(e.device, s);
    }
  }
  for (const [name, d] of byName) {
    const want = new Set([...(acked.get(name) ?? []), ...(durable.get(name) ?? [])]);
    expect(want.size).toBeGreaterThan(0);
    await until(`receiver has every acknowledged reading of ${name}`, async () => {
      const page = (await (await fetch(`${sys.info.receiverUrl}/v1/devices/${d.address}/readings?limit=1000`)).json()) as any;
      const got = new Set(page.readings.map((r: any) => key(r.epoch, r.seq)));
      for (const k of want) if (!got.has(k)) return undefined;
      for (const r of page.readings) {
        expect(r.values.temp).toBeGreaterThan(-40);
        expect(r.values.rh).toBeGreaterThanOrEqual(0);
      }
      return true;
    }, 60_000);
  }

  // Offers: per device, a nonce never signs two different offers; an epoch never gets two K (commitments).
  for (const name of byName.keys()) {
    const byNonce = new Map<number, string>();
    const commitByEpoch = new Map<bigint, string>();
    for (const e of http) {
      if (e.device !== name || !e.url.endsWith('/rpc') || !e.body) continue;
      const req = JSON.parse(Buffer.from(e.body).toString());
      for (const call of Array.isArray(req) ? req : [req]) {
        if (call.method !== 'eth_sendRawTransaction') continue;
        const tx = parseTransaction(call.params[0] as Hex);
        expect(byNonce.get(tx.nonce!) ?? tx.data).toBe(tx.data);
        byNonce.set(tx.nonce!, tx.data!);
        const { args } = decodeFunctionData({ abi: keyExchangeAbi, data: tx.data! });
        const [, epoch, , , commitment] = args as unknown as [string, bigint, number, Hex, Hex];
        expect(commitByEpoch.get(epoch) ?? commitment).toBe(commitment);
        commitByEpoch.set(epoch, commitment);
      }
    }
    expect([...commitByEpoch.keys()]).toEqual([1n]);
  }
  const view = (await (await fetch(`${sys.info.receiverUrl}/v1/devices`)).json()) as any[];
  expect(view.map((v) => [v.state, v.epoch])).toEqual([['accepted', '1'], ['accepted', '1'], ['accepted', '1']]);

  // Storage stayed within the NVS partition; the cuts fell on erases, writes and deletes of several records.
  for (const d of sys.devices) expect(d.nvs.peakEntries).toBeLessThanOrEqual(NVS_ENTRIES);
  expect(cuts.length).toBe(2 * CUTS_PER_DEVICE);
  expect(new Set(cuts.map((c) => c.step))).toEqual(new Set(['erased', 'written', 'deleted']));
  const hit = new Set(cuts.map((c) => `${c.key.split('.')[0]}:${c.step}`));
  for (const h of ['chan:erased', 'chan:written', 'chan:deleted', 'rkey:erased']) expect(hit).toContain(h);
  expect([...hit].some((h) => h.startsWith('q'))).toBe(true);
  // eslint-disable-next-line no-console
  console.log(`power cuts at: ${cuts.map((c) => `${c.key}:${c.step}`).join(' ')}`);
});
