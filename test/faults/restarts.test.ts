// Faults end to end (issue 6): real anvil + relay + receiver + a Node device. The upstream
// anvil is SIGKILLed and restarted on its port, then the relay, then the receiver; after
// each, every reading the relay acknowledged to the device is decrypted by the receiver
// exactly once, and the relay's JSON-RPC answers errors (never hangs) while anvil is down.
import '../helpers/node-random.js';
import { startFaultSystem, rpc, sleep, until, type FaultDevice, type FaultSystem } from './system.js';

jest.setTimeout(240_000);

let sys: FaultSystem;
let dev: FaultDevice;
beforeAll(async () => {
  sys = await startFaultSystem();
  dev = await sys.addDevice('a');
}, 120_000);
afterAll(() => sys?.stop());

const acked = (d: FaultDevice) => [...new Set(d.posts.filter((p) => p.status === 202 || p.status === 200).map((p) => `${p.epoch}:${p.seq}`))];
const lastSeq = (d: FaultDevice) => BigInt(d.status().lastReading?.seq ?? '0');
const counter = async (c: { get(): Promise<{ values: Array<{ value: number; labels: Record<string, unknown> }> }> }, labels: Record<string, string> = {}) =>
  (await c.get()).values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((a, v) => a + v.value, 0);

/** Every acknowledged reading is stored exactly once, and nothing else is. */
async function allAckedStoredOnce(): Promise<string[]> {
  return until('every acknowledged reading decrypted by the receiver', () => {
    const want = acked(dev).sort();
    const got = sys.stored(dev.address);
    return want.length > 0 && got.length === want.length && [...got].sort().join() === want.join() ? got : undefined;
  }, 90_000);
}

test('the device pairs and its readings arrive', async () => {
  await until('device active', () => dev.status().state === 'active', 90_000);
  await until('two readings decrypted', () => sys.stored(dev.address).length >= 2, 60_000);
});

test('upstream anvil killed and restarted: relay answers JSON-RPC errors and /healthz upstream false, then recovers; outage readings arrive once each', async () => {
  await sleep(2500); // anvil dumps its state every second: let the activation land in the dump
  const blockBefore = BigInt((await rpc(sys.anvil.rpcUrl, 'eth_blockNumber')).result);
  const seqAtKill = lastSeq(dev);
  const upstreamErrorsBefore = await counter(sys.relay.metrics.upstreamErrors);
  await sys.anvil.kill();

  // During the outage: a clear JSON-RPC error (code -32000, reason unreachable), health says upstream down.
  const down = await rpc(`${sys.relay.url}/rpc`, 'eth_blockNumber');
  expect(down).toMatchObject({ jsonrpc: '2.0', id: 1, error: { code: -32000, data: { reason: 'unreachable' } } });
  expect(down.result).toBeUndefined();
  const call = await rpc(`${sys.relay.url}/rpc`, 'eth_call', [{ to: sys.contract, data: '0x' }, 'latest']);
  expect(call.error.code).toBe(-32000);
  await until('/healthz upstream false', async () => {
    const h = (await (await fetch(`${sys.relay.url}/healthz`)).json()) as any;
    return h.ok === true && h.upstream === false;
  }, 20_000);
  expect(await counter(sys.relay.metrics.upstreamErrors)).toBeGreaterThan(upstreamErrorsBefore);

  // Readings keep being sealed and posted: they do not need the chain.
  await until('three readings sealed during the outage', () => lastSeq(dev) >= seqAtKill + 3n, 60_000);
  const outage = dev.posts.filter((p) => p.seq > seqAtKill).map((p) => `${p.epoch}:${p.seq}`);
  expect(outage.length).toBeGreaterThanOrEqual(1);

  await sys.anvil.start();
  await until('relay answers from the restarted anvil', async () => {
    const r = await rpc(`${sys.relay.url}/rpc`, 'eth_blockNumber');
    return r.result !== undefined && BigInt(r.result) >= blockBefore;
  }, 30_000);
  await until('/healthz upstream true', async () => ((await (await fetch(`${sys.relay.url}/healthz`)).json()) as any).upstream === true, 20_000);
  // The restored chain still holds the channel: channel(device, receiver) through the relay is accepted epoch 1.
  expect(dev.status().state).toBe('active');

  // The receiver's watcher failed during the outage and goes on after it.
  const cursorBlock = () => BigInt(JSON.parse(sys.receiver.store.getMeta('cursor') ?? '{"block":"0"}').block);
  const c0 = cursorBlock();
  await until('receiver watcher advances again', () => cursorBlock() > c0, 30_000);

  const stored = await allAckedStoredOnce();
  for (const k of outage.filter((k) => acked(dev).includes(k))) expect(stored.filter((s) => s === k)).toHaveLength(1);
  // Every reading posted during the outage was acknowledged (possibly after a retry).
  await until('outage readings acknowledged', () => outage.every((k) => acked(dev).includes(k)), 60_000);
  const after = await allAckedStoredOnce();
  for (const k of outage) expect(after.filter((s) => s === k)).toHaveLength(1);
});

test('relay restarted (same db, same port): no acknowledged reading lost, queued ones drain', async () => {
  const ackedBefore = acked(dev);
  const seqAtStop = lastSeq(dev);
  const relayCount = async () => ((await (await fetch(`${sys.relay.url}/v1/readings?limit=1000`)).json()) as any).envelopes.length as number;
  const heldBefore = await relayCount();
  await sys.relay.stop();

  await until('three readings queued on the device while the relay is down', () => dev.status().readings.queued >= 3 && lastSeq(dev) >= seqAtStop + 3n, 60_000);
  const queuedSeqs = dev.device.queue.envelopes().length;
  expect(queuedSeqs).toBeGreaterThanOrEqual(3);
  await sys.startRelay();
  // Durable before 202: everything acknowledged before the stop is still held.
  expect(await relayCount()).toBeGreaterThanOrEqual(heldBefore);

  await until('device queue drained', () => dev.status().readings.queued === 0 && lastSeq(dev) > seqAtStop + 3n, 90_000);
  const stored = await allAckedStoredOnce();
  for (const k of ackedBefore) expect(stored).toContain(k);
  // Everything sealed up to now was acknowledged: the queue lost nothing, dropped nothing.
  expect(dev.status().readings.dropped).toBe(0);
});

test('receiver restarted: no reading decrypted twice, none lost', async () => {
  const storedBefore = sys.stored(dev.address).length;
  const seqAtStop = lastSeq(dev);
  await sys.receiver.stop();
  await until('readings acknowledged while the receiver is down', () => lastSeq(dev) >= seqAtStop + 3n && acked(dev).length >= storedBefore + 3, 60_000);
  const r2 = await sys.restartReceiver();
  const stored = await allAckedStoredOnce();

  // The restarted receiver resumed at its persisted cursor: it judged only envelopes it had not seen.
  expect(await counter(r2.metrics.readingsAccepted)).toBe(stored.length - storedBefore);
  expect(await counter(r2.metrics.readingsRefused)).toBe(0);
  // One row per (epoch, seq), and the seqs are 1..n with no gap: nothing lost anywhere in the run.
  expect(new Set(stored).size).toBe(stored.length);
  const seqs = stored.map((s) => BigInt(s.split(':')[1])).sort((a, b) => (a < b ? -1 : 1));
  expect(seqs).toEqual(seqs.map((_, i) => BigInt(i + 1)));
  // The §9 API agrees with the store.
  const api = (await (await fetch(`${r2.url}/v1/devices/${dev.address}/readings?limit=1000`)).json()) as any;
  expect(api.readings.map((r: any) => `${r.epoch}:${r.seq}`)).toEqual(stored);
});
