/**
 * The simulator's platform: the same firmware runs in an XS worker (hosts/sim), and
 * every board service is a synchronous host call into Node, as a native module's
 * call would be on the device: raw NVS (erase-then-write, cut-able), the OS RNG,
 * HTTP to the relay (8 KiB cap), a synthetic sensor, the console over loopback TCP.
 * Timers: the firmware asks for a delay, the host waits and calls `fire(id)` back.
 */
import { hostCall } from '../../../hosts/xs/guest.js';
import { IotkxError } from '../../../lib/errors.js';
import type { Storage, Transport } from '../../../lib/platform.js';
import type { FirmwarePlatform } from './types.js';

/** The host's error as the IotkxError lib/ branches on (codes survive the boundary). */
function rethrow(e: unknown, fallback: string): never {
  const err = e as { code?: string; message?: string };
  throw new IotkxError(err?.code ?? fallback, String(err?.message ?? e));
}

const timers = new Map<number, () => void | Promise<void>>();
let nextTimer = 1;
let onLine: ((line: string) => void) | undefined;
let outbox: string[] = [];

/** Host → guest: a timer the firmware set has expired. */
export async function fireTimer(id: number): Promise<void> {
  const cb = timers.get(id);
  timers.delete(id);
  if (cb) await cb();
}

/** Host → guest: one console line in; the lines the firmware wrote meanwhile come back. */
export function consoleInput(line: string): string[] {
  onLine?.(line);
  return takeOutput();
}

/** Lines written outside a console request (e.g. the boot-failed event). */
export function takeOutput(): string[] {
  const out = outbox;
  outbox = [];
  return out;
}

export function simPlatform(opts: { hardwareRandom?: boolean; firmware?: string } = {}): FirmwarePlatform {
  const storage: Storage = {
    get: (key) => hostCall('nvsGet', key) ?? undefined,
    set: (key, value) => { hostCall('nvsSet', key, value); },
    delete: (key) => { hostCall('nvsDelete', key); },
  };
  const transport: Transport = {
    // The host answers within this delivery, so the Promise settles before it ends.
    async request(method, url, body, contentType) {
      try {
        return hostCall('http', method, url, body ?? null, contentType ?? null);
      } catch (e) {
        rethrow(e, 'transport-error');
      }
    },
  };
  return {
    firmware: opts.firmware ?? 'iotkx-sensor/sim',
    storage,
    random: opts.hardwareRandom === false ? undefined : { bytes: (n) => hostCall('random', n) },
    clock: { now: () => hostCall('now'), monotonic: () => hostCall('monotonic') },
    syncClock: async () => { hostCall('networkTime'); },
    transport,
    sensor: {
      read: () => {
        try {
          return hostCall('sensor');
        } catch (e) {
          rethrow(e, 'sensor-error');
        }
      },
    },
    console: {
      listen: (cb) => { onLine = cb; },
      write: (line) => { outbox.push(line); },
    },
    network: { connect: async () => undefined },
    setTimer(cb, ms) {
      const id = nextTimer++;
      timers.set(id, cb);
      hostCall('setTimer', id, ms);
    },
    restart: () => { hostCall('restart'); },
    log: (line) => { hostCall('log', line); },
  };
}
