/**
 * The key exchange end to end on a fresh anvil: the device side on XS (compute from xsnap's meter per engine
 * step, also in units of one variable-base scalar multiplication measured in the same run; retained heap from
 * snapshot growth) against our receiver, and the receiver's throughput on offers made by independent code
 * (viem + eciesjs) from many devices. `npx tsx bench/exchange.ts` prints a markdown table.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ECIES_CONFIG, encrypt as eciesEncrypt } from 'eciesjs';
import { bytesToHex, encodeFunctionData, parseEther, toHex, type Address, type Hex } from 'viem';
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { keyExchangeAbi } from '../contracts/build/KeyExchange.js';
import { startAnvil } from '../hosts/chain/anvil.js';
import { connect, deployKeyExchange, fund, type ChainSession } from '../hosts/chain/deploy.js';
import { channelId, proofFor } from '../hosts/chain/signing.js';
import { nodeTransport } from '../hosts/device-node/transport.js';
import { startReceiver, type RunningReceiver } from '../hosts/receiver/receiver.js';
import { bundle } from '../hosts/xs/bundle.js';
import { XsWorker } from '../hosts/xs/worker.js';
import { table } from './table.js';

ECIES_CONFIG.symmetricAlgorithm = 'xchacha20'; // PROTOCOL.md §2

export interface ExchangeBenchOptions {
  /** Offers (one per device) the receiver processes in the throughput run (default 200). */
  offers?: number;
}

export interface ExchangeBenchResult {
  header: string[];
  rows: string[][];
  method: string;
  figures: Record<string, number>;
}

/** Long enough that none of the throughput run's offers expires while the receiver works through them (automine: one block per transaction). */
const TTL_BLOCKS = 1000;
const GWEI = 1_000_000_000n;
const M = (n: number) => `${(n / 1e6).toFixed(2)} M`;
const KiB = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
const pad = (e: bigint) => e.toString().padStart(20, '0');

/** One receiver pass, the receipts of what it sent, then a pass to settle them. */
async function pass(rcv: RunningReceiver, s: ChainSession): Promise<void> {
  await rcv.sync();
  const sent = rcv.store.db.prepare("SELECT action_tx FROM epochs WHERE state IN ('acceptSent', 'rejectSent')").all() as { action_tx: Hex }[];
  for (const t of sent) await s.publicClient.waitForTransactionReceipt({ hash: t.action_tx, pollingInterval: 50, timeout: 10_000 });
  await rcv.sync();
}

function storedK(rcv: RunningReceiver, device: string, epoch: bigint): Hex | undefined {
  const row = rcv.store.db.prepare('SELECT k_enc FROM epochs WHERE device = ? AND epoch = ?').get(device.toLowerCase(), pad(epoch)) as { k_enc: Buffer | null } | undefined;
  return row?.k_enc ? bytesToHex(rcv.store.openK(device.toLowerCase(), epoch, row.k_enc)) : undefined;
}

export async function exchangeBench(opts: ExchangeBenchOptions = {}): Promise<ExchangeBenchResult> {
  const N = opts.offers ?? 200;
  const figures: Record<string, number> = {};
  const rows: string[][] = [];
  const anvil = await startAnvil({ accounts: 3 });
  const dir = mkdtempSync(join(tmpdir(), 'iotkx-bench-exchange-'));
  let rcv: RunningReceiver | undefined;
  let worker: XsWorker | undefined;
  try {
    const deployer = await connect(anvil.rpcUrl, anvil.accounts[0].privateKey, anvil.chainId);
    const dep = await deployKeyExchange(deployer, TTL_BLOCKS);
    const asReceiver = await connect(anvil.rpcUrl, anvil.accounts[1].privateKey, anvil.chainId);
    rcv = await startReceiver({
      rpcUrl: anvil.rpcUrl, chainId: anvil.chainId, contract: dep.address, startBlock: BigInt(dep.block),
      dataDir: join(dir, 'receiver'), pollIntervalMs: 0, http: false, exchange: { confirmations: 0 },
      env: { IOTKX_RECEIVER_KEY: anvil.accounts[1].privateKey },
    });
    const receiver = rcv.address;
    const enroll = async (device: Address) => {
      const hash = await asReceiver.walletClient.writeContract({ address: dep.address, abi: keyExchangeAbi, functionName: 'enroll', args: [receiver, device] } as never);
      await asReceiver.publicClient.waitForTransactionReceipt({ hash });
    };

    /* ---------- the device side on XS ---------- */
    const storage = new Map<string, Uint8Array>();
    let now = Date.UTC(2025, 0, 1, 8);
    const http = nodeTransport({ timeoutMs: 10_000 });
    worker = await XsWorker.start({
      output: 'ignore',
      host: {
        random: (n: number) => new Uint8Array(randomBytes(n)),
        storageGet: (k: string) => storage.get(k) ?? null,
        storageSet: (k: string, v: Uint8Array) => { storage.set(k, v.slice()); },
        storageDelete: (k: string) => { storage.delete(k); },
        now: () => now,
        http: (m: 'GET' | 'POST', url: string, body: Uint8Array, ct: string) => http.request(m, url, body, ct),
      },
    });
    const b = await bundle('bench/guests/exchange-device.ts');
    await worker.evaluate(b.code);
    const w = worker;
    const heapLoaded = await w.snapshotSize();
    await w.call('noop');
    const noop = (await w.callMetered('noop')).meter.compute;
    const metered = async (method: string, ...args: unknown[]) => {
      const { value, meter } = await w.callMetered(method, ...args);
      return { value, compute: meter.compute - noop };
    };

    // The unit: one variable-base scalar multiplication, warm (second call).
    const sk = secp256k1.utils.randomSecretKey();
    const pub = secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), false);
    await metered('ecdh', sk, pub);
    const ecdh = (await metered('ecdh', sk, pub)).compute;
    figures.ecdhCompute = ecdh;
    const inMults = (n: number) => `${(n / ecdh).toFixed(1)} scalar mults`;

    const firstBoot = await metered('boot'); // identity creation: d from the RNG, its public key
    const device = firstBoot.value.address as Address;
    const reboot = await metered('boot'); // a later boot: the stored identity
    await w.call('provision', {
      relayUrl: anvil.rpcUrl, chainId: String(anvil.chainId), contract: dep.address, receiver, intervalSec: 60,
      maxFeePerGas: String(100n * GWEI), maxPriorityFeePerGas: String(2n * GWEI), offerGas: '300000', maxTxPerDay: 20,
      blockTime: 1, backoffMaxSec: 3600, rotation: { maxReadings: 2, maxAgeSec: 0 },
    });
    await enroll(device);
    await fund(deployer, device, parseEther('1'));
    const heap0 = await w.snapshotSize();
    let heapMax = heap0;

    const exchange = async (epoch: bigint) => {
      const perAction: [string, number][] = [];
      let total = 0;
      for (let i = 0; i < 30; i++) {
        const { value, compute } = await metered('step');
        perAction.push([value.action, compute]);
        total += compute;
        heapMax = Math.max(heapMax, await w.snapshotSize());
        now += value.waitMs;
        await pass(rcv!, asReceiver);
        const key = await w.call('activeKey');
        if (key?.epoch === epoch) {
          // Guard: the figures are those of a real exchange only if both sides hold the same K.
          if (storedK(rcv!, device, epoch) !== toHex(key.K)) throw new Error(`epoch ${epoch}: the receiver's K differs from the device's`);
          return { total, perAction };
        }
      }
      throw new Error(`epoch ${epoch} not active after 30 steps: ${perAction.map((p) => p[0]).join(', ')}`);
    };
    const steps = (p: [string, number][]) => p.map(([a, c]) => `${a} ${M(c)}`).join(', ');

    const first = await exchange(1n);
    const heapAfter = await w.snapshotSize();
    await w.call('reserveSeq');
    await w.call('reserveSeq'); // the count policy (2 readings) makes a rotation due
    const second = await exchange(2n);
    figures.firstExchangeCompute = first.total;
    figures.rotationCompute = second.total;
    figures.heapGrowthMax = heapMax - heap0;
    figures.heapGrowthEnd = heapAfter - heap0;
    figures.heapFromLoad = heapAfter - heapLoaded;

    rows.push(['one variable-base scalar multiplication (lib/secp256k1 sharedPoint, warm)', M(ecdh), 'the unit of the rows below']);
    rows.push(['device side of one exchange, epoch 1 (sum over engine steps)', `${M(first.total)} = ${inMults(first.total)}`, steps(first.perAction)]);
    rows.push(['device side of a rotation, epoch 2', `${M(second.total)} = ${inMults(second.total)}`, steps(second.perAction)]);
    rows.push(['first boot (identity d from the RNG, public key)', `${M(firstBoot.compute)} = ${inMults(firstBoot.compute)}`, 'once per identity']);
    rows.push(['later boot (engine over the stored identity)', `${M(reboot.compute)} = ${inMults(reboot.compute)}`, 'every power-up']);
    rows.push(['XS retained heap through the exchanges (snapshot growth after gc, max over steps)', KiB(heapMax - heap0),
      `at active (epoch 1): ${KiB(heapAfter - heap0)}; from bundle loaded to active: ${KiB(heapAfter - heapLoaded)}; whole snapshot ${KiB(heapLoaded)} after load`]);

    /* ---------- receiver throughput ---------- */
    const devices: PrivateKeyAccount[] = Array.from({ length: N }, () => privateKeyToAccount(generatePrivateKey()));
    for (const d of devices) {
      await deployer.publicClient.request({ method: 'anvil_setBalance' as never, params: [d.address, toHex(parseEther('1'))] as never });
    }
    const sendAll = async (raws: Hex[]) => {
      const hashes: Hex[] = [];
      for (const raw of raws) hashes.push(await deployer.publicClient.sendRawTransaction({ serializedTransaction: raw }));
      for (const hash of hashes) {
        const r = await deployer.publicClient.waitForTransactionReceipt({ hash, pollingInterval: 20 });
        if (r.status !== 'success') throw new Error(`bench set-up transaction ${hash} reverted`);
      }
    };
    const fees = { maxFeePerGas: 10n * GWEI, maxPriorityFeePerGas: 1n * GWEI };
    const receiverAccount = privateKeyToAccount(anvil.accounts[1].privateKey);
    const rNonce = await deployer.publicClient.getTransactionCount({ address: receiver, blockTag: 'pending' });
    await sendAll(await Promise.all(devices.map((d, i) => receiverAccount.signTransaction({
      chainId: anvil.chainId, type: 'eip1559', nonce: rNonce + i, gas: 100_000n, ...fees, to: dep.address,
      data: encodeFunctionData({ abi: keyExchangeAbi, functionName: 'enroll', args: [receiver, d.address] }),
    }))));
    await rcv.sync(); // the enrolments, before the clock starts
    const [encKey, version] = await deployer.publicClient.readContract({ address: dep.address, abi: keyExchangeAbi, functionName: 'receiverKey', args: [receiver] });
    const offerK = new Map<string, Hex>();
    await sendAll(await Promise.all(devices.map((d) => {
      const K = bytesToHex(randomBytes(32));
      offerK.set(d.address.toLowerCase(), K);
      const wrapped = bytesToHex(eciesEncrypt(encKey.slice(2), Buffer.from(K.slice(2), 'hex')));
      const { commitment } = proofFor(K, channelId(anvil.chainId, dep.address, d.address, receiver), 1n);
      return d.signTransaction({
        chainId: anvil.chainId, type: 'eip1559', nonce: 0, gas: 300_000n, ...fees, to: dep.address,
        data: encodeFunctionData({ abi: keyExchangeAbi, functionName: 'offerKey', args: [receiver, 1n, version, wrapped, commitment] }),
      });
    })));
    const accepted = () => (rcv!.store.db.prepare("SELECT COUNT(*) AS n FROM epochs WHERE state = 'accepted' AND epoch = ? AND device != ?")
      .get(pad(1n), device.toLowerCase()) as { n: number }).n;
    const t0 = process.hrtime.bigint();
    let passes = 0;
    while (accepted() < N && passes < 100) {
      await rcv.sync();
      passes++;
    }
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    if (accepted() < N) throw new Error(`only ${accepted()} of ${N} offers accepted after ${passes} passes`);
    for (const d of devices) {
      if (storedK(rcv, d.address, 1n) !== offerK.get(d.address.toLowerCase())) throw new Error(`receiver stored another K for ${d.address}`);
    }
    figures.offersPerSec = N / secs;
    rows.push([`receiver: ${N} offers (viem + eciesjs, one per device) → all accepted`, `${(N / secs).toFixed(1)} offers/s`,
      `${secs.toFixed(2)} s wall, ${passes} sync() passes, ${((secs * 1000) / N).toFixed(1)} ms per offer`]);

    return {
      header: ['what', 'measured', 'detail'],
      rows,
      figures,
      method:
        `A fresh anvil (automine, KeyExchange with offerTtlBlocks ${TTL_BLOCKS}) and our receiver (hosts/receiver, confirmation depth 0, one sync() pass after each device step). ` +
        'The device is lib/device/engine.ts bundled for XS (bench/guests/exchange-device.ts) and driven one step() per delivery with a fake clock; its storage, clock, RNG and transport (Node fetch straight to anvil\'s RPC) are host calls. ' +
        'Compute is xsnap\'s deterministic `meterUsage.compute` per step minus a no-op delivery, summed over the steps of the exchange; the scalar-multiplication unit is one warm `sharedPoint` (noble getSharedSecret, base-point window 1) in the same engine and run. ' +
        'Heap is the growth of an XS heap snapshot (after gc) from just before the first step (engine booted and provisioned) to after each step: what the exchange retains, not the transient peak within a step, which xsnap does not report. ' +
        `Throughput: ${N} devices enrolled beforehand, each makes one offer with viem + eciesjs (xchacha20) which is mined before the clock starts; timed from the first receiver sync() until every offer is accepted on chain (each accept is an EIP-712 signature and a transaction, sent one at a time over loopback JSON-RPC). Wall time on a shared machine: indicative.`,
    };
  } finally {
    await worker?.close().catch(() => undefined);
    await rcv?.stop().catch(() => undefined);
    await anvil.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = await exchangeBench();
  console.log(`${table('Key exchange end to end', r.header, r.rows)}\n${r.method}`);
}
