// lib/ takes its randomness from an injected source (lib/platform.ts). On Node that is the OS RNG.
import { randomBytes } from 'node:crypto';
import { IotkxError } from '../../lib/errors.js';
import type { Random } from '../../lib/platform.js';
import { installRandom } from '../../lib/secp256k1.js';

export const nodeRandom: Random = { bytes: (n: number) => new Uint8Array(randomBytes(n)) };

/** Installs the OS RNG into lib/ unless another host already installed one (first wins, lib/secp256k1.ts). */
export function ensureRandom(): void {
  try {
    installRandom(nodeRandom);
  } catch (e) {
    if (!(e instanceof IotkxError && e.code === 'random-installed')) throw e;
  }
}
