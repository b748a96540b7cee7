// PROTOCOL.md §5.3: "a lie about nonces, receipts, rejection or expiry costs a delay and at most the
// fees of what the device signed: once the relay answers honestly, the exchange completes without a
// factory reset." These tests make the relay lie about rejection and then answer honestly.
import '../helpers/node-random.js';
import { keccak256, type Hex } from 'viem';
import { toHex } from '../../lib/bytes.js';
import { assertNoLeakedSealKey, assertNoNonceGap, rig, sealedKeys, type Rig } from './harness.js';

const CHANNEL_SELECTOR = '0x2b10eefa';

/** channel() as the relay shows it: `epoch` in state `state`, whatever the chain holds. */
function forgeChannel(r: Rig, when: () => boolean, epoch: bigint, state: number): void {
  r.chain.tamper = (m, p, res) => {
    if (m !== 'eth_call' || !String(p[0].data).startsWith(CHANNEL_SELECTOR) || !when()) return undefined;
    const b = Buffer.from(res.slice(2), 'hex');
    b.writeBigUInt64BE(epoch, 56); // epoch word (bytes 32..63)
    b[95] = state;
    return `0x${b.toString('hex')}`;
  };
}

/** Per epoch and receiver key version, every offer the device ever broadcast carries one wrap (one K). */
function assertOneWrapPerEpochAndVersion(r: Rig): void {
  const seen = new Map<string, Set<string>>();
  for (const w of r.chain.wraps()) {
    const k = `${w.epoch}:${w.keyVersion}`;
    seen.set(k, (seen.get(k) ?? new Set()).add(w.wrappedKey));
  }
  for (const [k, wraps] of seen) expect({ k, wraps: wraps.size }).toEqual({ k, wraps: 1 });
}

for (const why of [{ name: 'rejected', state: 3 }, { name: 'expired', state: 1 }]) {
  test(`a forged "${why.name}" for a withheld offer costs a delay only: once honest, the epoch the chain expects is offered again (same calldata) and accepted`, async () => {
    const r = await rig({ rotation: { maxReadings: 1, maxAgeSec: 0 } });
    const t = sealedKeys(r);
    const sleep = (ms: number) => { t.note(); r.sleep(ms); };
    await r.dev.run('active', { sleep });
    r.dev.reserveSeq(); // rotation due: epoch 2
    const held: Hex[] = [];
    r.chain.intercept = (m, p) => {
      if (m !== 'eth_sendRawTransaction') return undefined;
      held.push(p[0]);
      return keccak256(p[0]);
    };
    // Once the device signed epoch 2, the relay shows it on chain, rejected (or offered long ago: expired).
    forgeChannel(r, () => held.length > 0, 2n, why.state);
    if (why.state === 1) {
      const inner = r.chain.tamper!;
      r.chain.tamper = (m, p, res) => {
        const out = inner(m, p, res);
        if (out !== undefined) { const b = Buffer.from(out.slice(2), 'hex'); b.writeBigUInt64BE(1n, 216); return `0x${b.toString('hex')}`; } // offeredAt 1
        return undefined;
      };
    }
    await r.dev.run((e) => e.status().lastOffered === '3', { sleep, maxSteps: 200 });
    expect(r.chain.channel(r.device).epoch).toBe(1n); // the chain never saw epoch 2
    // Honest from now on; the withheld epoch-2 offer is lost.
    r.chain.intercept = undefined;
    r.chain.tamper = undefined;
    const before = r.chain.receipts.size;
    const start = r.clock.now();
    await r.dev.run((e) => (e.activeKey()?.epoch ?? 0n) >= 2n, { sleep, maxSteps: 400 });
    t.note();
    expect(r.clock.now() - start).toBeLessThan(6 * 3_600_000);
    expect(r.dev.activeKey()!.epoch).toBe(2n);
    expect(toHex(r.dev.activeKey()!.K)).toBe(r.chain.receiver.accepted.get(2n));
    // Epoch 2 went out again with the calldata of its first offer (K wrapped once).
    const epoch2 = r.chain.wraps().filter((w) => w.epoch === 2n);
    expect(new Set(epoch2.map((w) => w.wrappedKey)).size).toBe(1);
    const reverted = [...r.chain.receipts.values()].slice(before).filter((x) => x.status === '0x0').length;
    expect(reverted).toBeLessThanOrEqual(2); // bounded fees: not one failing transaction per poll forever
    // And the next rotation lands on top (epoch 3, the K it was first wrapped with).
    r.dev.reserveSeq();
    await r.dev.run((e) => e.activeKey()?.epoch === 3n, { sleep, maxSteps: 400 });
    t.note();
    expect(toHex(r.dev.activeKey()!.K)).toBe(r.chain.receiver.accepted.get(3n));
    assertOneWrapPerEpochAndVersion(r);
    assertNoLeakedSealKey(r.chain, r.device, t.sealed);
    assertNoNonceGap(r);
  });
}

test('a relay that shows the chain below the verified active epoch cannot make the device re-offer it', async () => {
  const r = await rig({ rotation: { maxReadings: 1, maxAgeSec: 0 } });
  await r.dev.run('active', { sleep: r.sleep });
  r.dev.reserveSeq();
  r.chain.receiver.policy = 'ignore';
  await r.dev.run(() => r.chain.offers().some((o) => o.epoch === 2n), { sleep: r.sleep, maxSteps: 200 });
  const epoch1 = r.chain.wraps().filter((w) => w.epoch === 1n).length;
  forgeChannel(r, () => true, 0n, 0); // "nothing on chain", count honest (nonce spent)
  for (let i = 0; i < 100; i++) { const s = await r.dev.step(); r.sleep(s.waitMs); }
  expect(r.chain.wraps().filter((w) => w.epoch === 1n).length).toBe(epoch1); // epoch 1 is accepted: never offered again
  expect(r.dev.activeKey()?.epoch).toBe(1n);
  r.chain.tamper = undefined;
  r.chain.receiver.policy = 'accept';
  await r.dev.run((e) => (e.activeKey()?.epoch ?? 0n) >= 2n, { sleep: r.sleep, maxSteps: 400 });
});

test('two forged rejections in a row (epochs 2 and 3 withheld): once honest the device goes back to epoch 2 and on from there', async () => {
  const r = await rig({ rotation: { maxReadings: 1, maxAgeSec: 0 } });
  const t = sealedKeys(r);
  const sleep = (ms: number) => { t.note(); r.sleep(ms); };
  await r.dev.run('active', { sleep });
  r.dev.reserveSeq();
  let signed = 0;
  r.chain.intercept = (m, p) => (m === 'eth_sendRawTransaction' ? (signed++, keccak256(p[0])) : undefined);
  r.chain.tamper = (m, p, res) => {
    const pe = r.dev.status().pendingEpoch;
    if (m !== 'eth_call' || !String(p[0].data).startsWith(CHANNEL_SELECTOR) || signed === 0 || pe === null) return undefined;
    const b = Buffer.from(res.slice(2), 'hex');
    b.writeBigUInt64BE(BigInt(pe), 56);
    b[95] = 3;
    return `0x${b.toString('hex')}`;
  };
  await r.dev.run((e) => e.status().lastOffered === '4', { sleep, maxSteps: 400 });
  r.chain.intercept = undefined;
  r.chain.tamper = undefined;
  await r.dev.run((e) => (e.activeKey()?.epoch ?? 0n) >= 2n, { sleep, maxSteps: 400 });
  expect(r.dev.activeKey()!.epoch).toBe(2n);
  for (const e of [3n, 4n]) {
    r.dev.reserveSeq();
    await r.dev.run((d) => d.activeKey()?.epoch === e, { sleep, maxSteps: 400 });
    t.note();
    expect(toHex(r.dev.activeKey()!.K)).toBe(r.chain.receiver.accepted.get(e));
  }
  assertNoLeakedSealKey(r.chain, r.device, t.sealed);
  assertNoNonceGap(r);
});

for (const lieSeed of [2, 7, 11]) test(`a relay that lies about channel(), counts and broadcasts at random for two days (seed ${lieSeed}) gets at most maxTxPerDay signatures a window; once honest the device converges`, async () => {
  const DAY = 86_400_000;
  const r = await rig({ rotation: { maxReadings: 1, maxAgeSec: 0 }, maxTxPerDay: 4, backoffMaxSec: 600 });
  const t = sealedKeys(r);
  const sleep = (ms: number) => { t.note(); r.sleep(ms); };
  await r.dev.run('active', { sleep });
  r.dev.reserveSeq();
  let seed = lieSeed;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  // Any epoch 0..6 in any state, a count anywhere near the truth, offers swallowed half the time.
  r.chain.tamper = (m, p, res) => {
    if (m === 'eth_getTransactionCount' && rnd() < 0.5) return `0x${Math.floor(rnd() * 6).toString(16)}`;
    if (m !== 'eth_call' || !String(p[0].data).startsWith(CHANNEL_SELECTOR) || rnd() < 0.3) return undefined;
    const b = Buffer.from(res.slice(2), 'hex');
    b.writeBigUInt64BE(BigInt(Math.floor(rnd() * 7)), 56);
    b[95] = Math.floor(rnd() * 4);
    return `0x${b.toString('hex')}`;
  };
  r.chain.intercept = (m, p) => (m === 'eth_sendRawTransaction' && rnd() < 0.5 ? keccak256(p[0]) : undefined);
  const signedAt: number[] = [];
  let seen = 0;
  const start = r.clock.mono;
  while (r.clock.mono - start < 2 * DAY) {
    const s = await r.dev.step();
    for (const n = new Set(r.chain.broadcasts).size; seen < n; seen++) signedAt.push(r.clock.mono);
    sleep(Math.max(s.waitMs, 1000));
  }
  for (const a of signedAt) expect(signedAt.filter((b) => b >= a && b < a + DAY).length).toBeLessThanOrEqual(8); // 2 windows at most
  expect(signedAt.length).toBeLessThanOrEqual(3 * 4);
  r.chain.tamper = undefined;
  r.chain.intercept = undefined;
  const target = r.chain.channel(r.device).epoch + 1n;
  r.dev.reserveSeq();
  await r.dev.run((e) => (e.activeKey()?.epoch ?? 0n) >= target, { sleep, maxSteps: 2000 });
  t.note();
  const a = r.dev.activeKey()!;
  expect(toHex(a.K)).toBe(r.chain.receiver.accepted.get(a.epoch));
  assertNoLeakedSealKey(r.chain, r.device, t.sealed);
  assertNoNonceGap(r);
}, 60_000);
