// PROTOCOL.md §5.3 (amended): a K is wrapped exactly once, to one receiver key; a receiver key
// version change draws a fresh K for the same epoch. Relay transaction counts are hints: a short
// lie about them must not strand the device. Every test opens every wrap the device ever broadcast
// with the receiver key it was wrapped for (a holder of a retired key can) and checks that none
// carries a K the device sealed under, unless that very offer is the one that landed.
import '../helpers/node-random.js';
import { keccak256, type Hex } from 'viem';
import { toHex } from '../../lib/bytes.js';
import { decodeChannel } from '../../lib/device/records.js';
import {
  assertNoLeakedSealKey, assertNoNonceGap, assertNoNonceReuse, assertOneKeyPerEpoch, rig, sealedKeys, type Rig,
} from './harness.js';

function invariants(r: Rig, sealed: Map<bigint, string>): void {
  assertNoNonceReuse(r.chain);
  assertOneKeyPerEpoch(r.chain);
  assertNoLeakedSealKey(r.chain, r.device, sealed);
}

/** The relay keeps every raw transaction it is given and tells the device it was sent. */
function withholdAll(r: Rig): Hex[] {
  const held: Hex[] = [];
  r.chain.intercept = (m, p) => {
    if (m !== 'eth_sendRawTransaction') return undefined;
    held.push(p[0]);
    return keccak256(p[0]);
  };
  return held;
}

/** The relay says the device's transaction count is `n` ("your nonce was spent"). */
function countLie(r: Rig, n: () => bigint): void {
  r.chain.tamper = (m) => (m === 'eth_getTransactionCount' ? `0x${n().toString(16)}` : undefined);
}

const pendingK = (r: Rig) => toHex(decodeChannel(r.storage.get('chan')!).pending!.K);

describe('relay-forced re-wrap: a genuine older key record, the offer withheld, the nonce reported spent', () => {
  for (const release of [true, false]) {
    test(`the epoch is accepted under a fresh K, never the one wrapped to the retired key (${release ? 'the relay later releases the withheld offer' : 'the withheld offer never reaches the chain'})`, async () => {
      const r = await rig({ rotation: { maxReadings: 1, maxAgeSec: 0 } });
      const t = sealedKeys(r);
      const v1 = r.chain.receiverKeys.get(r.chain.receiver.address)!;
      r.chain.receiver.rotateEncKey();
      await r.chain.publishReceiverKey(); // the chain is at version 2; version 1's e is retired (say it leaked)
      r.chain.servedKeyRecord = v1; // genuine, signed by R, but older
      const held = withholdAll(r);
      await r.dev.run(() => r.chain.broadcasts.length === 1, { sleep: r.sleep });
      const K1 = pendingK(r);
      expect(r.chain.wraps()[0]).toMatchObject({ keyVersion: 1, K: K1 }); // public: whoever holds e1 reads K1
      // The relay now serves the current record and says nonce 0 was spent.
      r.chain.servedKeyRecord = undefined;
      countLie(r, () => 1n);
      await r.dev.run(() => r.chain.broadcasts.length === 2, { sleep: r.sleep, maxSteps: 200 });
      const second = r.chain.wraps()[1];
      expect(second.keyVersion).toBe(2);
      expect(second.K).not.toBe(K1);
      expect(second.epoch).toBe(1n);
      r.chain.tamper = undefined;
      r.chain.intercept = undefined;
      if (release) for (const raw of held) await r.chain.submit(raw as Hex).catch(() => undefined); // v1 offer reverts (UnknownKeyVersion)
      await r.dev.run('active', { sleep: (ms) => { t.note(); r.sleep(ms); }, maxSteps: 300 });
      t.note();
      expect(r.dev.activeKey()!.epoch).toBe(1n);
      expect(toHex(r.dev.activeKey()!.K)).toBe(r.chain.receiver.accepted.get(1n));
      expect(toHex(r.dev.activeKey()!.K)).not.toBe(K1);
      invariants(r, t.sealed);
      assertNoNonceGap(r);
      // The next epoch is signed at the chain's count and lands at once (no gap strands it).
      r.dev.reserveSeq();
      await r.dev.run((e) => e.activeKey()?.epoch === 2n, { sleep: (ms) => { t.note(); r.sleep(ms); }, maxSteps: 300 });
      t.note();
      expect(new Set(r.chain.wraps().filter((w) => w.epoch === 2n).map((w) => w.raw)).size).toBe(1);
      expect(r.chain.wraps().find((w) => w.epoch === 2n)!.nonce).toBe(release ? 2n : 1n); // the chain's count then
      assertNoNonceGap(r);
      invariants(r, t.sealed);
    });
  }
});

test('a key rotation while the offer is unmined: a fresh K signed at the same nonce replaces it', async () => {
  const r = await rig();
  const t = sealedKeys(r);
  r.chain.autoMine = false;
  await r.dev.run(() => r.chain.sent.length === 1, { sleep: r.sleep });
  const K1 = pendingK(r);
  r.chain.receiver.rotateEncKey();
  await r.chain.publishReceiverKey(); // version 2; the pending offer (version 1) would revert
  await r.dev.run(() => r.chain.sent.length === 2, { sleep: r.sleep, maxSteps: 200 });
  expect(r.chain.sent.map((s) => s.nonce)).toEqual([0n, 0n]);
  expect(r.chain.wraps().map((w) => w.keyVersion)).toEqual([1, 2]);
  expect(pendingK(r)).not.toBe(K1);
  await r.chain.mine(); // the replacement is mined, the version-1 offer never is
  r.chain.autoMine = true;
  await r.dev.run('active', { sleep: (ms) => { t.note(); r.sleep(ms); } });
  t.note();
  expect(toHex(r.dev.activeKey()!.K)).toBe(r.chain.receiver.accepted.get(1n));
  expect(r.chain.receipts.get(r.chain.sent[0].hash)).toBeUndefined();
  invariants(r, t.sealed);
  assertNoNonceGap(r);
});

test('the superseded offer is the one that landed and was accepted: the device activates its K, not the fresh one', async () => {
  const r = await rig();
  const t = sealedKeys(r);
  r.chain.receiver.policy = 'ignore';
  await r.dev.run(() => r.chain.sent.length === 1, { sleep: r.sleep }); // landed (offered) on chain
  const K1 = pendingK(r);
  await r.chain.accept(r.device as Hex, 1n); // R accepts K1 under version 1
  // The relay hides it: channel() says nothing landed, the logs are empty, the nonce "spent" elsewhere.
  r.chain.tamper = (m, p, res) => {
    if (m === 'eth_getLogs') return [];
    if (m === 'eth_call' && String(p[0].data).startsWith('0x2b10eefa')) {
      const b = Buffer.from(res.slice(2), 'hex');
      b.fill(0, 32 * 1, 32 * 7); // epoch 0, state none, …
      return `0x${b.toString('hex')}`;
    }
    return undefined;
  };
  const held = withholdAll(r);
  r.chain.receiver.rotateEncKey();
  await r.chain.publishReceiverKey();
  await r.dev.run(() => held.length === 1, { sleep: r.sleep, maxSteps: 200 });
  expect(r.chain.wraps()[1]).toMatchObject({ epoch: 1n, keyVersion: 2 });
  expect(r.chain.wraps()[1].K).not.toBe(K1);
  r.chain.tamper = undefined;
  r.chain.intercept = undefined;
  await r.dev.run('active', { sleep: (ms) => { t.note(); r.sleep(ms); }, maxSteps: 200 });
  t.note();
  expect(toHex(r.dev.activeKey()!.K)).toBe(K1);
  expect(r.chain.receiver.accepted.get(1n)).toBe(K1);
  invariants(r, t.sealed);
});

test('a short nonce lie (offer at N swallowed, count reported N+1): the device reaches active, no nonce gap', async () => {
  const r = await rig({ rotation: { maxReadings: 1, maxAgeSec: 0 } });
  const t = sealedKeys(r);
  let swallowed = 0;
  r.chain.intercept = (m, p) => {
    if (m !== 'eth_sendRawTransaction' || swallowed > 0) return undefined;
    swallowed++;
    return keccak256(p[0]);
  };
  countLie(r, () => 1n);
  // The device gives nonce 0 up on the relay's word and re-signs the epoch at nonce 1.
  await r.dev.run(() => r.chain.sent.some((s) => s.nonce === 1n), { sleep: r.sleep, maxSteps: 200 });
  expect(swallowed).toBe(1);
  expect(r.chain.nonceOf(r.device)).toBe(0n); // nonce 1 cannot be mined: nonce 0 never reached the chain
  r.chain.tamper = undefined; // honest from now on
  r.chain.intercept = undefined;
  await r.dev.run('active', { sleep: (ms) => { t.note(); r.sleep(ms); }, maxSteps: 300 });
  t.note();
  expect(toHex(r.dev.activeKey()!.K)).toBe(r.chain.receiver.accepted.get(1n));
  assertNoNonceGap(r);
  // The next epoch lands too (a gap would strand it behind the missing nonce).
  r.dev.reserveSeq();
  await r.dev.run((e) => e.activeKey()?.epoch === 2n, { sleep: (ms) => { t.note(); r.sleep(ms); }, maxSteps: 300 });
  t.note();
  assertNoNonceGap(r);
  expect(r.chain.nonceOf(r.device)).toBe(BigInt(r.dev.status().nextNonce));
  invariants(r, t.sealed);
  // Not only no reuse among what the relay passed on: every transaction the device ever signed at one nonce carries one offer.
  const byNonce = new Map<bigint, Set<string>>();
  for (const w of r.chain.wraps()) byNonce.set(w.nonce, (byNonce.get(w.nonce) ?? new Set()).add(`${w.epoch}:${w.wrappedKey}`));
  for (const [n, offers] of byNonce) expect({ n, offers: offers.size }).toEqual({ n, offers: 1 });
});

test('a relay that reports a count below the pending nonce for a moment costs at most a re-sign of the same offer', async () => {
  const r = await rig({ rotation: { maxReadings: 1, maxAgeSec: 0 } });
  const t = sealedKeys(r);
  await r.dev.run('active', { sleep: (ms) => { t.note(); r.sleep(ms); } });
  r.chain.autoMine = false;
  r.dev.reserveSeq();
  await r.dev.run(() => r.chain.sent.length === 2, { sleep: r.sleep, maxSteps: 200 });
  countLie(r, () => 0n); // "nonce 0 never landed"
  await r.dev.run(() => r.chain.broadcasts.length >= 4, { sleep: r.sleep, maxSteps: 200 });
  r.chain.tamper = undefined;
  r.chain.autoMine = true;
  await r.chain.mine();
  await r.dev.run((e) => e.activeKey()?.epoch === 2n, { sleep: (ms) => { t.note(); r.sleep(ms); }, maxSteps: 300 });
  t.note();
  // Only the epoch-2 offer's own calldata was ever signed again (at nonce 0 it is simply too low).
  expect(new Set(r.chain.wraps().filter((w) => w.epoch === 2n).map((w) => w.wrappedKey)).size).toBe(1);
  assertNoNonceGap(r);
  invariants(r, t.sealed);
});

test('more receiver key rotations than superseded slots while a landed offer is hidden: once honest, the unrecognisable acceptance is left after its TTL and the next epoch lands', async () => {
  const r = await rig({ maxTxPerDay: 50 });
  const t = sealedKeys(r);
  r.chain.receiver.policy = 'ignore';
  await r.dev.run(() => r.chain.sent.length === 1, { sleep: r.sleep });
  await r.chain.accept(r.device as Hex, 1n); // K1's offer landed and is accepted under version 1
  // The relay hides it all: no logs, count 0, channel() empty; and it withholds every re-signed offer.
  r.chain.tamper = (m, p, res) => {
    if (m === 'eth_getLogs') return [];
    if (m === 'eth_getTransactionCount') return '0x0';
    if (m === 'eth_call' && String(p[0].data).startsWith('0x2b10eefa')) { const b = Buffer.from(res.slice(2), 'hex'); b.fill(0, 32, 224); return `0x${b.toString('hex')}`; }
    return undefined;
  };
  r.chain.intercept = (m, p) => (m === 'eth_sendRawTransaction' ? keccak256(p[0]) : undefined);
  for (let v = 0; v < 5; v++) {
    r.chain.receiver.rotateEncKey();
    await r.chain.publishReceiverKey();
    await r.dev.run((e) => e.status().keyVersion === v + 2, { sleep: r.sleep, maxSteps: 50 });
    await r.dev.run(() => r.dev.status().lastAction === 'rekeyed', { sleep: r.sleep, maxSteps: 50 });
  }
  expect(decodeChannel(r.storage.get('chan')!).pending!.superseded!.length).toBe(4); // K1 is no longer among them
  r.chain.tamper = undefined;
  r.chain.intercept = undefined;
  r.chain.receiver.policy = 'accept';
  await r.dev.run((e) => e.activeKey()?.epoch === 2n, { sleep: (ms) => { t.note(); r.sleep(ms); }, maxSteps: 400 });
  t.note();
  expect(toHex(r.dev.activeKey()!.K)).toBe(r.chain.receiver.accepted.get(2n));
  assertNoLeakedSealKey(r.chain, r.device, t.sealed);
  assertNoNonceGap(r);
});
