/**
 * lib/ on XS: device bundle size, deterministic compute (xsnap's meter) for the
 * device's expensive operations beside micro-eth-signer and eciesjs in the same
 * run, and the heap XS retains after a realistic sequence of them.
 */
import { gzipSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { bundle } from '../hosts/xs/bundle.js';
import { XsWorker } from '../hosts/xs/worker.js';
import { table } from './table.js';

const host = { random: (n: number) => new Uint8Array(randomBytes(n)) };

async function guest(entry: string, keepNonDeviceGlobals = false): Promise<XsWorker> {
  const b = await bundle(entry);
  const w = await XsWorker.start({ host, keepNonDeviceGlobals, output: 'ignore' });
  await w.evaluate(b.code);
  return w;
}

/** Compute of one call, less that of a no-op delivery. */
async function metered(w: XsWorker, method: string, ...args: unknown[]) {
  const base = (await w.callMetered('noop')).meter.compute;
  const { value, meter } = await w.callMetered(method, ...args);
  return { value, compute: meter.compute - base };
}

const M = (n: number) => `${(n / 1e6).toFixed(2)} M`;
const KB = (n: number) => `${(n / 1024).toFixed(1)} KiB`;

export interface XsLibResults { rows: string[][]; figures: Record<string, number> }

export async function xsLibBench(): Promise<XsLibResults> {
  const figures: Record<string, number> = {};
  const rows: string[][] = [];

  const size = await bundle('bench/guests/device-lib.ts', { minify: true, globalName: 'iotkx' });
  figures.bundleMin = size.bytes;
  figures.bundleGzip = gzipSync(size.code).length;
  const mes = await bundle('bench/guests/mes-size.ts', { minify: true, globalName: 'mes' });
  const ecj = await bundle('bench/guests/eciesjs-size.ts', { minify: true, globalName: 'ecies' });

  const receiverPub = secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), false);
  const K = new Uint8Array(randomBytes(32));
  const sk = new Uint8Array(32).fill(0x11);
  const data = new Uint8Array(356).map((_, i) => i); // offerKey calldata is 356 bytes
  const to = new Uint8Array(20).fill(0xab);
  const ours = { type: 'eip1559', chainId: 11155111n, nonce: 7n, maxPriorityFeePerGas: 2_000_000_000n, maxFeePerGas: 30_000_000_000n, gas: 80_000n, to, value: 0n, data };
  const theirs = { to: '0x' + 'ab'.repeat(20), value: 0n, nonce: 7n, chainId: 11155111n, maxPriorityFeePerGas: 2_000_000_000n, maxFeePerGas: 30_000_000_000n, gasLimit: 80_000n, data: '0x' + Buffer.from(data).toString('hex') };

  // Ours: keygen, first and warm signature, wrap, seal; heap growth over the sequence.
  const w = await guest('bench/guests/lib-ops.ts');
  const heap0 = await w.snapshotSize();
  const keygen = await metered(w, 'keygen');
  const signFirst = await metered(w, 'sign', ours);
  const signWarm = await metered(w, 'sign', ours);
  const wrap = await metered(w, 'wrap', receiverPub, K);
  const seal1 = await metered(w, 'seal', K, 1);
  await metered(w, 'seal', K, 99);
  const heap1 = await w.snapshotSize();
  await w.close();
  Object.assign(figures, { keygen: keygen.compute, signFirst: signFirst.compute, signWarm: signWarm.compute, wrap: wrap.compute, seal: seal1.compute, retained: heap1 - heap0 });

  // micro-eth-signer: its default base table, and at our window for a like-for-like heap.
  const m = await guest('bench/guests/micro-eth-signer.ts', true);
  await m.call('load');
  const mFirst = await metered(m, 'sign', theirs, sk);
  const mWarm = await metered(m, 'sign', theirs, sk);
  await m.close();
  const { BASE_WINDOW } = await import('../lib/secp256k1.js');
  const m2 = await guest('bench/guests/micro-eth-signer.ts', true);
  await m2.call('load');
  await m2.call('window', BASE_WINDOW);
  await metered(m2, 'sign', theirs, sk);
  const mWarmSameHeap = await metered(m2, 'sign', theirs, sk);
  await m2.close();
  figures.mesSignWarm = mWarm.compute;
  figures.mesSignWarmSameWindow = mWarmSameHeap.compute;

  const e = await guest('bench/guests/eciesjs.ts', true);
  await metered(e, 'wrap', receiverPub, K);
  const eWrap = await metered(e, 'wrap', receiverPub, K);
  await e.close();
  figures.eciesjsWrap = eWrap.compute;

  rows.push(['device bundle (lib: sign, wrap, readings, encoding)', `${KB(figures.bundleMin)} min / ${KB(figures.bundleGzip)} gzip`, '≤ 64 KiB min']);
  rows.push(['micro-eth-signer bundle (sign only)', `${KB(mes.bytes)} min / ${KB(gzipSync(mes.code).length)} gzip`, '']);
  rows.push(['eciesjs bundle (wrap)', `${KB(ecj.bytes)} min / ${KB(gzipSync(ecj.code).length)} gzip`, '']);
  rows.push(['key generation (keygen + address)', M(keygen.compute), '']);
  rows.push([`EIP-1559 sign, first call (builds W=${BASE_WINDOW} table)`, M(signFirst.compute), '']);
  rows.push(['EIP-1559 sign, warm', M(signWarm.compute), `≤ 1.0× micro-eth-signer at that heap (${(signWarm.compute / mWarmSameHeap.compute).toFixed(2)}×)`]);
  rows.push(['micro-eth-signer sign, warm, default table', M(mWarm.compute), '']);
  rows.push([`micro-eth-signer sign, warm, W=${BASE_WINDOW} table`, M(mWarmSameHeap.compute), '']);
  rows.push(['ECIES wrap (ours)', M(wrap.compute), `≤ 0.3× eciesjs (${(wrap.compute / eWrap.compute).toFixed(2)}×)`]);
  rows.push(['ECIES wrap (eciesjs, xchacha20)', M(eWrap.compute), '']);
  rows.push(['seal one reading', M(seal1.compute), '']);
  rows.push(['heap retained: keygen + sign + wrap + 100 seals', KB(figures.retained), '≤ 64 KiB (64-bit layout)']);
  return { rows, figures };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await xsLibBench();
  console.log(table('lib/ on XS', ['what', 'measured', 'target'], r.rows));
}
