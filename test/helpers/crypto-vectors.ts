/**
 * Wycheproof runners for the KDF, the AEAD and ECDH through lib/. Portable (no
 * Node APIs) so the same code runs under Node and inside an XS guest; each returns
 * the tcIds that failed, so an empty list is a pass.
 */
import { aeadOpen, aeadSeal } from '../../lib/aead.js';
import { concatBytes, equalBytes, hexToBytes } from '../../lib/bytes.js';
import { hkdfSha256 } from '../../lib/kdf.js';
import { sharedPoint } from '../../lib/secp256k1.js';

type Json = any;
const h = hexToBytes;
const codeOf = (f: () => unknown): string | undefined => {
  try {
    f();
    return undefined;
  } catch (e: any) {
    return e?.code ?? 'no-code';
  }
};

/** hkdf_sha256_test.json: valid → okm; invalid (oversized L) → 'bad-length'. */
export function runHkdfVectors(file: Json): number[] {
  const failed: number[] = [];
  for (const g of file.testGroups) for (const t of g.tests) {
    if (t.result === 'valid') {
      let okm: Uint8Array | undefined;
      try { okm = hkdfSha256(h(t.ikm), h(t.salt), h(t.info), t.size); } catch { /* counted below */ }
      if (!okm || !equalBytes(okm, h(t.okm))) failed.push(t.tcId);
    } else if (codeOf(() => hkdfSha256(h(t.ikm), h(t.salt), h(t.info), t.size)) !== 'bad-length') failed.push(t.tcId);
  }
  return failed;
}

/** xchacha20_poly1305_test.json: valid → seal gives ct||tag and open gives msg; invalid → open refused. */
export function runAeadVectors(file: Json): number[] {
  const failed: number[] = [];
  for (const g of file.testGroups) for (const t of g.tests) {
    const [key, iv, aad, msg] = [h(t.key), h(t.iv), h(t.aad), h(t.msg)];
    const sealed = concatBytes(h(t.ct), h(t.tag));
    if (t.result === 'valid') {
      try {
        if (!equalBytes(aeadSeal(key, iv, msg, aad), sealed) || !equalBytes(aeadOpen(key, iv, sealed, aad), msg)) failed.push(t.tcId);
      } catch {
        failed.push(t.tcId);
      }
    } else {
      const code = codeOf(() => aeadOpen(key, iv, sealed, aad));
      if (code !== 'auth-failed' && code !== 'bad-length') failed.push(t.tcId);
    }
  }
  return failed;
}

/** One ECDH case after the host decoded its DER public key (null: not decodable to a point). */
export interface EcdhCase {
  tcId: number;
  pub: Uint8Array | null;
  priv: Uint8Array;
  shared: Uint8Array;
  result: 'valid' | 'invalid' | 'acceptable';
}

/**
 * ecdh_secp256k1_test.json through lib/secp256k1.sharedPoint: valid → X of the
 * shared point equals `shared`; invalid → refused ('bad-point' when it reached us);
 * acceptable → refused or correct. Returns failures and how many we refused ourselves.
 */
export function runEcdhCases(cases: EcdhCase[]): { failed: number[]; refusedByUs: number[] } {
  const failed: number[] = [];
  const refusedByUs: number[] = [];
  for (const t of cases) {
    if (!t.pub) {
      if (t.result === 'valid') failed.push(t.tcId);
      continue;
    }
    let S: Uint8Array | undefined;
    let code: string | undefined;
    try { S = sharedPoint(t.priv, t.pub); } catch (e: any) { code = e?.code; }
    if (code !== undefined) refusedByUs.push(t.tcId);
    const correct = S !== undefined && S.length === 65 && equalBytes(S.subarray(1, 33), t.shared);
    if (t.result === 'valid' && !correct) failed.push(t.tcId);
    if (t.result === 'invalid' && code !== 'bad-point') failed.push(t.tcId);
    if (t.result === 'acceptable' && !correct && code !== 'bad-point') failed.push(t.tcId);
  }
  return { failed, refusedByUs };
}

/** A Random that returns a fixed, counter-based stream: byte-exact cross-engine tests. */
export function fixedRandom(seed: number): { bytes(n: number): Uint8Array } {
  let counter = seed;
  return {
    bytes(n: number) {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = (counter++ * 131 + 7) & 0xff;
      return out;
    },
  };
}
