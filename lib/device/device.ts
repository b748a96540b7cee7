/**
 * One device: the key-exchange engine, the readings queue and a sensor, driven by a
 * single `tick()` that the firmware's (or simulator's) timer calls again after the
 * delay it returns. Each tick does what is due: an engine step (§5.3–5.6), a reading
 * every intervalSec while a key is active (§7), and a drain of the queue to the relay
 * (§9). The previous epoch's key is released only once the queue holds none of its
 * envelopes (§5.3 step 4).
 */
import { IotkxError } from '../errors.js';
import type { Clock, Random } from '../platform.js';
import type { DeviceEngine, DeviceStatus } from './engine.js';
import type { DrainResult, QueueCounters, ReadingQueue } from './queue.js';
import type { Sensor } from './sensor.js';

export interface DeviceParts {
  engine: DeviceEngine;
  queue: ReadingQueue;
  sensor: Sensor;
  clock: Clock;
  random: Random;
}

export interface DeviceReport extends DeviceStatus {
  readings: QueueCounters;
  lastReading: { epoch: string; seq: string; at: number } | null;
  sensorErrors: number;
  readingError: { code: string; message: string } | null;
}

/** Drain retry after a failure: doubles from this… */
const DRAIN_RETRY_MIN_MS = 5_000;
/** …up to this. */
const DRAIN_RETRY_MAX_MS = 600_000;
/** Never ask the timer for more than this, so a changed state is noticed. */
const MAX_TICK_MS = 600_000;

export class Device {
  readonly engine: DeviceEngine;
  readonly queue: ReadingQueue;
  private readonly sensor: Sensor;
  private readonly clock: Clock;
  private readonly random: Random;
  private nextStepAt = 0;
  private nextReadingAt = 0;
  private nextDrainAt = 0;
  private drainFailures = 0;
  private lastReading: DeviceReport['lastReading'] = null;
  private sensorErrors = 0;
  private readingError: { code: string; message: string } | null = null;
  lastDrain: DrainResult | null = null;

  constructor(parts: DeviceParts) {
    this.engine = parts.engine;
    this.queue = parts.queue;
    this.sensor = parts.sensor;
    this.clock = parts.clock;
    this.random = parts.random;
  }

  get address(): Uint8Array { return this.engine.address; }

  /** §6 provision; the engine steps at the next tick. */
  provision(json: unknown): void {
    this.engine.provision(json);
    this.nextStepAt = 0;
  }

  /** §6 factory-reset: the engine's records and the queue (the whole partition). */
  factoryReset(confirm: string): void {
    this.engine.factoryReset(confirm);
    this.queue.wipe();
  }

  status(): DeviceReport {
    return { ...this.engine.status(), readings: this.queue.counters(), lastReading: this.lastReading, sensorErrors: this.sensorErrors, readingError: this.readingError };
  }

  /** Do what is due; returns ms until the next tick. Relay, sensor and reading-storage trouble are recorded, not thrown. */
  async tick(): Promise<number> {
    let now = this.clock.now();
    if (now >= this.nextStepAt) {
      const r = await this.engine.step();
      now = this.clock.now();
      this.nextStepAt = now + r.waitMs;
    }
    const cfg = this.engine.config;
    if (cfg && this.engine.activeKey()) {
      if (now >= this.nextReadingAt) {
        this.takeReading(now);
        const interval = cfg.intervalSec * 1000;
        // Keep the cadence; after a long gap (or a clock jump) restart it from now.
        this.nextReadingAt = this.nextReadingAt + interval > now ? this.nextReadingAt + interval : now + interval;
        // §5.6: a count-based rotation is noticed at this reading, not at the engine's idle check (10 min).
        if (this.engine.rotationDue()) this.nextStepAt = now;
      }
    }
    if (cfg && this.queue.size > 0 && now >= this.nextDrainAt) {
      const d = await this.queue.drain(cfg.relayUrl, { keys: this.engine, random: this.random }); // keys: §7 re-seal on 409
      this.lastDrain = d;
      now = this.clock.now();
      if (d.stopped !== null && d.stopped !== 'busy') {
        this.drainFailures = Math.min(this.drainFailures + 1, 20);
        this.nextDrainAt = now + Math.min(DRAIN_RETRY_MIN_MS * 2 ** (this.drainFailures - 1), DRAIN_RETRY_MAX_MS);
      } else {
        this.drainFailures = 0;
        this.nextDrainAt = now;
      }
    }
    const prev = this.engine.previousKey();
    if (prev && !this.queue.holdsEpoch(prev.epoch)) this.engine.releasePrevious(prev.epoch);

    let next = this.nextStepAt;
    if (cfg && this.engine.activeKey()) next = Math.min(next, this.nextReadingAt);
    if (cfg && this.queue.size > 0) next = Math.min(next, Math.max(this.nextDrainAt, now + 1000));
    return Math.max(0, Math.min(next - now, MAX_TICK_MS));
  }

  private takeReading(now: number): void {
    let values: Record<string, number>;
    try {
      values = this.sensor.read();
    } catch {
      this.sensorErrors++;
      return;
    }
    try {
      const { epoch, seq } = this.queue.seal(this.engine, this.random, Math.floor(now / 1000), values);
      this.lastReading = { epoch: epoch.toString(), seq: seq.toString(), at: now };
    } catch (e) {
      // A bad value, or storage trouble: this reading is lost (a seq gap, §7), the device goes on.
      this.readingError = { code: e instanceof IotkxError ? e.code : 'internal-error', message: String((e as Error)?.message ?? e) };
      if (e instanceof IotkxError && e.code === 'bad-reading') this.sensorErrors++;
    }
  }
}
