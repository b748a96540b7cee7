// KeyExchange against a real anvil over JSON-RPC: every success path and every revert of PROTOCOL.md §4,
// error ordering, events field by field, expiry, and EIP-712 signatures made by viem. The whole suite runs on
// anvil's latest hardfork and on the oldest it is meant to run on beside it (issue 16, docs/DECISIONS.md "EVM
// target"): Shanghai (ganache 7, chains without Cancun) and Paris (no PUSH0). Each is one anvil started
// for its block, so the cost is three start-ups, not three suites' worth of set-up.
import { randomBytes } from 'node:crypto';
import { concatHex, getAddress, keccak256, toHex, type Address, type Hex } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { evmFeatures } from '../../hosts/chain/deploy.js';
import { channelId, proofFor, signKeyAcceptance, signReceiverKey } from '../../hosts/chain/signing.js';
import { highS, setupChain, type Actor, type ChainEnv, type TxResult } from '../helpers/chain.js';

/** anvil `--hardfork` values; undefined = its latest. */
const HARDFORKS: (string | undefined)[] = [undefined, 'shanghai', 'paris'];

describe.each(HARDFORKS.map((h) => [h ?? 'latest', h] as const))('KeyExchange on anvil --hardfork %s', (forkName, hardfork) => {
  const TTL = 20;
  let env: ChainEnv;
  let R: Actor, R2: Actor, O: Actor, O2: Actor, X: Actor;
  let D: Actor, D2: Actor, D3: Actor, D4: Actor, D5: Actor, D6: Actor, D7: Actor;

  beforeAll(async () => {
    env = await setupChain(['R', 'R2', 'O', 'O2', 'X', 'D', 'D2', 'D3', 'D4', 'D5', 'D6', 'D7'], TTL, 31337, { hardfork });
    ({ R, R2, O, O2, X, D, D2, D3, D4, D5, D6, D7 } = env.actors);
  });
  afterAll(async () => {
    await env?.stop();
  });

  const encKey = (): Hex => privateKeyToAccount(generatePrivateKey()).publicKey;
  const rnd = (n: number): Hex => toHex(randomBytes(n));

  function ok(r: TxResult): TxResult {
    expect(r.error).toBeUndefined();
    expect(r.receipt.status).toBe('success');
    return r;
  }
  function fails(r: TxResult, name: string): void {
    expect(r.receipt.status).toBe('reverted');
    expect(r.error).toBe(name);
  }

  interface ChannelView { enrolled: boolean; epoch: bigint; state: number; keyVersion: number; commitment: Hex; offeredAt: bigint; acceptedAt: bigint }
  async function channel(device: Actor, receiver: Actor): Promise<ChannelView> {
    const [enrolled, epoch, state, keyVersion, commitment, offeredAt, acceptedAt] =
      await env.read<[boolean, bigint, number, number, Hex, bigint, bigint]>('channel', [device.address, receiver.address]);
    return { enrolled, epoch, state, keyVersion, commitment, offeredAt, acceptedAt };
  }

  async function setKey(r: Actor, version: number, key = encKey()) {
    const sig = await signReceiverKey(r.account, env.chainId, env.address, version, key);
    return { key, sig, res: ok(await env.tx(r, 'setReceiverKey', [key, sig])) };
  }

  /** Offer for `epoch` with a proof built per §5.3; returns what the receiver needs. */
  async function offer(d: Actor, r: Actor, epoch: bigint, keyVersion: number) {
    const pc = proofFor(rnd(32), channelId(env.chainId, env.address, d.address, r.address), epoch);
    const wrapped = rnd(137);
    const res = await env.tx(d, 'offerKey', [r.address, epoch, keyVersion, wrapped, pc.commitment]);
    return { ...pc, wrapped, res };
  }
  const acceptSig = (r: Actor, d: Actor, epoch: bigint, proof: Hex) =>
    signKeyAcceptance(r.account, env.chainId, env.address, d.address, epoch, proof);

  describe('deployment and empty views', () => {
    test('the node runs the hardfork asked for (PUSH0 from Shanghai, MCOPY from Cancun)', async () => {
      const expected = { latest: { push0: true, mcopy: true }, shanghai: { push0: true, mcopy: false }, paris: { push0: false, mcopy: false } };
      expect(await evmFeatures(env.pub)).toEqual(expected[forkName as keyof typeof expected]);
    });

    test('offerTtlBlocks, receiverKey, channel and isOperator start empty', async () => {
      expect(await env.read('offerTtlBlocks')).toBe(BigInt(TTL));
      expect(await env.read('receiverKey', [R.address])).toEqual(['0x', 0, '0x']);
      expect(await channel(D, R)).toEqual({ enrolled: false, epoch: 0n, state: 0, keyVersion: 0, commitment: `0x${'00'.repeat(32)}`, offeredAt: 0n, acceptedAt: 0n });
      expect(await env.read('isOperator', [R.address, O.address])).toBe(false);
    });
  });

  describe('setReceiverKey (§5.1)', () => {
    test('BadKey for a key that is not 65 bytes starting 0x04, before any signature check', async () => {
      const k = encKey();
      const good = await signReceiverKey(R.account, env.chainId, env.address, 1, k);
      for (const bad of [k.slice(0, -2) as Hex, `${k}00` as Hex, `0x02${k.slice(4)}` as Hex, '0x' as Hex]) {
        expect(await env.simulate(R, 'setReceiverKey', [bad, good])).toBe('BadKey');
        expect(await env.simulate(R, 'setReceiverKey', [bad, '0x'])).toBe('BadKey');
      }
      fails(await env.tx(R, 'setReceiverKey', [`0x03${k.slice(4)}`, good]), 'BadKey');
    });

    test('BadSignature: wrong signer, version, chain, contract, high-s, bad v, wrong length', async () => {
      const k = encKey();
      const dom = (chainId: number, c: Address, v = 1, who = R) => signReceiverKey(who.account, chainId, c, v, k);
      const good = await dom(env.chainId, env.address);
      const bad: Hex[] = [
        await dom(env.chainId, env.address, 1, X), // signed by someone else
        await dom(env.chainId, env.address, 2), // version must be current + 1 = 1
        await dom(env.chainId, env.address, 0),
        await dom(env.chainId + 1, env.address), // another chain
        await dom(env.chainId, getAddress(rnd(20))), // another contract
        highS(good),
        concatHex([good.slice(0, 130) as Hex, '0x00']), // v = 0
        concatHex([good.slice(0, 130) as Hex, '0x01']), // v = 1
        concatHex([good.slice(0, 130) as Hex, '0x1d']), // v = 29
        good.slice(0, 130) as Hex, // 64 bytes
        concatHex([good, '0x00']), // 66 bytes
        '0x',
        concatHex([good.slice(0, 66) as Hex, `0x${'00'.repeat(32)}`, good.slice(130) as Hex] as Hex[]), // s = 0
      ];
      for (const sig of bad) expect(await env.simulate(R, 'setReceiverKey', [k, sig])).toBe('BadSignature');
      fails(await env.tx(R, 'setReceiverKey', [k, highS(good)]), 'BadSignature');
      // a signature for R's key, sent by another account, does not recover to msg.sender
      expect(await env.simulate(X, 'setReceiverKey', [k, good])).toBe('BadSignature');
    });

    test('stores version 1, then rotates to 2; views and events carry encKey and sig verbatim', async () => {
      const a = await setKey(R, 1);
      expect(a.res.events).toHaveLength(1);
      expect(a.res.events[0].eventName).toBe('ReceiverKeySet');
      expect(a.res.events[0].args).toEqual({ receiver: R.address, version: 1, encKey: a.key, sig: a.sig });
      expect(await env.read('receiverKey', [R.address])).toEqual([a.key, 1, a.sig]);
      // the same signature cannot be replayed for version 2
      expect(await env.simulate(R, 'setReceiverKey', [a.key, a.sig])).toBe('BadSignature');
      const b = await setKey(R, 2);
      expect(b.res.events[0].args).toEqual({ receiver: R.address, version: 2, encKey: b.key, sig: b.sig });
      expect(await env.read('receiverKey', [R.address])).toEqual([b.key, 2, b.sig]);
      expect(await env.read('receiverKey', [R2.address])).toEqual(['0x', 0, '0x']);
    });
  });

  describe('setOperator, enroll, revoke (§5.2, §5.6)', () => {
    test('setOperator edits only msg.sender’s own set', async () => {
      const r = ok(await env.tx(R, 'setOperator', [O.address, true]));
      expect(r.events.map((e) => [e.eventName, e.args])).toEqual([['OperatorSet', { receiver: R.address, operator: O.address, allowed: true }]]);
      expect(await env.read('isOperator', [R.address, O.address])).toBe(true);
      // an operator "appointing" X only edits O's own set
      ok(await env.tx(O, 'setOperator', [X.address, true]));
      expect(await env.read('isOperator', [R.address, X.address])).toBe(false);
      expect(await env.read('isOperator', [O.address, X.address])).toBe(true);
      expect(await env.simulate(X, 'enroll', [R.address, D.address])).toBe('NotAuthorized');
      ok(await env.tx(R2, 'setOperator', [O2.address, true]));
    });

    test('enroll by anyone but the receiver or its operator: NotAuthorized', async () => {
      for (const who of [X, D, O2, R2]) expect(await env.simulate(who, 'enroll', [R.address, D.address])).toBe('NotAuthorized');
      fails(await env.tx(O2, 'enroll', [R.address, D.address]), 'NotAuthorized');
      expect((await channel(D, R)).enrolled).toBe(false);
    });

    test('enroll by the receiver and by an operator, idempotent, event names who', async () => {
      const a = ok(await env.tx(R, 'enroll', [R.address, D.address]));
      expect(a.events.map((e) => [e.eventName, e.args])).toEqual([['DeviceEnrolled', { receiver: R.address, device: D.address, by: R.address }]]);
      const b = ok(await env.tx(O, 'enroll', [R.address, D2.address]));
      expect(b.events[0].args).toEqual({ receiver: R.address, device: D2.address, by: O.address });
      ok(await env.tx(O, 'enroll', [R.address, D2.address]));
      expect((await channel(D, R)).enrolled).toBe(true);
      expect((await channel(D2, R)).enrolled).toBe(true);
      expect((await channel(D2, R2)).enrolled).toBe(false); // channels are per (device, receiver)
    });

    test('revoke: NotAuthorized before NotEnrolled; NotEnrolled for a device never enrolled', async () => {
      expect(await env.simulate(X, 'revoke', [R.address, D5.address])).toBe('NotAuthorized');
      expect(await env.simulate(O2, 'revoke', [R.address, D.address])).toBe('NotAuthorized');
      expect(await env.simulate(O, 'revoke', [R.address, D5.address])).toBe('NotEnrolled');
      expect(await env.simulate(R, 'revoke', [R.address, D5.address])).toBe('NotEnrolled');
      fails(await env.tx(R, 'revoke', [R.address, D5.address]), 'NotEnrolled');
    });

    test('revoked device: revoke again NotEnrolled, operator re-enroll NotAuthorized, receiver may re-enroll', async () => {
      ok(await env.tx(O, 'enroll', [R.address, D5.address]));
      const r = ok(await env.tx(O, 'revoke', [R.address, D5.address]));
      expect(r.events.map((e) => [e.eventName, e.args])).toEqual([['DeviceRevoked', { receiver: R.address, device: D5.address, by: O.address }]]);
      expect((await channel(D5, R)).enrolled).toBe(false);
      expect(await env.simulate(R, 'revoke', [R.address, D5.address])).toBe('NotEnrolled');
      fails(await env.tx(O, 'enroll', [R.address, D5.address]), 'NotAuthorized');
      ok(await env.tx(R, 'enroll', [R.address, D5.address]));
      expect((await channel(D5, R)).enrolled).toBe(true);
      // still "previously revoked": the operator cannot enroll it even now, nor after another revoke
      expect(await env.simulate(O, 'enroll', [R.address, D5.address])).toBe('NotAuthorized');
      ok(await env.tx(O, 'revoke', [R.address, D5.address]));
      expect(await env.simulate(O, 'enroll', [R.address, D5.address])).toBe('NotAuthorized');
    });

    test('removing an operator stops it enrolling but keeps its enrolments', async () => {
      ok(await env.tx(R, 'setOperator', [O2.address, true]));
      ok(await env.tx(O2, 'enroll', [R.address, D6.address]));
      const r = ok(await env.tx(R, 'setOperator', [O2.address, false]));
      expect(r.events[0].args).toEqual({ receiver: R.address, operator: O2.address, allowed: false });
      expect(await env.read('isOperator', [R.address, O2.address])).toBe(false);
      expect(await env.simulate(O2, 'enroll', [R.address, D7.address])).toBe('NotAuthorized');
      expect(await env.simulate(O2, 'revoke', [R.address, D6.address])).toBe('NotAuthorized');
      expect((await channel(D6, R)).enrolled).toBe(true);
    });
  });

  describe('offerKey (§5.3)', () => {
    test('error order: NotEnrolled, BadKey, UnknownKeyVersion, BadEpoch', async () => {
      const c = rnd(32), w = rnd(137);
      // D3 not enrolled to R2 (which has no key), wrong version and epoch: NotEnrolled first
      expect(await env.simulate(D3, 'offerKey', [R2.address, 5n, 9, w, c])).toBe('NotEnrolled');
      fails(await env.tx(D3, 'offerKey', [R2.address, 5n, 9, w, c]), 'NotEnrolled');
      ok(await env.tx(R2, 'enroll', [R2.address, D3.address]));
      // enrolled, R2 has no key record: BadKey (even with version 0 and a bad epoch)
      expect(await env.simulate(D3, 'offerKey', [R2.address, 5n, 0, w, c])).toBe('BadKey');
      fails(await env.tx(D3, 'offerKey', [R2.address, 1n, 1, w, c]), 'BadKey');
      await setKey(R2, 1);
      expect(await env.simulate(D3, 'offerKey', [R2.address, 5n, 2, w, c])).toBe('UnknownKeyVersion');
      expect(await env.simulate(D3, 'offerKey', [R2.address, 1n, 0, w, c])).toBe('UnknownKeyVersion');
      fails(await env.tx(D3, 'offerKey', [R2.address, 1n, 2, w, c]), 'UnknownKeyVersion');
      for (const e of [0n, 2n, 2n ** 64n - 1n]) expect(await env.simulate(D3, 'offerKey', [R2.address, e, 1, w, c])).toBe('BadEpoch');
      fails(await env.tx(D3, 'offerKey', [R2.address, 0n, 1, w, c]), 'BadEpoch');
    });

    test('offer stores the channel and emits KeyOffered field by field; a new offer supersedes', async () => {
      const o1 = await offer(D, R, 1n, 2);
      ok(o1.res);
      expect(o1.res.events.map((e) => e.eventName)).toEqual(['KeyOffered']);
      expect(o1.res.events[0].args).toEqual({ device: D.address, receiver: R.address, epoch: 1n, keyVersion: 2, wrappedKey: o1.wrapped, commitment: o1.commitment });
      expect(await channel(D, R)).toEqual({ enrolled: true, epoch: 1n, state: 1, keyVersion: 2, commitment: o1.commitment, offeredAt: o1.res.receipt.blockNumber, acceptedAt: 0n });
      // the previous key version is no longer current
      expect(await env.simulate(D, 'offerKey', [R.address, 2n, 1, o1.wrapped, o1.commitment])).toBe('UnknownKeyVersion');
      // epoch 1 again is BadEpoch; epoch 2 supersedes the pending epoch-1 offer
      expect(await env.simulate(D, 'offerKey', [R.address, 1n, 2, o1.wrapped, o1.commitment])).toBe('BadEpoch');
      const o2 = await offer(D, R, 2n, 2);
      ok(o2.res);
      expect(await channel(D, R)).toEqual({ enrolled: true, epoch: 2n, state: 1, keyVersion: 2, commitment: o2.commitment, offeredAt: o2.res.receipt.blockNumber, acceptedAt: 0n });
      // the superseded epoch can be neither accepted nor rejected
      expect(await env.simulate(R, 'acceptKey', [D.address, 1n, o1.proof, await acceptSig(R, D, 1n, o1.proof)])).toBe('BadEpoch');
      expect(await env.simulate(R, 'rejectKey', [D.address, 1n, 1])).toBe('BadEpoch');
    });
  });

  describe('acceptKey (§5.4)', () => {
    let o: Awaited<ReturnType<typeof offer>>;
    beforeAll(async () => {
      o = await offer(D2, R, 1n, 2);
      ok(o.res);
    });

    test('error order: NotEnrolled, NotOffered, BadEpoch, OfferExpired, BadProof, BadSignature', async () => {
      const bad = rnd(32);
      const sig = await acceptSig(R, D2, 1n, o.proof);
      // another receiver acts on channel(D2, R2): not enrolled there
      expect(await env.simulate(R2, 'acceptKey', [D2.address, 1n, o.proof, await acceptSig(R2, D2, 1n, o.proof)])).toBe('NotEnrolled');
      fails(await env.tx(X, 'acceptKey', [D2.address, 9n, bad, '0x']), 'NotEnrolled');
      // enrolled but nothing offered (D6), with every later check failing too
      expect(await env.simulate(R, 'acceptKey', [D6.address, 9n, bad, '0x'])).toBe('NotOffered');
      expect(await env.simulate(R, 'acceptKey', [D2.address, 2n, bad, '0x'])).toBe('BadEpoch');
      expect(await env.simulate(R, 'acceptKey', [D2.address, 0n, o.proof, sig])).toBe('BadEpoch');
      expect(await env.simulate(R, 'acceptKey', [D2.address, 1n, bad, '0x'])).toBe('BadProof');
      fails(await env.tx(R, 'acceptKey', [D2.address, 1n, bad, sig]), 'BadProof');
      expect(await env.simulate(R, 'acceptKey', [D2.address, 1n, o.proof, '0x'])).toBe('BadSignature');
    });

    test('BadSignature for every malformed or misdirected acceptance signature', async () => {
      const good = await acceptSig(R, D2, 1n, o.proof);
      const other = (chainId: number, contract: Address, signer = R, device = D2, epoch = 1n, proof = o.proof) =>
        signKeyAcceptance(signer.account, chainId, contract, device.address, epoch, proof);
      const bad: Hex[] = [
        await other(env.chainId + 1, env.address),
        await other(env.chainId, getAddress(rnd(20))),
        await other(env.chainId, env.address, X),
        await other(env.chainId, env.address, R, D3),
        await other(env.chainId, env.address, R, D2, 2n),
        await other(env.chainId, env.address, R, D2, 1n, rnd(32)),
        highS(good),
        concatHex([good.slice(0, 130) as Hex, '0x1b' === good.slice(130) ? '0x00' : '0x01']),
        good.slice(0, 130) as Hex,
        concatHex([good, '0x1b']),
      ];
      for (const s of bad) expect(await env.simulate(R, 'acceptKey', [D2.address, 1n, o.proof, s])).toBe('BadSignature');
      fails(await env.tx(R, 'acceptKey', [D2.address, 1n, o.proof, highS(good)]), 'BadSignature');
    });

    test('accept succeeds once, emits KeyAccepted, and the channel is then not offered', async () => {
      const sig = await acceptSig(R, D2, 1n, o.proof);
      const r = ok(await env.tx(R, 'acceptKey', [D2.address, 1n, o.proof, sig]));
      expect(r.events.map((e) => [e.eventName, e.args])).toEqual([['KeyAccepted', { device: D2.address, receiver: R.address, epoch: 1n, proof: o.proof, sig }]]);
      expect(keccak256(o.proof)).toBe(o.commitment);
      const c = await channel(D2, R);
      expect(c).toEqual({ enrolled: true, epoch: 1n, state: 2, keyVersion: 2, commitment: o.commitment, offeredAt: o.res.receipt.blockNumber, acceptedAt: r.receipt.blockNumber });
      fails(await env.tx(R, 'acceptKey', [D2.address, 1n, o.proof, sig]), 'NotOffered');
      expect(await env.simulate(R, 'rejectKey', [D2.address, 1n, 1])).toBe('NotOffered');
      // next epoch continues from the accepted one; acceptedAt still names the last acceptance
      const o2 = await offer(D2, R, 2n, 2);
      ok(o2.res);
      expect(await channel(D2, R)).toMatchObject({ epoch: 2n, state: 1, acceptedAt: r.receipt.blockNumber });
    });

    test('expiry: acceptable in block offeredAt + TTL, OfferExpired one block later (checked before proof and signature)', async () => {
      ok(await env.tx(R, 'enroll', [R.address, D4.address]));
      const a = await offer(D4, R, 1n, 2);
      ok(a.res);
      const at = a.res.receipt.blockNumber;
      expect(await env.blockNumber()).toBe(at); // automine: one block a transaction
      await env.mine(TTL); // latest = offeredAt + TTL, so the next transaction lands in offeredAt + TTL + 1
      // block now + 1 = offeredAt + TTL + 1: expired. Every later check fails too; OfferExpired wins.
      fails(await env.tx(R, 'acceptKey', [D4.address, 1n, rnd(32), '0x']), 'OfferExpired');
      // an expired offer may still be rejected, and the device may offer the next epoch
      const rj = ok(await env.tx(R, 'rejectKey', [D4.address, 1n, 3]));
      expect(rj.events.map((e) => [e.eventName, e.args])).toEqual([['KeyRejected', { device: D4.address, receiver: R.address, epoch: 1n, reason: 3 }]]);
      expect((await channel(D4, R)).state).toBe(3);
      const c = await offer(D4, R, 2n, 2);
      ok(c.res);
      await env.mine(TTL - 1); // accept lands in block offeredAt + TTL: still acceptable
      const r = ok(await env.tx(R, 'acceptKey', [D4.address, 2n, c.proof, await acceptSig(R, D4, 2n, c.proof)]));
      expect(r.receipt.blockNumber).toBe(c.res.receipt.blockNumber + BigInt(TTL));
    });

    test('a revoked device: offer and accept NotEnrolled, its pending offer may still be rejected', async () => {
      const p = await offer(D6, R, 1n, 2);
      ok(p.res);
      ok(await env.tx(R, 'revoke', [R.address, D6.address]));
      expect(await env.simulate(D6, 'offerKey', [R.address, 2n, 2, p.wrapped, p.commitment])).toBe('NotEnrolled');
      fails(await env.tx(R, 'acceptKey', [D6.address, 1n, p.proof, await acceptSig(R, D6, 1n, p.proof)]), 'NotEnrolled');
      ok(await env.tx(R, 'rejectKey', [D6.address, 1n, 1]));
      // re-enrolment by the receiver continues at stored epoch + 1; no epoch is reused
      ok(await env.tx(R, 'enroll', [R.address, D6.address]));
      expect(await channel(D6, R)).toMatchObject({ enrolled: true, epoch: 1n, state: 3 });
      expect(await env.simulate(D6, 'offerKey', [R.address, 1n, 2, p.wrapped, p.commitment])).toBe('BadEpoch');
      ok((await offer(D6, R, 2n, 2)).res);
    });
  });

  describe('rejectKey (§5.4)', () => {
    test('error order: BadReason, NotOffered, BadEpoch; success emits KeyRejected', async () => {
      // D7 has nothing at all: a bad reason still names BadReason first
      for (const reason of [0, 4, 255]) expect(await env.simulate(R, 'rejectKey', [D7.address, 9n, reason])).toBe('BadReason');
      fails(await env.tx(X, 'rejectKey', [D7.address, 9n, 0]), 'BadReason');
      expect(await env.simulate(R, 'rejectKey', [D7.address, 9n, 1])).toBe('NotOffered');
      // D (epoch 2 pending with R): another receiver gets NotOffered, a wrong epoch BadEpoch
      expect(await env.simulate(R2, 'rejectKey', [D.address, 2n, 1])).toBe('NotOffered');
      fails(await env.tx(X, 'rejectKey', [D.address, 2n, 2]), 'NotOffered');
      expect(await env.simulate(R, 'rejectKey', [D.address, 3n, 1])).toBe('BadEpoch');
      fails(await env.tx(R, 'rejectKey', [D.address, 1n, 2]), 'BadEpoch');
      for (const reason of [1, 2, 3]) expect(await env.simulate(R, 'rejectKey', [D.address, 2n, reason])).toBeUndefined();
      const r = ok(await env.tx(R, 'rejectKey', [D.address, 2n, 2]));
      expect(r.events.map((e) => [e.eventName, e.args])).toEqual([['KeyRejected', { device: D.address, receiver: R.address, epoch: 2n, reason: 2 }]]);
      expect(await channel(D, R)).toMatchObject({ enrolled: true, epoch: 2n, state: 3 });
      fails(await env.tx(R, 'rejectKey', [D.address, 2n, 2]), 'NotOffered');
      expect(await env.simulate(R, 'acceptKey', [D.address, 2n, rnd(32), '0x'])).toBe('NotOffered');
      ok((await offer(D, R, 3n, 2)).res);
    });
  });
});
