import '../helpers/node-random.js';
import { ECIES_CONFIG, decrypt, encrypt } from 'eciesjs';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { startGuest } from '../helpers/xs.js';
import { wycheproof } from '../helpers/vectors.js';
import { ecdhCases } from '../helpers/ecdh-cases.js';
import { ENCODE_CASES, REJECT_CASES, probe } from '../helpers/cbor-cases.js';
import { fixedRandom, runEcdhCases } from '../helpers/crypto-vectors.js';
import { nodeRandom } from '../helpers/node-random.js';
import type { XsWorker } from '../../hosts/xs/worker.js';
import { bytesToHex } from '../../lib/bytes.js';
import { encodeCbor } from '../../lib/cbor.js';
import { channelId, commitmentOf, dataKeyOf, proofOf } from '../../lib/ids.js';
import { openReading, sealReading } from '../../lib/reading.js';

// PROTOCOL.md §2 configuration; global in eciesjs, so set here.
ECIES_CONFIG.symmetricAlgorithm = 'xchacha20';

let worker: XsWorker;
beforeAll(async () => { worker = await startGuest('test/xs/guests/seal.ts'); });
afterAll(() => worker?.close());

test('Wycheproof HKDF and XChaCha20-Poly1305 pass on XS', async () => {
  expect(await worker.call('hkdfVectors', wycheproof('hkdf_sha256_test.json'))).toEqual([]);
  expect(await worker.call('aeadVectors', wycheproof('xchacha20_poly1305_test.json'))).toEqual([]);
});

test('Wycheproof ECDH passes on XS, refusing the same keys as on Node', async () => {
  const cases = ecdhCases(wycheproof('ecdh_secp256k1_test.json'));
  const { failed, refusedByUs } = await worker.call('ecdhCases', cases);
  expect(failed).toEqual([]);
  expect(refusedByUs).toEqual(runEcdhCases(cases).refusedByUs);
  expect(refusedByUs).toEqual(expect.arrayContaining(cases.filter((c) => c.result === 'invalid' && c.pub).map((c) => c.tcId)));
}, 300_000);

test('a key wrapped on XS decrypts with eciesjs; eciesjs output unwraps on XS', async () => {
  const sk = secp256k1.utils.randomSecretKey();
  const pub = secp256k1.getPublicKey(sk, false);
  const K = nodeRandom.bytes(32);
  const wrapped: Uint8Array = await worker.call('wrap', pub, K);
  expect(wrapped.length).toBe(137);
  expect(decrypt(sk, wrapped)).toEqual(K);
  expect(await worker.call('unwrap', sk, encrypt(pub, K))).toEqual(K);
  const offCurve = wrapped.slice();
  offCurve[64] ^= 1;
  await expect(worker.call('unwrap', sk, offCurve)).rejects.toMatchObject({ code: 'bad-point' });
  const flipped = wrapped.slice();
  flipped[100] ^= 1;
  await expect(worker.call('unwrap', sk, flipped)).rejects.toMatchObject({ code: 'auth-failed' });
  await expect(worker.call('wrap', offCurve.subarray(0, 65), K)).rejects.toMatchObject({ code: 'bad-point' });
});

test('CBOR: the same encodings and the same decodings/refusals on XS as on Node', async () => {
  expect(await worker.call('cborEncodeAll')).toEqual(ENCODE_CASES.map(([, v]) => bytesToHex(encodeCbor(v))));
  const hexes = [...ENCODE_CASES.map(([, , h]) => h), ...REJECT_CASES.map(([, h]) => h)];
  const xs: string[] = await worker.call('cborProbe', hexes);
  expect(xs).toEqual(probe(hexes));
  expect(xs.slice(ENCODE_CASES.length)).toEqual(REJECT_CASES.map(([, , c]) => `error:${c}`));
});

test('ids on XS equal ids on Node', async () => {
  const a = (n: number) => new Uint8Array(20).fill(n);
  const K = new Uint8Array(32).fill(9);
  const ch = channelId(31337n, a(1), a(2), a(3));
  const proof = proofOf(K, ch, 5n);
  expect(await worker.call('ids', 31337n, a(1), a(2), a(3), K, 5n))
    .toEqual({ channel: ch, proof, commitment: commitmentOf(proof), dataKey: dataKeyOf(K, ch) });
});

describe('sealed readings across engines', () => {
  const dataKey = new Uint8Array(32).map((_, i) => i * 3);
  const device = new Uint8Array(20).map((_, i) => i + 1);
  const values = { t: 1700000000, temp: 21.5, rh: 40.25, label: 'k\u00fcche', raw: -0.0001 };

  test('byte-identical with the same fixed Random', async () => {
    const node = sealReading({ dataKey, device, epoch: 2n, seq: 2n ** 64n - 1n, values, random: fixedRandom(11) });
    expect(await worker.call('seal', dataKey, device, 2n, 2n ** 64n - 1n, values, 11)).toEqual(node);
  });

  test('sealed on XS opens on Node, sealed on Node opens on XS', async () => {
    const fromXs: Uint8Array = await worker.call('seal', dataKey, device, 1n, 42n, values, null);
    expect(openReading(dataKey, fromXs)).toEqual({ device, epoch: 1n, seq: 42n, values });
    const fromNode = sealReading({ dataKey, device, epoch: 1n, seq: 43n, values, random: nodeRandom });
    expect(await worker.call('open', dataKey, fromNode)).toEqual({ device, epoch: 1n, seq: 43n, values });
    const bad = fromNode.slice();
    bad[bad.length - 1] ^= 1;
    await expect(worker.call('open', dataKey, bad)).rejects.toMatchObject({ code: 'auth-failed' });
  });
});
