import { serve, hostCall } from '../../../hosts/xs/guest.js';
import { toHex, u64be, utf8Encode } from '../../../lib/bytes.js';
import { secp256k1 } from '@noble/curves/secp256k1.js';

serve({
  hex: (b: Uint8Array) => toHex(b),
  u64: (x: bigint) => u64be(x),
  utf8: (s: string) => utf8Encode(s),
  echoHost: (x: unknown) => hostCall('echo', x),
  pub: (sk: Uint8Array) => secp256k1.getPublicKey(sk, false),
  globals: () => [typeof (globalThis as any).TextEncoder, typeof (globalThis as any).crypto],
  fail: () => { throw new Error('boom'); },
});
