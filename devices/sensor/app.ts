/**
 * The sensor firmware, portable: boot → load or create the identity → serve the
 * provisioning console (§6) → once provisioned, join the network and run
 * Device.tick() on a timer (exchange §5, readings §7, rotation §5.6).
 * main.ts wires it to Moddable; the simulator wires it to its host (platform/sim.ts).
 *
 * Boot refuses to start (console answers every command with the error, and an
 * unsolicited `{"event": "boot-failed", ...}` line says why) when:
 *   storage-corrupt   a stored record fails its CRC or does not decode;
 *   identity-missing  the device holds state (config, exchange, readings) but no identity:
 *                     making a new one silently would orphan the enrolled address;
 *   no-hardware-rng   the platform has no hardware RNG (keys must come from it, §2).
 * The identity is made only on an empty partition, from the hardware RNG.
 */
import { addressHex } from '../../lib/address.js';
import { toHex } from '../../lib/bytes.js';
import { Device } from '../../lib/device/device.js';
import { DeviceEngine } from '../../lib/device/engine.js';
import { ReadingQueue, MAX_SLOTS, type QueueOptions } from '../../lib/device/queue.js';
import { ALL_KEYS, KEY_IDENTITY } from '../../lib/device/records.js';
import { SafeStorage } from '../../lib/device/safe-storage.js';
import { IotkxError, check } from '../../lib/errors.js';
import { installRandom } from '../../lib/secp256k1.js';
import { eventLine, handleLine, type ConsoleTarget } from './console.js';
import type { Storage } from '../../lib/platform.js';
import type { FirmwarePlatform } from './platform/types.js';

/** Marker written before a factory reset wipes the partition; a boot that finds it finishes the wipe. */
const KEY_RESET = 'rst';
/** Every logical key the firmware stores (records, queue slots q0..q15 and counters `qs`). */
const QUEUE_KEYS = [...Array.from({ length: MAX_SLOTS }, (_, i) => `q${i}`), 'qs'];
const STATE_KEYS = [...ALL_KEYS.filter((k) => k !== KEY_IDENTITY), ...QUEUE_KEYS];
/** After a tick threw (a bug, storage full), try again after this long. */
const TICK_ERROR_RETRY_MS = 5_000;
/** Joining the network failed: try again after this long. */
const NETWORK_RETRY_MS = 30_000;
/**
 * A clock before this (2025-01-01) was never set: an ESP32 boots at 1970 until SNTP answers. Until then nothing runs
 * that needs time (offers, readings, rotation): readings are held, not sealed with a meaningless `t`.
 */
const CLOCK_PLAUSIBLE_MS = Date.UTC(2025, 0, 1);
/** Network time did not answer: try again after this long. */
const CLOCK_RETRY_MS = 10_000;

export interface AppOptions {
  queue?: QueueOptions;
  /** Longest sleep between ticks (ms); the simulator shortens it. */
  maxSleepMs?: number;
}

export interface Firmware {
  /** null while running normally; the reason it refused to start otherwise. */
  bootError: { code: string; message: string } | null;
  device: Device | undefined;
  /** Answer one console line (the platform's console port calls this too). */
  handle(line: string): string;
}

/** Wipe state first, the identity last (the reset marker stays: the next boot wipes again, then clears it). */
function wipe(storage: SafeStorage): void {
  for (const k of STATE_KEYS) storage.delete(k);
  storage.delete(KEY_IDENTITY);
}

function describe(e: unknown): { code: string; message: string } {
  if (e instanceof IotkxError) {
    // A record that does not decode is corruption too.
    const code = e.code === 'bad-record' || e.code === 'bad-config' ? 'storage-corrupt' : e.code;
    return { code, message: e.message };
  }
  return { code: 'internal-error', message: String((e as Error)?.message ?? e) };
}

export function boot(p: FirmwarePlatform, opts: AppOptions = {}): Firmware {
  const storage = new SafeStorage(p.storage);
  let device: Device | undefined;
  let bootError: Firmware['bootError'] = null;
  let tickError: string | null = null;
  let running = false;
  /**
   * Set by factory-reset: from then on the device (engine, queue) writes nothing and the loop
   * stops, so a tick in flight (a drain awaiting the relay) cannot write keys after the wipe.
   */
  let resetting = false;
  const refuse = (): never => { throw new IotkxError('resetting', 'factory reset in progress: nothing more is written'); };
  const deviceStorage: Storage = {
    get: (k) => storage.get(k),
    set: (k, v) => { if (resetting) refuse(); storage.set(k, v); },
    delete: (k) => { if (resetting) refuse(); storage.delete(k); },
  };

  try {
    // A reset marker: a factory reset began (and maybe finished) before this boot. Wipe again, whatever
    // was written after the marker, and clear the marker last, so a cut here also finishes next boot.
    if (storage.get(KEY_RESET) !== undefined) {
      wipe(storage);
      storage.delete(KEY_RESET);
    }
    if (storage.get(KEY_IDENTITY) === undefined) {
      for (const k of STATE_KEYS) {
        if (storage.get(k) !== undefined) {
          throw new IotkxError('identity-missing', `storage holds "${k}" but no identity: refusing to make a new identity (erase the flash to start over)`);
        }
      }
    }
    check(p.random !== undefined, 'no-hardware-rng', 'this platform has no hardware RNG: refusing to make or use keys');
    try {
      installRandom(p.random);
    } catch (e) {
      if (!(e instanceof IotkxError && e.code === 'random-installed')) throw e;
    }
    const engine = new DeviceEngine({ storage: deviceStorage, random: p.random, clock: p.clock, transport: p.transport });
    const queue = new ReadingQueue(deviceStorage, p.transport, opts.queue);
    device = new Device({ engine, queue, sensor: p.sensor, clock: p.clock, random: p.random });
  } catch (e) {
    bootError = describe(e);
    device = undefined;
    p.log(`boot failed: ${bootError.code}: ${bootError.message}`);
  }

  const loop = async (): Promise<void> => {
    if (resetting) return;
    let next = TICK_ERROR_RETRY_MS;
    try {
      next = await device!.tick();
      tickError = null;
    } catch (e) {
      tickError = String((e as Error)?.message ?? e);
      p.log(`tick: ${tickError}`);
    }
    if (resetting) return;
    p.setTimer(loop, Math.min(next, opts.maxSleepMs ?? next));
  };

  const start = (): void => {
    if (running || !device?.engine.config) return;
    running = true;
    const clockSet = () => p.clock.now() >= CLOCK_PLAUSIBLE_MS;
    const withClock = (): void => {
      if (clockSet()) { tickError = null; p.setTimer(loop, 0); return; }
      const retry = (why: string) => {
        tickError = `clock not set (${why}): readings and offers held`;
        p.log(`clock: ${tickError}`);
        p.setTimer(withClock, CLOCK_RETRY_MS);
      };
      if (!p.syncClock) { retry('no network time on this platform'); return; }
      p.syncClock().then(
        () => (clockSet() ? withClock() : retry('network time gave an implausible time')),
        (e) => retry(String((e as Error)?.message ?? e)),
      );
    };
    const join = (): void => {
      p.network.connect(device!.engine.config!.network).then(
        () => withClock(),
        (e) => {
          p.log(`network: ${String((e as Error)?.message ?? e)}`);
          p.setTimer(join, NETWORK_RETRY_MS);
        },
      );
    };
    join();
  };

  const target: ConsoleTarget = {
    bootError: bootError ?? undefined,
    identity() {
      const e = device!.engine;
      return { address: addressHex(e.address), publicKey: toHex(e.publicKey), firmware: p.firmware, state: e.state };
    },
    provision(config) {
      device!.provision(config);
      start();
      return { state: device!.engine.state };
    },
    status() {
      const s = device!.status();
      return {
        state: s.state, epoch: s.epoch, pendingEpoch: s.pendingEpoch, lastError: s.lastError, readingsQueued: s.readings.queued,
        relayReachable: s.relayReachable, readings: s.readings, lastReading: s.lastReading, keyVersion: s.keyVersion,
        nextNonce: s.nextNonce, txToday: s.txToday, lastAction: s.lastAction, tickError,
      };
    },
    factoryReset(confirm) {
      const address = addressHex(device!.address);
      check(typeof confirm === 'string' && confirm.toLowerCase() === address, 'bad-confirmation', 'factory-reset: confirm must be this device\'s address');
      resetting = true; // stop the loop and every device write first
      storage.set(KEY_RESET, Uint8Array.of(1));
      wipe(storage);
      p.setTimer(() => p.restart(), 0);
      return { wiped: true };
    },
    reboot() {
      p.setTimer(() => p.restart(), 0);
      return { rebooting: true };
    },
  };

  const handle = (line: string) => handleLine(target, line);
  p.console.listen((line) => p.console.write(handle(line)));
  if (bootError) p.console.write(eventLine('boot-failed', { error: bootError.code, message: bootError.message }));
  else start();
  return { bootError, device, handle };
}
