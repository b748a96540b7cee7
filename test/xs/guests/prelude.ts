/**
 * Imported first by every XS test guest: the device's RNG is the host's OS RNG
 * here, reached through a synchronous host call as a native module would be.
 */
import { hostCall } from '../../../hosts/xs/guest.js';
import { installRandom } from '../../../lib/secp256k1.js';
import type { Random } from '../../../lib/platform.js';

export const hostRandom: Random = { bytes: (n: number) => hostCall('random', n) };
installRandom(hostRandom);
