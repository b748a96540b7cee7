import { randomBytes } from 'node:crypto';
import { installRandom } from '../../lib/secp256k1.js';
import type { Random } from '../../lib/platform.js';

/** The OS RNG, installed into lib/ for tests that run on Node. */
export const nodeRandom: Random = { bytes: (n: number) => new Uint8Array(randomBytes(n)) };
installRandom(nodeRandom);
