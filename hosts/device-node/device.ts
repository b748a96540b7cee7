/**
 * Runs device code (lib/device) in Node with real timers: file-backed NVS, fetch
 * transport, Date.now, the OS RNG and a synthetic sensor. One device per storage
 * file `<dir>/<name>.json`; restarting with the same file is a reboot.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { addressHex } from '../../lib/address.js';
import { Device, type DeviceReport } from '../../lib/device/device.js';
import { DeviceEngine } from '../../lib/device/engine.js';
import { ReadingQueue, type QueueOptions } from '../../lib/device/queue.js';
import type { Sensor } from '../../lib/device/sensor.js';
import type { Clock, Transport } from '../../lib/platform.js';
import { ensureRandom } from './random.js';
import { syntheticSensor } from './sensor.js';
import { DIR_MODE, FileStorage } from './storage.js';
import { nodeTransport } from './transport.js';

export interface NodeDeviceOptions {
  dir: string;
  name: string;
  /** Provision at start if the device is not provisioned yet. */
  configJson?: unknown;
  queue?: QueueOptions;
  sensor?: Sensor;
  transport?: Transport;
  clock?: Clock;
  /** Longest sleep between ticks (ms); tests shorten it. */
  maxSleepMs?: number;
}

export interface NodeDevice {
  address: string;
  device: Device;
  storage: FileStorage;
  provision(json: unknown): void;
  status(): DeviceReport & { tickError: string | null };
  /** Run one tick now (also wakes the loop). */
  poke(): void;
  stop(): Promise<void>;
}

/** After a tick threw (storage full, a bug), try again after this long. */
const TICK_ERROR_RETRY_MS = 5_000;

export function startNodeDevice(opts: NodeDeviceOptions): NodeDevice {
  const random = ensureRandom();
  mkdirSync(opts.dir, { recursive: true, mode: DIR_MODE }); // holds identity keys
  const storage = new FileStorage(join(opts.dir, `${opts.name}.json`));
  const transport = opts.transport ?? nodeTransport();
  // monotonic: the signing budget runs on it (docs/DECISIONS.md "Signing budget on measured time").
  const clock = opts.clock ?? { now: () => Date.now(), monotonic: () => performance.now() };
  const engine = new DeviceEngine({ storage, random, clock, transport });
  const device = new Device({ engine, queue: new ReadingQueue(storage, transport, opts.queue), sensor: opts.sensor ?? syntheticSensor(), clock, random });
  if (opts.configJson !== undefined && !engine.config) device.provision(opts.configJson);

  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;
  let tickError: string | null = null;
  const schedule = (ms: number) => {
    if (stopped) return;
    clearTimeout(timer);
    timer = setTimeout(run, Math.min(ms, opts.maxSleepMs ?? 600_000));
  };
  const run = () => {
    if (running || stopped) return;
    running = (async () => {
      let next = TICK_ERROR_RETRY_MS;
      try {
        next = await device.tick();
        tickError = null;
      } catch (e) {
        tickError = String((e as Error)?.message ?? e);
      }
      running = undefined;
      schedule(next);
    })();
  };
  schedule(0);

  return {
    address: addressHex(engine.address),
    device,
    storage,
    provision(json) { device.provision(json); schedule(0); },
    status: () => ({ ...device.status(), tickError }),
    poke: () => schedule(0),
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}

/** n devices named `<prefix><i>` in one directory, each with its own sensor seed. */
export function startFleet(n: number, opts: Omit<NodeDeviceOptions, 'name' | 'sensor'> & { prefix?: string }): NodeDevice[] {
  return Array.from({ length: n }, (_, i) => startNodeDevice({ ...opts, name: `${opts.prefix ?? 'dev'}${i}`, sensor: syntheticSensor(i + 1) }));
}
