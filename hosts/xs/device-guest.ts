/**
 * Runs inside an XS worker: the device engine (lib/device) with Storage, Clock and the
 * relay Transport reached by synchronous host calls, as native modules would be. The
 * XS tests and the exchange benchmark serve these methods; the host implements
 * `storageGet`, `storageSet`, `storageDelete`, `now` and `http`.
 */
import { hostCall } from './guest.js';
import { DeviceEngine } from '../../lib/device/engine.js';
import type { Clock, Random, Storage, Transport } from '../../lib/platform.js';

export function deviceMethods(random: Random) {
  const storage: Storage = {
    get: (key) => hostCall('storageGet', key) ?? undefined,
    set: (key, value) => hostCall('storageSet', key, value),
    delete: (key) => hostCall('storageDelete', key),
  };
  const clock: Clock = { now: () => hostCall('now') };
  // The host answers at once; the Promise resolves within the same delivery.
  const transport: Transport = { request: async (method, url, body, contentType) => hostCall('http', method, url, body, contentType) };

  let engine: DeviceEngine | undefined;
  const dev = () => engine ?? (engine = new DeviceEngine({ storage, random, clock, transport }));
  return {
    noop: () => null,
    /** A (re)boot: a fresh engine over the host's storage. */
    boot: () => { engine = undefined; return dev().status(); },
    provision: (json: unknown) => { dev().provision(json); return dev().state; },
    step: () => dev().step(),
    status: () => dev().status(),
    activeKey: () => dev().activeKey() ?? null,
    reserveSeq: () => dev().reserveSeq(),
  };
}
