/**
 * The desktop simulator: each device is the sensor firmware (devices/sensor, bundled
 * with esbuild) running in its own XS worker, its platform bridged to Node:
 * NVS as a file per device (SimNvs: erase-then-write, limits, cut-able), the OS RNG,
 * HTTP to the relay (8 KiB cap, hosts/device-node/transport.ts), a synthetic sensor
 * with drift, and the §6 console on a loopback TCP port (one JSON object a line; any other line closes the
 * connection, so a browser's cross-protocol request cannot reach the firmware: console-socket.ts).
 * The host drives time: the firmware asks for a delay, the host waits and calls back.
 *
 * kill() is a power cut (SIGKILL of the worker; whatever NVS step finished is on
 * disk), restart() powers the device on again from its file. A `cut` callback sees
 * every NVS step (erase, write, delete) and may cut power right there.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { QueueOptions } from '../../lib/device/queue.js';
import { IotkxError } from '../../lib/errors.js';
import type { Transport } from '../../lib/platform.js';
import { syntheticSensor } from '../device-node/sensor.js';
import { DIR_MODE } from '../device-node/storage.js';
import { nodeTransport } from '../device-node/transport.js';
import { bundle } from '../xs/bundle.js';
import { XsWorker, type HostMethods } from '../xs/worker.js';
import { SimNvs, type NvsStep } from './nvs.js';
import { serveConsoleSocket } from './console-socket.js';

export interface NvsEvent {
  /** The device's name (its NVS file). */
  device: string;
  key: string;
  step: NvsStep;
  /** Steps since this device was created (across restarts). */
  n: number;
}

export interface HttpEvent {
  device: string;
  method: string;
  url: string;
  body: Uint8Array | null;
  status?: number;
  response?: Uint8Array;
  error?: string;
}

export interface SimDeviceOptions {
  dir: string;
  name: string;
  /** Seed of the synthetic sensor; default: the device's identity (its address), so each identity has its own series. */
  sensorSeed?: number;
  transport?: Transport;
  /** Longest sleep between ticks, ms (tests shorten it). */
  maxSleepMs?: number;
  queue?: QueueOptions;
  /** false: a board without a hardware RNG (the firmware must refuse to run). */
  hardwareRandom?: boolean;
  /** Loopback TCP port of the console: 0 (default) any free port, null none. */
  consolePort?: number | null;
  /** Return true to cut power right after this NVS step. */
  cut?: (ev: NvsEvent) => boolean;
  onHttp?: (ev: HttpEvent) => void;
  log?: (line: string) => void;
  /** Boot with the clock at 0 (1970), as an ESP32 does until SNTP sets it (issue 15 item 10). */
  clockAtZero?: boolean;
  /** Whether network time (the board's SNTP) answers: default true. */
  networkTime?: boolean;
}

/** One worker lifetime: everything it scheduled dies with it. */
interface Life {
  worker: XsWorker;
  timers: Set<NodeJS.Timeout>;
  dead: boolean;
}

let cachedBundle: Promise<string> | undefined;
/** The firmware bundle for the simulator (built once per process). */
export function simBundle(): Promise<string> {
  return (cachedBundle ??= bundle('hosts/sim/guest.ts', { minify: true }).then((b) => b.code));
}

const never = () => new Promise<never>(() => undefined);

export class SimDevice {
  readonly nvs: SimNvs;
  address = '';
  consolePort = 0;
  bootError: { code: string; message: string } | null = null;
  /** Unsolicited console lines (boot-failed events), newest last. */
  readonly events: string[] = [];
  /** Power cuts made by the `cut` callback. */
  cuts = 0;
  /** XS meter summed over every delivery to this device's workers (compute is xsnap's deterministic count). */
  readonly meter = { compute: 0, deliveries: 0, currentHeapCount: 0 };
  private life: Life | undefined;
  private steps = 0;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly transport: Transport;
  private sensor: ReturnType<typeof syntheticSensor> | undefined;
  /** The identity the sensor was seeded from (a factory reset makes a new identity, and a new series). */
  private sensorFor = '';
  private stopped = false;
  private rebooting: Promise<void> | undefined;

  private constructor(readonly opts: SimDeviceOptions) {
    mkdirSync(opts.dir, { recursive: true, mode: DIR_MODE }); // holds identity keys
    this.nvs = new SimNvs(path.join(opts.dir, `${opts.name}.nvs.json`));
    this.transport = opts.transport ?? nodeTransport();
  }

  static async start(opts: SimDeviceOptions): Promise<SimDevice> {
    const d = new SimDevice(opts);
    if (opts.consolePort !== null) await d.listen(opts.consolePort ?? 0);
    await d.powerOn();
    return d;
  }

  /** The sensor, seeded per identity unless a seed was given. */
  private sensorNow() {
    if (!this.sensor || (this.opts.sensorSeed === undefined && this.sensorFor !== this.address)) {
      this.sensor = syntheticSensor(this.opts.sensorSeed ?? identitySeed(this.address));
      this.sensorFor = this.address;
    }
    return this.sensor;
  }

  get running(): boolean {
    return !!this.life && !this.life.dead;
  }

  /** Send one console request in-process (as the TCP console would) and return its reply. */
  async console(req: Record<string, unknown>): Promise<any> {
    const id = typeof req.id === 'number' ? req.id : Math.floor(Math.random() * 1e9);
    const lines = await this.consoleLine(JSON.stringify({ ...req, id }));
    for (const l of lines) {
      const r = JSON.parse(l);
      if (r.id === id) return r;
    }
    throw new Error(`console: no reply to ${String(req.cmd)}`);
  }

  /** One raw console line in, the lines the firmware wrote back. */
  async consoleLine(line: string): Promise<string[]> {
    const life = this.life;
    if (!life || life.dead) return [JSON.stringify({ id: null, ok: false, error: 'device-off', message: 'the device is powered off' })];
    return this.call(life, 'console', line);
  }

  /** Bytes of a heap snapshot of the running worker after gc() (retained memory, bench). */
  async snapshotSize(): Promise<number> {
    if (!this.life || this.life.dead) throw new Error('device is off');
    return this.life.worker.snapshotSize();
  }

  private async call(life: Life, method: string, ...args: unknown[]): Promise<any> {
    const { value, meter } = await life.worker.callMetered(method, ...args);
    this.meter.compute += meter.compute;
    this.meter.deliveries++;
    this.meter.currentHeapCount = meter.currentHeapCount;
    return value;
  }

  /** Power cut: the worker dies at once; NVS keeps whatever step completed. */
  async kill(): Promise<void> {
    const life = this.life;
    if (!life || life.dead) return;
    life.dead = true;
    for (const t of life.timers) clearTimeout(t);
    await life.worker.kill();
  }

  /** Power on again from the NVS file (after kill() or a cut). */
  async restart(): Promise<void> {
    await this.kill();
    await this.powerOn();
  }

  /** Switch off for good: worker and console server. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.rebooting?.catch(() => undefined);
    const life = this.life;
    if (life && !life.dead) {
      life.dead = true;
      for (const t of life.timers) clearTimeout(t);
      await life.worker.close().catch(() => life.worker.kill());
    }
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((ok) => (this.server ? this.server.close(() => ok()) : ok()));
  }

  /** ms added to the host's clock: -Date.now() at power-on with clockAtZero (the RTC starts at 0 each boot). */
  private clockOffset = 0;

  private async powerOn(): Promise<void> {
    if (this.stopped) return;
    this.clockOffset = this.opts.clockAtZero ? -Date.now() : 0;
    const code = await simBundle();
    const life: Life = { worker: undefined as unknown as XsWorker, timers: new Set(), dead: false };
    life.worker = await XsWorker.start({ name: `iotkx-sim-${this.opts.name}`, host: this.hostMethods(life), output: 'ignore' });
    this.life = life;
    await life.worker.evaluate(code);
    // The device's realm is frozen after preload (hosts/xs/freeze.ts): run the firmware the same way.
    await life.worker.freezeRealm();
    const r = await this.call(life, 'boot', { hardwareRandom: this.opts.hardwareRandom, maxSleepMs: this.opts.maxSleepMs, queue: this.opts.queue });
    this.bootError = r.bootError;
    this.broadcast(r.output);
    if (!this.bootError) this.address = (await this.console({ cmd: 'identity' })).address;
  }

  private hostMethods(life: Life): HostMethods {
    const alive = () => !life.dead && !this.stopped;
    const guard = <A extends unknown[], R>(fn: (...a: A) => R) => (...a: A): R | Promise<never> => (alive() ? fn(...a) : never());
    const step = (key: string, s: NvsStep) => {
      if (this.opts.cut?.({ device: this.opts.name, key, step: s, n: this.steps++ })) throw new PowerCutSignal();
    };
    const storageOp = (op: () => unknown) => {
      this.nvs.hook = step;
      try {
        return op();
      } catch (e) {
        if (!(e instanceof PowerCutSignal)) throw e;
        this.cuts++;
        void this.kill();
        return never(); // the worker never hears back: it is dead
      } finally {
        this.nvs.hook = undefined;
      }
    };
    return {
      nvsGet: guard((k: string) => this.nvs.get(k) ?? null),
      nvsSet: guard((k: string, v: Uint8Array) => storageOp(() => this.nvs.set(k, v))),
      nvsDelete: guard((k: string) => storageOp(() => this.nvs.delete(k))),
      random: guard((n: number) => new Uint8Array(randomBytes(n))),
      now: guard(() => Date.now() + this.clockOffset),
      // Monotonic (lib/platform.ts Clock.monotonic): the signing budget runs on it; moved by time passing only.
      monotonic: guard(() => performance.now()),
      // The board's SNTP: sets the clock when network time answers.
      networkTime: guard(() => {
        if (this.opts.networkTime === false) throw new Error('network time: no answer');
        this.clockOffset = 0;
        return null;
      }),
      sensor: guard(() => this.sensorNow().read()),
      log: guard((line: string) => { this.opts.log?.(`${this.opts.name}: ${line}`); }),
      http: guard(async (method: 'GET' | 'POST', url: string, body: Uint8Array | null, ct: string | null) => {
        const ev: HttpEvent = { device: this.opts.name, method, url, body };
        try {
          const res = await this.transport.request(method, url, body ?? undefined, ct ?? undefined);
          ev.status = res.status;
          ev.response = res.body;
          return res;
        } catch (e) {
          ev.error = e instanceof IotkxError ? e.code : 'transport-error';
          throw e;
        } finally {
          if (alive()) this.opts.onHttp?.(ev);
        }
      }),
      setTimer: guard((id: number, ms: number) => {
        const t = setTimeout(() => {
          life.timers.delete(t);
          if (!alive()) return;
          this.call(life, 'fire', id).then((lines: string[]) => this.broadcast(lines), (e: Error) => {
            if (alive()) this.opts.log?.(`${this.opts.name}: fire: ${e.message}`);
          });
        }, Math.min(Math.max(0, ms), this.opts.maxSleepMs ?? 600_000));
        life.timers.add(t);
      }),
      restart: guard(() => {
        // After the current delivery: the console reply that asked for it goes out first.
        setImmediate(() => {
          this.rebooting = this.restart().catch((e) => this.opts.log?.(`${this.opts.name}: reboot: ${(e as Error).message}`));
        });
      }),
    };
  }

  private broadcast(lines: string[]): void {
    for (const l of lines) {
      this.events.push(l);
      for (const s of this.sockets) s.write(`${l}\n`);
    }
  }

  private async listen(port: number): Promise<void> {
    const server = createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      // Only well-formed lines reach the firmware; anything else closes the connection (console-socket.ts).
      serveConsoleSocket(socket, (line) => this.consoleLine(line).catch((e: Error) => [JSON.stringify({ id: null, ok: false, error: 'device-off', message: e.message })]), { maxLine: 64 * 1024 });
    });
    await new Promise<void>((ok, fail) => { server.once('error', fail); server.listen(port, '127.0.0.1', () => ok()); });
    this.server = server;
    this.consolePort = (server.address() as { port: number }).port;
  }
}

class PowerCutSignal extends Error {}

/** A 32-bit sensor seed from a device address (its first 4 bytes: an address is already a hash); random before there is one. */
export function identitySeed(address: string): number {
  return /^0x[0-9a-fA-F]{8}/.test(address) ? Number.parseInt(address.slice(2, 10), 16) >>> 0 : Math.floor(Math.random() * 2 ** 32);
}

export interface SimFleetOptions extends Omit<SimDeviceOptions, 'name' | 'sensorSeed'> {
  prefix?: string;
  /** Devices booted at once (each start spawns an XS worker and makes or loads a key). */
  concurrency?: number;
}

/** n simulated devices `<prefix><i>` in one directory, each sensor seeded from its device's identity. */
export async function startSimFleet(n: number, opts: SimFleetOptions): Promise<SimDevice[]> {
  await simBundle();
  const out: SimDevice[] = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await SimDevice.start({ ...opts, name: `${opts.prefix ?? 'dev'}${i}` });
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 4, n) }, worker));
  } catch (e) {
    await Promise.all(out.filter(Boolean).map((d) => d.stop()));
    throw e;
  }
  return out;
}
