/** eciesjs (xchacha20) key wrap on XS, for comparison; its RNG is crypto.getRandomValues, shimmed to the host. */
import { serve, hostCall } from '../../hosts/xs/guest.js';

(globalThis as any).crypto = {
  getRandomValues<T extends Uint8Array>(a: T): T { a.set(hostCall('random', a.length)); return a; },
};

serve({
  noop: () => null,
  wrap: async (pub: Uint8Array, K: Uint8Array) => {
    const { encrypt, ECIES_CONFIG } = await import('eciesjs');
    ECIES_CONFIG.symmetricAlgorithm = 'xchacha20';
    return encrypt(pub, K);
  },
});
