/**
 * The sensor firmware: bundle size, XS compute and retained heap for boot, a whole
 * exchange and one reading (one simulated device against anvil + relay + receiver),
 * and the wall time of a fleet of N simulated XS devices that exchange keys and send
 * one reading each. IOTKX_BENCH_FLEET sets N (default 100).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { parseEther, type Address, type Hex } from 'viem';
import { keyExchangeAbi } from '../contracts/build/KeyExchange.js';
import { connect } from '../hosts/chain/deploy.js';
import { ROOT } from '../hosts/xs/bundle.js';
import { XsWorker } from '../hosts/xs/worker.js';
import { simBundle, startSimFleet, type SimDevice } from '../hosts/sim/device.js';
import { startSystem, type RunningSystem } from '../hosts/system.js';

/** SDK modules the firmware imports; the SDK supplies them (manifests/sensor.json). */
const SDK_MODULES = ['preference', 'timer', 'http', 'net', 'mc/config', 'embedded:io/serial', 'embedded:network/interface/wifi',
  'embedded:sensor/Humidity-Temperature/SHT3x', 'iotkx/hwrandom', 'iotkx/chiptemp', 'iotkx/restart'];
/** Seconds between the metered device's readings. */
const READING_GAP_S = 10;
const KiB = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
const M = (n: number) => `${(n / 1e6).toFixed(2)} M`;

async function until<T>(fn: () => Promise<T | undefined>, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Boot on a fresh worker, with a no-op host: compute and snapshot growth of making and loading the identity. */
async function bootFigures(): Promise<{ compute: number; retained: number; again: number }> {
  const nvs = new Map<string, Uint8Array>();
  const w = await XsWorker.start({
    output: 'ignore',
    host: {
      nvsGet: (k: string) => nvs.get(k) ?? null, nvsSet: (k: string, v: Uint8Array) => { nvs.set(k, v); }, nvsDelete: (k: string) => { nvs.delete(k); },
      random: (n: number) => new Uint8Array(randomBytes(n)), now: () => Date.now(), setTimer: () => null, log: () => null, sensor: () => ({}), http: () => { throw new Error('offline'); }, restart: () => null,
    },
  });
  try {
    await w.evaluate(await simBundle());
    await w.call('noop');
    const noop = (await w.callMetered('noop')).meter.compute;
    const s0 = await w.snapshotSize();
    const first = (await w.callMetered('boot', {})).meter.compute - noop;
    const s1 = await w.snapshotSize();
    const again = (await w.callMetered('boot', {})).meter.compute - noop; // identity loaded, not made
    return { compute: first, retained: s1 - s0, again };
  } finally {
    await w.close();
  }
}

async function readingsOf(sys: RunningSystem): Promise<Map<string, number>> {
  const view = (await (await fetch(`${sys.info.receiverUrl}/v1/devices`)).json()) as Array<{ device: string; readings: number | string }>;
  return new Map(view.map((v) => [v.device.toLowerCase(), Number(v.readings)]));
}

function config(sys: RunningSystem, intervalSec: number) {
  return {
    relayUrl: sys.info.relayRpcUrl, chainId: String(sys.info.chainId), contract: sys.info.contract, receiver: sys.info.receiverAddress,
    intervalSec, maxFeePerGas: '100000000000', maxPriorityFeePerGas: '2000000000', offerGas: '120000', maxTxPerDay: 24,
    blockTime: 1, backoffMaxSec: 3600, rotation: { maxReadings: 0, maxAgeSec: 0 },
  };
}

/** Enroll and fund every device from the operator account, nonces assigned here so nothing waits in between. */
async function pair(sys: RunningSystem, devices: SimDevice[]): Promise<void> {
  const key = fs.readFileSync(sys.info.operatorKeyFile, 'utf8').trim() as Hex;
  const op = await connect(sys.info.rpcUrl, key, sys.info.chainId);
  let nonce = await op.publicClient.getTransactionCount({ address: op.account.address, blockTag: 'pending' });
  const hashes: Hex[] = [];
  for (const d of devices) {
    hashes.push(await op.walletClient.writeContract({ address: sys.info.contract, abi: keyExchangeAbi, functionName: 'enroll', args: [sys.info.receiverAddress, d.address as Address], nonce: nonce++, gas: 200_000n } as any));
    hashes.push(await op.walletClient.sendTransaction({ to: d.address as Address, value: parseEther('0.1'), nonce: nonce++, gas: 21_000n } as any));
  }
  for (const h of hashes) {
    const r = await op.publicClient.waitForTransactionReceipt({ hash: h });
    if (r.status !== 'success') throw new Error(`bench: pairing transaction ${h} failed`);
  }
}

export interface FirmwareBenchResult { header: string[]; rows: string[][]; method: string; figures: Record<string, number> }

export async function firmwareBench(fleetSize = Number(process.env.IOTKX_BENCH_FLEET ?? 100)): Promise<FirmwareBenchResult> {
  const figures: Record<string, number> = {};
  const rows: string[][] = [];

  // 1. Size: the firmware's own JavaScript (lib/, noble, rlp, devices/sensor) without the SDK's modules.
  const fw = await build({
    entryPoints: [path.join(ROOT, 'devices/sensor/main.ts')], bundle: true, write: false, format: 'esm', platform: 'neutral',
    mainFields: ['module', 'main'], external: SDK_MODULES, minify: true, target: 'es2022', legalComments: 'none', logLevel: 'silent',
    // platform/moddable.ts imports its board by manifest name (MODDABLE.md §2): the esp32 board here.
    absWorkingDir: ROOT, alias: { 'devices/sensor/platform/board': './devices/sensor/platform/board.ts' },
  });
  figures.bundleMin = fw.outputFiles[0].contents.length;
  figures.bundleGzip = gzipSync(fw.outputFiles[0].contents).length;
  rows.push(['firmware bundle (devices/sensor/main.ts), minified', KiB(figures.bundleMin), '≤ 96 KiB']);
  rows.push(['firmware bundle, minified + gzip', KiB(figures.bundleGzip), '']);

  // 2. Boot on XS.
  const boot = await bootFigures();
  figures.bootCompute = boot.compute;
  figures.bootRetained = boot.retained;
  rows.push(['boot, new identity: XS compute', M(boot.compute), '']);
  rows.push(['boot, identity loaded: XS compute', M(boot.again), '']);
  rows.push(['boot: retained heap (snapshot growth)', KiB(boot.retained), '']);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotkx-bench-fw-'));
  const sys = await startSystem({ dataDir: dir, devices: 0, intervalSec: 1, blockTime: 1, offerTtlBlocks: 60 });
  try {
    // 3. One device: a whole exchange, then one reading, metered.
    const [d] = await startSimFleet(1, { dir: path.join(dir, 'one'), prefix: 'one', maxSleepMs: 1000 });
    await pair(sys, [d]);
    const s0 = await d.snapshotSize();
    const c0 = d.meter.compute;
    // The first reading is taken in the tick that activates the key; the second one, READING_GAP_S later, is "one reading".
    const p = await d.console({ cmd: 'provision', config: config(sys, READING_GAP_S) });
    if (!p.ok) throw new Error(`bench: provision: ${p.error}`);
    await until(async () => ((await d.console({ cmd: 'status' })).state === 'active' ? true : undefined), 120_000, 'the exchange');
    const c1 = d.meter.compute;
    const s1 = await d.snapshotSize();
    await until(async () => ((await d.console({ cmd: 'status' })).readings.sent >= 1 ? true : undefined), 60_000, 'the first reading');
    const c1b = d.meter.compute;
    const s1b = await d.snapshotSize();
    await until(async () => ((await d.console({ cmd: 'status' })).readings.sent >= 2 ? true : undefined), 60_000, 'one more reading');
    const c2 = d.meter.compute;
    const s2 = await d.snapshotSize();
    figures.exchangeCompute = c1 - c0;
    figures.exchangeRetained = s1 - s0;
    figures.readingCompute = c2 - c1b;
    figures.throughExchangeRetained = boot.retained + (s1 - s0);
    rows.push(['whole exchange (provision → active, with the first reading), XS compute incl. idle polls', M(c1 - c0), '']);
    rows.push(['whole exchange: retained heap growth (boot + exchange)', KiB(figures.throughExchangeRetained), '≤ 96 KiB']);
    rows.push([`one reading (read, seal, queue, send), XS compute incl. ${READING_GAP_S} s of idle ticks`, M(c2 - c1b), '']);
    rows.push(['one reading: retained heap growth', KiB(s2 - s1b), '']);
    await d.stop();

    // 4. A fleet: boot N devices, pair them, provision over the console, wait for one reading each at the receiver.
    const t0 = Date.now();
    const fleet = await startSimFleet(fleetSize, { dir: path.join(dir, 'fleet'), prefix: 'f', maxSleepMs: 1000, consolePort: null });
    const tBoot = Date.now();
    await pair(sys, fleet);
    const tPair = Date.now();
    await Promise.all(fleet.map(async (f) => {
      const r = await f.console({ cmd: 'provision', config: config(sys, 5) });
      if (!r.ok) throw new Error(`bench: provision ${f.address}: ${r.error}`);
    }));
    await until(async () => {
      const seen = await readingsOf(sys);
      return fleet.every((f) => (seen.get(f.address) ?? 0) >= 1) ? true : undefined;
    }, 600_000, `${fleetSize} devices to deliver a reading`);
    const tDone = Date.now();
    await Promise.all(fleet.map((f) => f.stop()));
    figures.fleetBootMs = tBoot - t0;
    figures.fleetPairMs = tPair - tBoot;
    figures.fleetExchangeMs = tDone - tPair;
    figures.fleetTotalMs = tDone - t0;
    rows.push([`fleet of ${fleetSize}: boot (XS workers, identities)`, `${((tBoot - t0) / 1000).toFixed(1)} s`, '']);
    rows.push([`fleet of ${fleetSize}: operator enrolls + funds (anvil, 1 s blocks)`, `${((tPair - tBoot) / 1000).toFixed(1)} s`, '']);
    rows.push([`fleet of ${fleetSize}: provision → every device's first reading decrypted`, `${((tDone - tPair) / 1000).toFixed(1)} s`, '']);
    rows.push([`fleet of ${fleetSize}: total wall time`, `${((tDone - t0) / 1000).toFixed(1)} s`, '≤ 60 s']);
  } finally {
    await sys.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return {
    header: ['what', 'measured', 'target'],
    rows,
    figures,
    method: 'Firmware size: esbuild minified ESM of devices/sensor/main.ts with the SDK modules external (what mcconfig compiles of ours), gzip level 6. '
      + 'XS figures run the simulator bundle (the same firmware over platform/sim.ts) in xsnap: compute is the summed `meterUsage.compute` of every delivery (boot, timer ticks, console requests), so exchange and reading figures include the idle polls made while waiting for blocks; '
      + 'retained heap is heap-snapshot growth after gc() (64-bit xsnap layout, 32-byte slots; the ESP32 uses 16-byte slots), boot measured on a fresh worker, exchange from the booted, unprovisioned device to `active`. '
      + 'Fleet: N devices, one XS worker each, against one anvil (1 s blocks), relay and receiver on this machine; the operator pairs them with pre-assigned nonces; wall time until the receiver lists a decrypted reading from every device.',
  };
}
