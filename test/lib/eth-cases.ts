/** Transaction cases shared by the Node and XS tests (inputs only; expectations come from viem). */
import { sha256 } from '@noble/hashes/sha2.js';
import { hexToBytes } from '../../lib/bytes.js';
import { curve } from '../../lib/secp256k1.js';
import { verifyDigest } from '../../lib/signature.js';
import type { Transaction } from '../../lib/tx.js';

export const SECRET_KEYS: Uint8Array[] = [
  Uint8Array.from({ length: 32 }, (_, i) => i + 1),
  Uint8Array.from({ length: 32 }, (_, i) => 0xa0 ^ (i * 7)),
  (() => { const k = new Uint8Array(32); k[31] = 1; return k; })(),
];

const TO = Uint8Array.from({ length: 20 }, (_, i) => 0x10 + i);
const data = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff);

export function txCases(): Transaction[] {
  const out: Transaction[] = [];
  const chains = [1n, 31337n, 11155111n, 1n << 40n];
  const nonces = [0n, 1n, (1n << 64n) - 2n];
  const sizes = [0, 4, 36, 600];
  const values = [0n, 10n ** 30n + 12345n];
  let i = 0;
  for (const chainId of chains)
    for (const nonce of nonces)
      for (const n of sizes) {
        const value = values[i++ % 2];
        out.push({
          type: 'eip1559', chainId, nonce, maxPriorityFeePerGas: i % 3 === 0 ? 0n : 1_500_000_000n,
          maxFeePerGas: 30_000_000_000n + BigInt(i), gas: 21_000n + BigInt(n) * 16n, to: TO, value, data: data(n),
        });
        out.push({ type: 'legacy', chainId, nonce, gasPrice: i % 5 === 0 ? 0n : 7n + BigInt(i), gas: 300_000n, to: TO, value, data: data(n) });
      }
  return out;
}

/**
 * Wycheproof ECDSA (bitcoin variant: high-s is invalid): DER parsed by noble's strict
 * parser, then our scalar rules (range, low-s) and verification. Returns failing tcIds.
 */
export function wycheproofFailures(file: any): number[] {
  const failing: number[] = [];
  for (const g of file.testGroups) {
    const pub = hexToBytes(g.publicKey.uncompressed);
    for (const t of g.tests) {
      let ok: boolean;
      try {
        const sig = curve().Signature.fromBytes(hexToBytes(t.sig), 'der');
        ok = verifyDigest(sha256(hexToBytes(t.msg)), sig, pub);
      } catch { ok = false; }
      if (ok !== (t.result === 'valid')) failing.push(t.tcId);
    }
  }
  return failing;
}
