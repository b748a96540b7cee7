/** The OS RNG as the device's Random, installed into lib/secp256k1 once per process (before any curve use). */
import { randomBytes } from 'node:crypto';
import type { Random } from '../../lib/platform.js';
import { IotkxError } from '../../lib/errors.js';
import { installRandom } from '../../lib/secp256k1.js';

export const osRandom: Random = { bytes: (n: number) => new Uint8Array(randomBytes(n)) };
let installed = false;
export function ensureRandom(): Random {
  if (installed) return osRandom;
  try {
    installRandom(osRandom);
  } catch (e) {
    // Another Node part (relay, test helper) installed the OS RNG already: that one serves.
    if (!(e instanceof IotkxError && e.code === 'random-installed')) throw e;
  }
  installed = true;
  return osRandom;
}
