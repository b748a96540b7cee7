/**
 * The device engine as the exchange benchmark meters it on XS: the same DeviceEngine
 * the firmware runs, with Storage, Clock, Random and the relay Transport reached by
 * synchronous host calls (as native modules would be), plus one variable-base scalar
 * multiplication (`ecdh`) to express the exchange's compute in those units.
 */
import { hostCall, serve } from '../../hosts/xs/guest.js';
import { DeviceEngine } from '../../lib/device/engine.js';
import { installRandom, sharedPoint } from '../../lib/secp256k1.js';
import type { Clock, Random, Storage, Transport } from '../../lib/platform.js';

const random: Random = { bytes: (n: number) => hostCall('random', n) };
installRandom(random);
const storage: Storage = {
  get: (key) => hostCall('storageGet', key) ?? undefined,
  set: (key, value) => hostCall('storageSet', key, value),
  delete: (key) => hostCall('storageDelete', key),
};
const clock: Clock = { now: () => hostCall('now') };
const transport: Transport = { request: async (method, url, body, contentType) => hostCall('http', method, url, body, contentType) };

let engine: DeviceEngine | undefined;
const dev = () => engine ?? (engine = new DeviceEngine({ storage, random, clock, transport }));

serve({
  noop: () => null,
  boot: () => { engine = undefined; return dev().status(); },
  provision: (json: unknown) => { dev().provision(json); return dev().state; },
  step: () => dev().step(),
  activeKey: () => dev().activeKey() ?? null,
  reserveSeq: () => dev().reserveSeq(),
  /** One secp256k1 variable-base scalar multiplication (lib/secp256k1 sharedPoint, as the key wrap does). */
  ecdh: (sk: Uint8Array, pub: Uint8Array) => sharedPoint(sk, pub),
});
