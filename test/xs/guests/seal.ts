/** XS guest for the encryption/encoding part of lib/: the same vectors and calls as the Node tests. */
import { hostRandom } from './prelude.js';
import { serve } from '../../../hosts/xs/guest.js';
import { bytesToHex } from '../../../lib/bytes.js';
import { encodeCbor } from '../../../lib/cbor.js';
import { unwrapKey, wrapKey } from '../../../lib/ecies.js';
import { channelId, commitmentOf, dataKeyOf, proofOf } from '../../../lib/ids.js';
import { openReading, sealReading } from '../../../lib/reading.js';
import { fixedRandom, runAeadVectors, runEcdhCases, runHkdfVectors, type EcdhCase } from '../../helpers/crypto-vectors.js';
import { ENCODE_CASES, probe } from '../../helpers/cbor-cases.js';

serve({
  hkdfVectors: (file: unknown) => runHkdfVectors(file),
  aeadVectors: (file: unknown) => runAeadVectors(file),
  ecdhCases: (cases: EcdhCase[]) => runEcdhCases(cases),
  wrap: (pub: Uint8Array, K: Uint8Array) => wrapKey(pub, K, hostRandom),
  unwrap: (sk: Uint8Array, wrapped: Uint8Array) => unwrapKey(sk, wrapped),
  cborEncodeAll: () => ENCODE_CASES.map(([, v]) => {
    try { return bytesToHex(encodeCbor(v)); } catch (e: any) { return `error:${e?.code}`; }
  }),
  cborProbe: (hexes: string[]) => probe(hexes),
  ids: (chainId: bigint, contract: Uint8Array, device: Uint8Array, receiver: Uint8Array, K: Uint8Array, epoch: bigint) => {
    const ch = channelId(chainId, contract, device, receiver);
    const proof = proofOf(K, ch, epoch);
    return { channel: ch, proof, commitment: commitmentOf(proof), dataKey: dataKeyOf(K, ch) };
  },
  seal: (dataKey: Uint8Array, device: Uint8Array, epoch: bigint, seq: bigint, values: any, seed: number | null) =>
    sealReading({ dataKey, device, epoch, seq, values, random: seed === null ? hostRandom : fixedRandom(seed) }),
  open: (dataKey: Uint8Array, envelope: Uint8Array) => openReading(dataKey, envelope),
});
