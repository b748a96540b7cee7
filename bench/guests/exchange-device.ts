/**
 * The device engine as the exchange benchmark meters it on XS (hosts/xs/device-guest.ts:
 * the same DeviceEngine the firmware runs, its platform reached by host calls), plus one
 * variable-base scalar multiplication (`ecdh`) to express the exchange's compute in those units.
 */
import { hostCall, serve } from '../../hosts/xs/guest.js';
import { deviceMethods } from '../../hosts/xs/device-guest.js';
import { installRandom, sharedPoint } from '../../lib/secp256k1.js';
import type { Random } from '../../lib/platform.js';

const random: Random = { bytes: (n: number) => hostCall('random', n) };
installRandom(random);

serve({
  ...deviceMethods(random),
  /** One secp256k1 variable-base scalar multiplication (lib/secp256k1 sharedPoint, as the key wrap does). */
  ecdh: (sk: Uint8Array, pub: Uint8Array) => sharedPoint(sk, pub),
});
