import '../helpers/node-random.js';
import { toHex } from '../../lib/bytes.js';
import { decodeChannel as decodeChannelRecord } from '../../lib/device/records.js';
import { GWEI, topic } from './fake-chain.js';
import { assertNoNonceReuse, assertOneKeyPerEpoch, assertWithinCaps, rig, type Rig } from './harness.js';
import { encodeAbiParameters, type Hex } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { signKeyAcceptance } from '../../hosts/chain/signing.js';
import { CHAIN_ID, CONTRACT } from './fake-chain.js';

const CAPS = { maxFeePerGas: 50n * GWEI, maxPriorityFeePerGas: 2n * GWEI, offerGas: 300_000n };

function invariants(r: Rig): void {
  assertNoNonceReuse(r.chain);
  assertOneKeyPerEpoch(r.chain);
  assertWithinCaps(r.chain, CAPS);
}

test('happy path: provisioned → exchanging → active with the K the receiver unwrapped', async () => {
  const r = await rig();
  expect(r.dev.state).toBe('provisioned');
  const trace = await r.dev.run('active', { sleep: r.sleep });
  expect(trace.map((s) => s.action)).toEqual(['receiver-key', 'new-epoch', 'signed', 'broadcast', 'activated']);
  const k = r.dev.activeKey()!;
  expect(k.epoch).toBe(1n);
  expect(toHex(k.K)).toBe(r.chain.receiver.accepted.get(1n));
  expect(r.chain.sent).toHaveLength(1);
  expect(r.chain.sent[0].type).toBe('eip1559');
  expect(r.chain.sent[0].chainId).toBe(CHAIN_ID);
  expect(r.chain.sent[0].gas).toBe(300_000n);
  // maxFee = 2 × base (1 gwei) + priority (1 gwei), within the caps.
  expect(r.chain.sent[0].maxFeePerGas).toBe(3n * GWEI);
  const st = r.dev.status();
  expect(st).toMatchObject({ state: 'active', epoch: '1', pendingEpoch: null, lastOffered: '1', nextNonce: '1', keyVersion: 1, txToday: 1 });
  invariants(r);
  // Survives a reboot.
  const again = r.reboot();
  expect(again.state).toBe('active');
  expect(again.activeKey()!.K).toEqual(k.K);
});

test('legacy chain (no base fee): EIP-155 transaction with the provisioned chain id, price clamped', async () => {
  const r = await rig();
  r.chain.baseFee = 0n;
  r.chain.gasPrice = 999n * GWEI; // absurd
  r.chain.tamper = (m, _p, res) => (m === 'eth_chainId' ? '0x1' : res); // never asked, and would be ignored
  await r.dev.run('active', { sleep: r.sleep });
  expect(r.chain.sent[0].type).toBe('legacy');
  expect(r.chain.sent[0].gasPrice).toBe(CAPS.maxFeePerGas);
  expect(r.chain.sent[0].chainId).toBe(CHAIN_ID);
  expect(r.chain.calls).not.toContain('eth_chainId');
  invariants(r);
});

test('absurd EIP-1559 quotes are cut to the caps', async () => {
  const r = await rig();
  r.chain.baseFee = 10n ** 30n;
  r.chain.priorityFee = 10n ** 25n;
  await r.dev.run('active', { sleep: r.sleep });
  expect(r.chain.sent[0].maxFeePerGas).toBe(CAPS.maxFeePerGas);
  expect(r.chain.sent[0].maxPriorityFeePerGas).toBe(CAPS.maxPriorityFeePerGas);
  invariants(r);
});

test('an inflated channel() epoch is ignored: the device offers epoch 1, then 2 on rotation', async () => {
  const r = await rig({ rotation: { maxReadings: 3, maxAgeSec: 0 } });
  r.chain.tamper = (m, p, res) => {
    if (m !== 'eth_call' || !String(p[0].data).startsWith('0x2b10eefa')) return undefined;
    // channel(): enrolled, epoch + 41
    const b = Buffer.from(res.slice(2), 'hex');
    const epoch = b.readBigUInt64BE(56) + 41n;
    b.writeBigUInt64BE(epoch, 56);
    return `0x${b.toString('hex')}`;
  };
  await r.dev.run('active', { sleep: r.sleep });
  for (let i = 0; i < 3; i++) r.dev.reserveSeq();
  await r.dev.run((e) => e.activeKey()?.epoch === 2n, { sleep: r.sleep });
  expect(r.chain.offers().map((o) => o.epoch)).toEqual([1n, 2n]);
  expect(r.dev.status().lastOffered).toBe('2');
  invariants(r);
});

test('fake acceptances never activate: wrong signer, wrong proof, replayed old log', async () => {
  const r = await rig({ rotation: { maxReadings: 1, maxAgeSec: 0 } });
  await r.dev.run('active', { sleep: r.sleep });
  const genuine1 = r.chain.logs.find((l) => l.topics[0] === topic('KeyAccepted'))!;
  // Epoch 2: the receiver stays silent; the relay forges.
  r.chain.receiver.policy = 'ignore';
  r.dev.reserveSeq();
  await r.dev.run((e) => e.status().pendingEpoch === '2' && r.chain.sent.length === 2, { sleep: r.sleep });
  const K2 = decodeChannelRecord(r.storage.get('chan')!).pending!.K;
  const { proofFor, channelId } = await import('../../hosts/chain/signing.js');
  const proof = proofFor(toHex(K2), channelId(CHAIN_ID, CONTRACT, r.device as Hex, r.chain.receiver.account.address), 2n).proof;
  const impostor = privateKeyToAccount(generatePrivateKey());
  const wrongSigner = await signKeyAcceptance(impostor, CHAIN_ID, CONTRACT, r.device as Hex, 2n, proof);
  const wrongProof = await signKeyAcceptance(r.chain.receiver.account, CHAIN_ID, CONTRACT, r.device as Hex, 2n, `0x${'ab'.repeat(32)}`);
  const t2 = [topic('KeyAccepted'), genuine1.topics[1], genuine1.topics[2], `0x${(2).toString(16).padStart(64, '0')}`];
  const fake = (data: Hex) => ({ ...genuine1, topics: t2, data });
  const enc = (p: Hex, s: Hex) => encodeAbiParameters([{ type: 'bytes32' }, { type: 'bytes' }], [p, s]);
  const forged = [fake(enc(proof, wrongSigner)), fake(enc(`0x${'ab'.repeat(32)}`, wrongProof)), fake(genuine1.data), fake(enc(proof, '0x1234'))];
  r.chain.tamper = (m, p, res) => {
    if (m === 'eth_getLogs') return forged;
    if (m === 'eth_call' && String(p[0].data).startsWith('0x2b10eefa')) {
      const b = Buffer.from(res.slice(2), 'hex');
      b[95] = 2; // state accepted (a lie)
      return `0x${b.toString('hex')}`;
    }
    return undefined;
  };
  for (let i = 0; i < 20; i++) { await r.dev.step(); r.sleep(4000); }
  expect(r.dev.activeKey()!.epoch).toBe(1n);
  expect(r.dev.status().lastError?.code).toBe('bad-acceptance');
  // The genuine receiver accepts: the device activates K2.
  r.chain.tamper = undefined;
  await r.chain.accept(r.device as Hex, 2n);
  await r.dev.run((e) => e.activeKey()?.epoch === 2n, { sleep: r.sleep });
  expect(r.dev.activeKey()!.K).toEqual(K2);
  expect(r.dev.previousKey()!.epoch).toBe(1n);
  invariants(r);
});

test('rejection: the next epoch follows after T, T doubles per unconfirmed epoch, the last accepted K is active', async () => {
  const r = await rig();
  r.chain.receiver.policy = 'reject';
  await r.dev.run((e) => r.chain.sent.length === 3, { sleep: r.sleep });
  r.chain.receiver.policy = 'accept';
  await r.dev.run('active', { sleep: r.sleep });
  expect(r.chain.offers().map((o) => o.epoch)).toEqual([1n, 2n, 3n, 4n]);
  expect(r.dev.activeKey()!.epoch).toBe(4n);
  expect(toHex(r.dev.activeKey()!.K)).toBe(r.chain.receiver.accepted.get(4n));
  // T = max(ttl 10 × 2 s, 60 s floor) = 60 s, then 120 s, 240 s.
  const gaps = r.sendTimes.slice(1).map((t, i) => t - r.sendTimes[i]);
  expect(gaps[0]).toBeGreaterThanOrEqual(60_000);
  expect(gaps[1]).toBeGreaterThanOrEqual(120_000);
  expect(gaps[2]).toBeGreaterThanOrEqual(240_000);
  expect(r.dev.status().backoffExp).toBe(0);
  invariants(r);
});

test('a relay that always claims rejection gets at most maxTxPerDay signatures a day, and consecutive epochs', async () => {
  const r = await rig({ maxTxPerDay: 3, backoffMaxSec: 60 });
  r.chain.receiver.policy = 'ignore';
  r.chain.tamper = (m, p, res) => {
    if (m === 'eth_call' && String(p[0].data).startsWith('0x2b10eefa')) {
      const b = Buffer.from(res.slice(2), 'hex');
      if (b.readBigUInt64BE(56) > 0n) b[95] = 3; // "rejected"
      return `0x${b.toString('hex')}`;
    }
    return undefined;
  };
  const start = r.clock.now();
  await r.dev.run(() => r.clock.now() - start > 3 * 86_400_000, { sleep: r.sleep, maxSteps: 5000 });
  const perDay = new Map<number, number>();
  for (const t of r.sendTimes) perDay.set(Math.floor(t / 86_400_000), (perDay.get(Math.floor(t / 86_400_000)) ?? 0) + 1);
  expect(Math.max(...perDay.values())).toBe(3);
  expect(r.chain.offers().map((o) => o.epoch)).toEqual(r.chain.offers().map((_, i) => BigInt(i + 1)));
  expect(r.dev.state).toBe('exchanging');
  invariants(r);
});

test('expiry: an unanswered offer is followed by the next epoch once the relay shows it expired', async () => {
  const r = await rig();
  r.chain.receiver.policy = 'ignore';
  await r.dev.run((e) => e.status().lastError?.code === 'offer-expired', { sleep: r.sleep });
  expect(r.chain.block).toBeGreaterThan(r.chain.channel(r.device).offeredAt + r.chain.ttlBlocks);
  r.chain.receiver.policy = 'accept';
  await r.dev.run('active', { sleep: r.sleep });
  expect(r.dev.activeKey()!.epoch).toBe(2n);
  invariants(r);
});

test('not enrolled yet: no offer until enrolment', async () => {
  const r = await rig({}, { enroll: false });
  for (let i = 0; i < 5; i++) { await r.dev.step(); r.sleep(30_000); }
  expect(r.chain.sent).toHaveLength(0);
  expect(r.dev.state).toBe('provisioned');
  expect(r.dev.status().lastError?.code).toBe('not-enrolled');
  r.chain.enroll(r.device);
  await r.dev.run('active', { sleep: r.sleep });
});

test('revocation stops offers and sealing; re-enrolment offers a new epoch', async () => {
  const r = await rig();
  await r.dev.run('active', { sleep: r.sleep });
  r.chain.revoke(r.device);
  await r.dev.step();
  expect(r.dev.state).toBe('revoked');
  expect(r.dev.activeKey()).toBeUndefined();
  expect(() => r.dev.reserveSeq()).toThrow(expect.objectContaining({ code: 'no-active-key' }));
  for (let i = 0; i < 10; i++) { await r.dev.step(); r.sleep(600_000); }
  expect(r.chain.sent).toHaveLength(1);
  expect(r.reboot().state).toBe('revoked');
  r.chain.enroll(r.device);
  await r.dev.run((e) => e.activeKey()?.epoch === 2n, { sleep: r.sleep });
  invariants(r);
});

test('rotation by age keeps the active key until the new one is accepted', async () => {
  const r = await rig({ rotation: { maxReadings: 0, maxAgeSec: 3600 } });
  await r.dev.run('active', { sleep: r.sleep });
  r.chain.receiver.policy = 'ignore';
  r.clock.advance(3600_000);
  await r.dev.run((e) => e.status().pendingEpoch === '2' && r.chain.sent.length === 2, { sleep: r.sleep });
  expect(r.dev.activeKey()!.epoch).toBe(1n);
  expect(r.dev.state).toBe('active');
  await r.chain.accept(r.device as Hex, 2n);
  await r.dev.run((e) => e.activeKey()?.epoch === 2n, { sleep: r.sleep });
  r.dev.releasePrevious(1n);
  expect(r.dev.previousKey()).toBeUndefined();
  expect(r.reboot().previousKey()).toBeUndefined();
});

test('receiver key: a record not signed by the pinned receiver, a bad point, or a lower version is refused', async () => {
  const r = await rig();
  const good = r.chain.receiverKeys.get(r.chain.receiver.address)!;
  const impostor = privateKeyToAccount(generatePrivateKey());
  const { signReceiverKey } = await import('../../hosts/chain/signing.js');
  r.chain.receiverKeys.set(r.chain.receiver.address, { ...good, sig: await signReceiverKey(impostor, CHAIN_ID, CONTRACT, 1, good.encKey) });
  for (let i = 0; i < 3; i++) { await r.dev.step(); r.sleep(10_000); }
  expect(r.dev.status().lastError?.code).toBe('bad-receiver-key');
  expect(r.chain.sent).toHaveLength(0);
  // Off-curve point signed by the receiver itself.
  const offCurve = `0x04${'11'.repeat(64)}` as Hex;
  r.chain.receiverKeys.set(r.chain.receiver.address, { encKey: offCurve, version: 1, sig: await signReceiverKey(r.chain.receiver.account, CHAIN_ID, CONTRACT, 1, offCurve) });
  await r.dev.step();
  expect(r.dev.status().lastError?.code).toBe('bad-point');
  // Version 2 verified, then the relay serves version 1 again.
  r.chain.receiver.version = 1;
  await r.chain.publishReceiverKey();
  const v2 = r.chain.receiverKeys.get(r.chain.receiver.address)!;
  await r.dev.step();
  expect(r.dev.status().keyVersion).toBe(2);
  r.chain.receiverKeys.set(r.chain.receiver.address, good);
  await r.dev.step();
  expect(r.dev.status().lastError?.code).toBe('stale-receiver-key');
  expect(r.chain.sent).toHaveLength(0);
  r.chain.receiverKeys.set(r.chain.receiver.address, v2);
  await r.dev.run('active', { sleep: r.sleep });
});

test('relay down: errors are recorded, retried with growing delay, and the exchange completes later', async () => {
  const r = await rig();
  r.chain.down = true;
  const waits: number[] = [];
  for (let i = 0; i < 4; i++) { const s = await r.dev.step(); waits.push(s.waitMs); r.sleep(s.waitMs); }
  expect(r.dev.status().lastError?.code).toBe('transport-error');
  expect(r.dev.status().relayReachable).toBe(false);
  expect(waits).toEqual([4000, 8000, 16000, 32000]);
  r.chain.down = false;
  await r.dev.run('active', { sleep: r.sleep });
});

test('a response over 8 KiB is dropped unparsed (many forged logs)', async () => {
  const r = await rig();
  r.chain.receiver.policy = 'ignore';
  await r.dev.run((e) => r.chain.sent.length === 1, { sleep: r.sleep });
  const filler = { address: CONTRACT, topics: [topic('KeyAccepted')], data: `0x${'00'.repeat(600)}`, blockNumber: '0x1', transactionHash: `0x${'22'.repeat(32)}`, logIndex: '0x0' };
  r.chain.tamper = (m) => (m === 'eth_getLogs' ? Array(10).fill(filler) : undefined);
  await r.dev.step();
  expect(r.dev.status().lastError?.code).toBe('response-too-large');
});

test('moving the device clock back and forth never frees the daily signing budget (it runs on measured time)', async () => {
  const DAY = 86_400_000;
  const r = await rig({ maxTxPerDay: 3, backoffMaxSec: 60 });
  r.chain.receiver.policy = 'ignore';
  r.chain.tamper = (m, p, res) => {
    if (m === 'eth_call' && String(p[0].data).startsWith('0x2b10eefa')) {
      const b = Buffer.from(res.slice(2), 'hex');
      if (b.readBigUInt64BE(56) > 0n) b[95] = 3; // "rejected": the device offers again as soon as it may
      return `0x${b.toString('hex')}`;
    }
    return undefined;
  };
  // True time runs on; the device clock is right for 100 s, then a day and an hour behind for 100 s, and so on
  // (about one signature per stretch: spacing T is 60 s).
  const SPELL = 100_000;
  const start = r.clock.now();
  let t = start;
  const offset = (at: number) => (Math.floor((at - start) / SPELL) % 2 === 0 ? 0 : -(DAY + 3_600_000));
  const signedAt: number[] = [];
  let seen = 0;
  while (t - start < 2 * DAY + 3_600_000) {
    const s = await r.dev.step();
    const n = new Set(r.chain.broadcasts).size;
    for (; seen < n; seen++) signedAt.push(t);
    if (signedAt.length > 9) break; // already over budget: fail without signing on for two days
    const wait = Math.max(1000, Math.min(s.waitMs, SPELL - ((t - start) % SPELL)));
    t += wait;
    r.chain.advanceBlocks(BigInt(Math.floor(wait / 2000)));
    r.clock.mono += wait; // true time passing
    r.clock.t = t + offset(t);
  }
  const perDay = new Map<number, number>();
  for (const at of signedAt) perDay.set(Math.floor(at / DAY), (perDay.get(Math.floor(at / DAY)) ?? 0) + 1);
  // At most maxTxPerDay signatures per true day, and the device still signs on every day.
  expect([...perDay.values()].every((n) => n <= 3)).toBe(true);
  expect(perDay.size).toBe(3); // 08:00 on day D to 09:00 on day D + 2: a window of 24 h of measured time opens on each
  expect(signedAt.length).toBeLessThanOrEqual(9);
  invariants(r);
});
