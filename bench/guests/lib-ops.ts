/**
 * The device-side operations of lib/ that the benchmark meters on XS: identity,
 * EIP-1559 signing of an offerKey transaction, ECIES key wrap, sealing a reading.
 */
import { serve, hostCall } from '../../hosts/xs/guest.js';
import { installRandom, randomSecretKey, getPublicKey } from '../../lib/secp256k1.js';
import { addressOf } from '../../lib/address.js';
import { signTransaction } from '../../lib/tx.js';
import { wrapKey } from '../../lib/ecies.js';
import { sealReading } from '../../lib/reading.js';
import type { Random } from '../../lib/platform.js';

const random: Random = { bytes: (n: number) => hostCall('random', n) };
installRandom(random);

let sk: Uint8Array;
let device: Uint8Array;
let seq = 0n;

serve({
  noop: () => null,
  keygen: () => {
    sk = randomSecretKey();
    device = addressOf(getPublicKey(sk));
    return device;
  },
  sign: (tx: any) => signTransaction(tx, sk),
  wrap: (receiverPub: Uint8Array, K: Uint8Array) => wrapKey(receiverPub, K, random),
  seal: (dataKey: Uint8Array, n: number) => {
    let last: Uint8Array | undefined;
    for (let i = 0; i < n; i++) {
      seq += 1n;
      last = sealReading({ dataKey, device, epoch: 1n, seq, values: { t: 1764000000 + i, temp: 21.5, rh: 40.25 }, random });
    }
    return last;
  },
});
