import '../helpers/node-random.js';
import { toHex } from '../../lib/bytes.js';
import { decodeChannel } from '../../lib/device/records.js';
import { GWEI, PowerCut } from './fake-chain.js';
import { assertNoLeakedSealKey, assertNoNonceReuse, assertOneKeyPerEpoch, assertWithinCaps, rig, sealedKeys, type Rig } from './harness.js';

const CAPS = { maxFeePerGas: 50n * GWEI, maxPriorityFeePerGas: 2n * GWEI, offerGas: 300_000n };

function invariants(r: Rig): void {
  assertNoNonceReuse(r.chain);
  assertOneKeyPerEpoch(r.chain);
  assertWithinCaps(r.chain, CAPS);
}

function expectActiveWithReceiversK(r: Rig, epoch: bigint): void {
  const k = r.dev.activeKey()!;
  expect(k.epoch).toBe(epoch);
  expect(toHex(k.K)).toBe(r.chain.receiver.accepted.get(epoch));
}

test('a reboot after every step: the exchange completes with one offer', async () => {
  const r = await rig();
  for (let i = 0; i < 50 && r.dev.state !== 'active'; i++) {
    const s = await r.dev.step();
    r.sleep(s.waitMs);
    r.reboot();
  }
  expectActiveWithReceiversK(r, 1n);
  expect(r.chain.sent).toHaveLength(1);
  invariants(r);
});

test('a power cut at each write of an exchange (before it lands): completes, one K per epoch, no nonce reuse', async () => {
  // Epoch 2 takes 3 writes of `chan`: new epoch (K), signed (raw tx), activated.
  for (let cut = 0; cut < 3; cut++) {
    const r = await rig({ rotation: { maxReadings: 2, maxAgeSec: 0 } });
    await r.dev.run('active', { sleep: r.sleep });
    r.dev.reserveSeq(); r.dev.reserveSeq(); // rotation due: exercise the cut during epoch 2
    r.storage.cutAt = cut;
    let cutHappened = false;
    for (let i = 0; i < 30 && !cutHappened; i++) {
      const s = await r.dev.step();
      cutHappened = r.storage.cutAt === -1;
      r.sleep(s.waitMs);
    }
    expect(cutHappened).toBe(true);
    r.storage.cutAt = undefined;
    r.reboot();
    await r.dev.run((e) => e.activeKey()?.epoch === 2n, { sleep: r.sleep });
    expectActiveWithReceiversK(r, 2n);
    expect(r.chain.offers().map((o) => o.epoch)).toEqual([1n, 2n]);
    invariants(r);
  }
});

test('reboot after broadcast, before the offer lands: the same raw transaction is broadcast again', async () => {
  const r = await rig();
  r.chain.autoMine = false;
  await r.dev.run(() => r.chain.broadcasts.length === 1, { sleep: r.sleep });
  const raw = r.chain.broadcasts[0];
  const persisted = decodeChannel(r.storage.get('chan')!).pending!;
  expect(toHex(persisted.raw)).toBe(raw);
  r.reboot();
  await r.dev.run(() => r.chain.broadcasts.length === 2, { sleep: r.sleep });
  expect(r.chain.broadcasts[1]).toBe(raw);
  await r.chain.mine();
  await r.dev.run('active', { sleep: r.sleep });
  expectActiveWithReceiversK(r, 1n);
  expect(r.chain.sent).toHaveLength(1);
  invariants(r);
});

test('power cut between signing and persisting the signature: nothing was broadcast, the re-signed offer keeps K', async () => {
  const r = await rig();
  await r.dev.run(() => r.dev.status().pendingEpoch === '1', { sleep: r.sleep });
  const K = decodeChannel(r.storage.get('chan')!).pending!.K;
  r.storage.cutAt = 0; // the write that stores the signed raw tx
  await r.dev.step();
  expect(r.storage.cutAt).toBe(-1);
  expect(r.chain.broadcasts).toHaveLength(0);
  r.storage.cutAt = undefined;
  r.reboot();
  await r.dev.run('active', { sleep: r.sleep });
  expect(r.dev.activeKey()!.K).toEqual(K);
  expect(r.chain.sent).toHaveLength(1);
  invariants(r);
});

test('a relay that inflates the transaction count cannot make the device jump or reuse a nonce', async () => {
  const r = await rig();
  r.chain.autoMine = false;
  r.chain.tamper = (m) => (m === 'eth_getTransactionCount' ? '0x64' : undefined);
  await r.dev.run(() => r.chain.sent.length === 2, { sleep: r.sleep, maxSteps: 200 });
  // The second transaction re-offers epoch 1 with the device's own next nonce, never 100.
  expect(r.chain.sent.map((s) => s.nonce)).toEqual([0n, 1n]);
  expect(r.chain.offers().map((o) => o.epoch)).toEqual([1n, 1n]);
  r.chain.tamper = undefined;
  await r.chain.mine(); // nonce 0 lands epoch 1; nonce 1 reverts (BadEpoch)
  await r.dev.run('active', { sleep: r.sleep });
  expectActiveWithReceiversK(r, 1n);
  expect(r.dev.status().nextNonce).toBe('2');
  invariants(r);
});

test('a stuck offer gets fee bumps on the same nonce and calldata, never above the caps', async () => {
  const r = await rig({ maxFeePerGas: String(5n * GWEI) });
  r.chain.autoMine = false;
  await r.dev.run(() => r.chain.sent.length >= 4, { sleep: r.sleep, maxSteps: 500 }).catch(() => undefined);
  const fees = r.chain.sent.map((s) => s.maxFeePerGas);
  expect(new Set(r.chain.sent.map((s) => s.nonce))).toEqual(new Set([0n]));
  expect(fees[0]).toBe(3n * GWEI);
  for (let i = 1; i < fees.length; i++) expect(fees[i] * 10n).toBeGreaterThanOrEqual(fees[i - 1] * 11n);
  expect(fees[fees.length - 1]).toBeLessThanOrEqual(5n * GWEI);
  await r.chain.mine();
  await r.dev.run('active', { sleep: r.sleep });
  expectActiveWithReceiversK(r, 1n);
  invariants(r);
});

test('an offer that reverts (receiver rotated its key meanwhile) is re-signed for the same epoch with a fresh K at the next nonce', async () => {
  // §5.3 (amended): a K is wrapped exactly once, to one receiver key. The first offer's wrap to
  // version 1 is public, so whoever holds version 1's e would read the epoch if the same K were
  // wrapped again to version 2 and accepted.
  const r = await rig();
  const t = sealedKeys(r);
  r.chain.autoMine = false;
  await r.dev.run(() => r.chain.sent.length === 1, { sleep: r.sleep });
  const K1 = toHex(decodeChannel(r.storage.get('chan')!).pending!.K);
  r.chain.receiver.rotateEncKey();
  await r.chain.publishReceiverKey(); // version 2: the pending offer (version 1) reverts UnknownKeyVersion
  await r.chain.mine();
  expect(r.chain.receipts.get(r.chain.sent[0].hash).status).toBe('0x0');
  r.chain.autoMine = true;
  await r.dev.run('active', { sleep: (ms) => { t.note(); r.sleep(ms); } });
  t.note();
  expect(r.chain.sent.map((s) => s.nonce)).toEqual([0n, 1n]);
  expect(r.chain.offers().map((o) => o.epoch)).toEqual([1n, 1n]);
  expect(r.chain.wraps().map((w) => w.keyVersion)).toEqual([1, 2]);
  expect(r.dev.status().keyVersion).toBe(2);
  expectActiveWithReceiversK(r, 1n);
  expect(toHex(r.dev.activeKey()!.K)).not.toBe(K1);
  assertNoLeakedSealKey(r.chain, r.device, t.sealed);
  invariants(r);
});

test('seq high-water mark: reserved ahead, never reused across reboots, restarts at 1 per epoch', async () => {
  const r = await rig({ rotation: { maxReadings: 40, maxAgeSec: 0 } });
  await r.dev.run('active', { sleep: r.sleep });
  const seen: bigint[] = [];
  for (let i = 0; i < 5; i++) seen.push(r.dev.reserveSeq().seq);
  expect(seen).toEqual([1n, 2n, 3n, 4n, 5n]);
  const writes = r.storage.writes.filter((k) => k === 'seq').length;
  expect(writes).toBe(1);
  r.reboot();
  const after = r.dev.reserveSeq().seq;
  expect(after).toBe(17n); // 1..16 were reserved by the first write
  for (let i = 0; i < 40; i++) r.dev.reserveSeq();
  await r.dev.run((e) => e.activeKey()?.epoch === 2n, { sleep: r.sleep });
  expect(r.dev.reserveSeq()).toEqual({ epoch: 2n, seq: 1n });
  expect(() => {
    r.storage.cutAt = 0;
    for (let i = 0; i < 20; i++) r.dev.reserveSeq();
  }).toThrow(PowerCut);
  r.storage.cutAt = undefined;
  r.reboot();
  expect(r.dev.reserveSeq().seq).toBe(17n);
});
