/**
 * micro-eth-signer signing on XS, for comparison. It needs TextEncoder at load
 * (xsnap's is kept) and gets the host RNG as crypto.getRandomValues, so noble
 * blinds its scalar multiplications exactly as ours does: like for like.
 */
import { serve, hostCall } from '../../hosts/xs/guest.js';

(globalThis as any).crypto = {
  getRandomValues<T extends Uint8Array>(a: T): T { a.set(hostCall('random', a.length)); return a; },
};

let lib: any;
serve({
  noop: () => null,
  load: async () => {
    const [{ secp256k1 }, { Transaction }] = await Promise.all([import('@noble/curves/secp256k1.js'), import('micro-eth-signer')]);
    lib = { secp256k1, Transaction };
    return null;
  },
  window: (w: number) => { lib.secp256k1.Point.BASE.precompute(w); return null; },
  sign: (tx: any, sk: Uint8Array) => lib.Transaction.prepare(tx).signBy(sk, false).toBytes(),
});
