/**
 * The device engine inside XS: Storage, Clock and the relay Transport are the
 * Node host's (reached by synchronous host calls, as native modules would be);
 * the RNG is the host's OS RNG (prelude).
 */
import { hostRandom } from './prelude.js';
import { hostCall, serve } from '../../../hosts/xs/guest.js';
import { DeviceEngine } from '../../../lib/device/engine.js';
import type { Clock, Storage, Transport } from '../../../lib/platform.js';

const storage: Storage = {
  get: (key) => hostCall('storageGet', key) ?? undefined,
  set: (key, value) => hostCall('storageSet', key, value),
  delete: (key) => hostCall('storageDelete', key),
};
const clock: Clock = { now: () => hostCall('now') };
// The host answers at once; the Promise resolves within the same delivery.
const transport: Transport = { request: async (method, url, body, contentType) => hostCall('http', method, url, body, contentType) };

let engine: DeviceEngine | undefined;
const dev = () => engine ?? (engine = new DeviceEngine({ storage, random: hostRandom, clock, transport }));

serve({
  noop: () => null,
  /** A (re)boot: a fresh engine over the host's storage. */
  boot: () => { engine = undefined; return dev().status(); },
  provision: (json: unknown) => { dev().provision(json); return dev().state; },
  step: () => dev().step(),
  status: () => dev().status(),
  activeKey: () => dev().activeKey() ?? null,
  reserveSeq: () => dev().reserveSeq(),
});
