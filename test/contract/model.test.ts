// Model-based fuzzing of KeyExchange: a seeded random walk of enroll/offer/accept/reject/revoke/expire/
// setOperator/setReceiverKey over 3 devices and 2 receivers, each step a real transaction on anvil. After every
// step the contract's views and the revert name (or the event) must equal what a small TypeScript model of
// PROTOCOL.md §4–§5 predicts. Seed and length: IOTKX_FUZZ_SEED, IOTKX_FUZZ_STEPS.
import { randomBytes } from 'node:crypto';
import { concatHex, keccak256, toHex, type Address, type Hex } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { channelId, proofFor, signKeyAcceptance, signReceiverKey } from '../../hosts/chain/signing.js';
import { highS, setupChain, type Actor, type ChainEnv } from '../helpers/chain.js';

const SEED = Number(process.env.IOTKX_FUZZ_SEED ?? 0x1075);
const STEPS = Number(process.env.IOTKX_FUZZ_STEPS ?? 300);
const TTL = 6;
const ZERO32 = `0x${'00'.repeat(32)}` as Hex;

/** mulberry32: tiny seeded PRNG, so a failing walk can be replayed from its seed. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)],
    chance: (p: number) => next() < p,
    bytes: (n: number): Hex => toHex(Uint8Array.from({ length: n }, () => Math.floor(next() * 256))),
  };
}

// ---------------------------------------------------------------- the model (§4, §5)
interface MChannel {
  enrolled: boolean;
  revoked: boolean;
  epoch: bigint;
  state: number;
  keyVersion: number;
  commitment: Hex;
  offeredAt: bigint;
  acceptedAt: bigint;
  proof?: Hex; // the genuine proof of the stored offer (what the receiver would recompute)
}
const newChannel = (): MChannel => ({ enrolled: false, revoked: false, epoch: 0n, state: 0, keyVersion: 0, commitment: ZERO32, offeredAt: 0n, acceptedAt: 0n });

class Model {
  keys = new Map<Address, { encKey: Hex; version: number; sig: Hex }>();
  ops = new Set<string>();
  channels = new Map<string, MChannel>();
  constructor(readonly ttl: bigint) {}
  ch(d: Address, r: Address): MChannel {
    const k = `${d}|${r}`;
    if (!this.channels.has(k)) this.channels.set(k, newChannel());
    return this.channels.get(k)!;
  }
  version(r: Address) {
    return this.keys.get(r)?.version ?? 0;
  }
  isOp(r: Address, o: Address) {
    return this.ops.has(`${r}|${o}`);
  }
  setReceiverKey(from: Address, encKey: Hex, sig: Hex, sigOk: boolean): string | undefined {
    if (encKey.length !== 132 || !encKey.startsWith('0x04')) return 'BadKey';
    if (!sigOk) return 'BadSignature';
    this.keys.set(from, { encKey, version: this.version(from) + 1, sig });
  }
  setOperator(from: Address, op: Address, allowed: boolean): undefined {
    if (allowed) this.ops.add(`${from}|${op}`);
    else this.ops.delete(`${from}|${op}`);
  }
  enroll(from: Address, r: Address, d: Address): string | undefined {
    const c = this.ch(d, r);
    if (from !== r && (!this.isOp(r, from) || c.revoked)) return 'NotAuthorized';
    c.enrolled = true;
  }
  revoke(from: Address, r: Address, d: Address): string | undefined {
    if (from !== r && !this.isOp(r, from)) return 'NotAuthorized';
    const c = this.ch(d, r);
    if (!c.enrolled) return 'NotEnrolled';
    c.enrolled = false;
    c.revoked = true;
  }
  offer(d: Address, r: Address, epoch: bigint, keyVersion: number, commitment: Hex, proof: Hex, block: bigint): string | undefined {
    const c = this.ch(d, r);
    if (!c.enrolled) return 'NotEnrolled';
    const v = this.version(r);
    if (v === 0) return 'BadKey';
    if (keyVersion !== v) return 'UnknownKeyVersion';
    if (epoch !== c.epoch + 1n) return 'BadEpoch';
    Object.assign(c, { epoch, state: 1, keyVersion, commitment, offeredAt: block, proof });
  }
  accept(from: Address, d: Address, epoch: bigint, proof: Hex, sigOk: boolean, block: bigint): string | undefined {
    const c = this.ch(d, from);
    if (!c.enrolled) return 'NotEnrolled';
    if (c.state !== 1) return 'NotOffered';
    if (epoch !== c.epoch) return 'BadEpoch';
    if (block > c.offeredAt + this.ttl) return 'OfferExpired';
    if (keccak256(proof) !== c.commitment) return 'BadProof';
    if (!sigOk) return 'BadSignature';
    c.state = 2;
    c.acceptedAt = block;
  }
  reject(from: Address, d: Address, epoch: bigint, reason: number): string | undefined {
    if (reason < 1 || reason > 3) return 'BadReason';
    const c = this.ch(d, from);
    if (c.state !== 1) return 'NotOffered';
    if (epoch !== c.epoch) return 'BadEpoch';
    c.state = 3;
  }
}

// ---------------------------------------------------------------- the walk
let env: ChainEnv;
beforeAll(async () => {
  env = await setupChain(['R1', 'R2', 'O1', 'O2', 'X', 'D1', 'D2', 'D3'], TTL);
});
afterAll(async () => {
  await env?.stop();
});

test(`random walk of ${STEPS} steps (seed ${SEED}) matches the model`, async () => {
  const rnd = prng(SEED);
  const a = env.actors;
  const receivers = [a.R1, a.R2];
  const devices = [a.D1, a.D2, a.D3];
  const everyone = [a.R1, a.R2, a.O1, a.O2, a.X, a.D1];
  const model = new Model(BigInt(TTL));
  let head = await env.blockNumber();
  const seen: Record<string, number> = {};

  const compare = async (where: string) => {
    const chans = devices.flatMap((d) => receivers.map((r) => [d, r] as const));
    const opPairs = [a.R1, a.R2, a.O1].flatMap((r) => [a.O1, a.O2, a.X].map((o) => [r, o] as const));
    const [cs, ks, os] = await Promise.all([
      Promise.all(chans.map(([d, r]) => env.read<unknown[]>('channel', [d.address, r.address]))),
      Promise.all(receivers.map((r) => env.read<unknown[]>('receiverKey', [r.address]))),
      Promise.all(opPairs.map(([r, o]) => env.read<boolean>('isOperator', [r.address, o.address]))),
    ]);
    chans.forEach(([d, r], i) => {
      const m = model.ch(d.address, r.address);
      expect({ where, ch: `${d.name}/${r.name}`, v: cs[i] }).toEqual({
        where, ch: `${d.name}/${r.name}`,
        v: [m.enrolled, m.epoch, m.state, m.keyVersion, m.commitment, m.offeredAt, m.acceptedAt],
      });
    });
    receivers.forEach((r, i) => {
      const k = model.keys.get(r.address);
      expect({ where, r: r.name, v: ks[i] }).toEqual({ where, r: r.name, v: k ? [k.encKey, k.version, k.sig] : ['0x', 0, '0x'] });
    });
    opPairs.forEach(([r, o], i) => expect({ where, p: `${r.name}/${o.name}`, v: os[i] }).toEqual({ where, p: `${r.name}/${o.name}`, v: model.isOp(r.address, o.address) }));
  };

  const run = async (step: number, label: string, from: Actor, fn: string, args: readonly unknown[], expected: string | undefined, event: string) => {
    const res = await env.tx(from, fn, args);
    head += 1n;
    const where = `seed ${SEED} step ${step}: ${label}`;
    expect({ where, block: res.receipt.blockNumber }).toEqual({ where, block: head });
    expect({ where, error: res.error }).toEqual({ where, error: expected });
    expect({ where, events: res.events.map((e) => e.eventName) }).toEqual({ where, events: expected ? [] : [event] });
    seen[expected ?? `${fn}:ok`] = (seen[expected ?? `${fn}:ok`] ?? 0) + 1;
    await compare(where);
  };

  // Bias the walk towards channels where something can happen, or it mostly hits NotEnrolled.
  const pickChannel = (pred: (c: MChannel) => boolean, p: number): [Actor, Actor] => {
    const hits = devices.flatMap((d) => receivers.map((r) => [d, r] as [Actor, Actor]))
      .filter(([d, r]) => pred(model.ch(d.address, r.address)));
    return hits.length > 0 && rnd.chance(p) ? rnd.pick(hits) : [rnd.pick(devices), rnd.pick(receivers)];
  };
  const enroller = (r: Actor): Actor => {
    const ops = [a.O1, a.O2, a.X].filter((o) => model.isOp(r.address, o.address));
    const x = rnd.next();
    return x < 0.45 ? r : x < 0.75 && ops.length > 0 ? rnd.pick(ops) : rnd.pick(everyone);
  };

  const badSig = async (good: Hex, other: () => Promise<Hex>): Promise<Hex> => {
    switch (rnd.int(4)) {
      case 0: return highS(good);
      case 1: return concatHex([good.slice(0, 130) as Hex, rnd.pick(['0x00', '0x01', '0x1d'] as Hex[])]);
      case 2: return rnd.chance(0.5) ? good.slice(0, 128) as Hex : concatHex([good, '0x1b']); // 63 or 66 bytes
      default: return other();
    }
  };

  for (let step = 0; step < STEPS; step++) {
    const roll = rnd.next();
    if (roll < 0.08) {
      // setReceiverKey, sometimes with a malformed key or a signature that must not verify
      const r = rnd.chance(0.9) ? rnd.pick(receivers) : a.X;
      let encKey: Hex = privateKeyToAccount(generatePrivateKey()).publicKey;
      if (rnd.chance(0.2)) encKey = rnd.pick([`0x02${encKey.slice(4)}`, encKey.slice(0, -2), `${encKey}01`]) as Hex;
      const version = model.version(r.address) + 1;
      const good = await signReceiverKey(r.account, env.chainId, env.address, version, encKey);
      const sigOk = rnd.chance(0.75);
      const sig = sigOk ? good : await badSig(good, () => rnd.chance(0.5)
        ? signReceiverKey(r.account, env.chainId, env.address, version + 1, encKey)
        : signReceiverKey(r.account, env.chainId + 1, env.address, version, encKey));
      const expected = model.setReceiverKey(r.address, encKey, sig, sigOk);
      await run(step, `setReceiverKey ${r.name} v${version} sigOk=${sigOk}`, r, 'setReceiverKey', [encKey, sig], expected, 'ReceiverKeySet');
    } else if (roll < 0.16) {
      const from = rnd.pick([a.R1, a.R2, a.O1]);
      const op = rnd.pick([a.O1, a.O2, a.X]);
      const allowed = rnd.chance(0.65);
      const expected = model.setOperator(from.address, op.address, allowed);
      await run(step, `setOperator ${from.name} ${op.name} ${allowed}`, from, 'setOperator', [op.address, allowed], expected, 'OperatorSet');
    } else if (roll < 0.3) {
      const r = rnd.pick(receivers), d = rnd.pick(devices), from = enroller(r);
      const expected = model.enroll(from.address, r.address, d.address);
      await run(step, `enroll by ${from.name} ${r.name} ${d.name}`, from, 'enroll', [r.address, d.address], expected, 'DeviceEnrolled');
    } else if (roll < 0.35) {
      const [d, r] = pickChannel((c) => c.enrolled, 0.6);
      const from = enroller(r);
      const expected = model.revoke(from.address, r.address, d.address);
      await run(step, `revoke by ${from.name} ${r.name} ${d.name}`, from, 'revoke', [r.address, d.address], expected, 'DeviceRevoked');
    } else if (roll < 0.58) {
      const [d, r] = pickChannel((c) => c.enrolled, 0.8);
      const c = model.ch(d.address, r.address);
      const epoch = rnd.chance(0.75) ? c.epoch + 1n : rnd.pick([0n, c.epoch, c.epoch + 2n]);
      const v = model.version(r.address);
      const keyVersion = rnd.chance(0.85) ? v : rnd.pick([0, v + 1, Math.max(v - 1, 0)]);
      const pc = proofFor(toHex(randomBytes(32)), channelId(env.chainId, env.address, d.address, r.address), epoch);
      const expected = model.offer(d.address, r.address, epoch, keyVersion, pc.commitment, pc.proof, head + 1n);
      await run(step, `offer ${d.name}->${r.name} e${epoch} v${keyVersion}`, d, 'offerKey', [r.address, epoch, keyVersion, rnd.bytes(137), pc.commitment], expected, 'KeyOffered');
    } else if (roll < 0.8) {
      let [d, from] = pickChannel((c) => c.state === 1, 0.8);
      if (rnd.chance(0.08)) from = a.X;
      const c = model.ch(d.address, from.address);
      const epoch = rnd.chance(0.85) ? c.epoch : c.epoch + 1n;
      const proof = c.proof && rnd.chance(0.8) ? c.proof : rnd.bytes(32);
      const good = await signKeyAcceptance(from.account, env.chainId, env.address, d.address, epoch, proof);
      const sigOk = rnd.chance(0.8);
      const sig = sigOk ? good : await badSig(good, () => rnd.chance(0.5)
        ? signKeyAcceptance(a.X.account, env.chainId, env.address, d.address, epoch, proof)
        : signKeyAcceptance(from.account, env.chainId, a.X.address, d.address, epoch, proof));
      const expected = model.accept(from.address, d.address, epoch, proof, sigOk, head + 1n);
      await run(step, `accept ${from.name} ${d.name} e${epoch} sigOk=${sigOk}`, from, 'acceptKey', [d.address, epoch, proof, sig], expected, 'KeyAccepted');
    } else if (roll < 0.92) {
      let [d, from] = pickChannel((c) => c.state === 1, 0.6);
      if (rnd.chance(0.08)) from = a.X;
      const c = model.ch(d.address, from.address);
      const epoch = rnd.chance(0.85) ? c.epoch : c.epoch + 1n;
      const reason = rnd.chance(0.85) ? 1 + rnd.int(3) : rnd.pick([0, 4, 255]);
      const expected = model.reject(from.address, d.address, epoch, reason);
      await run(step, `reject ${from.name} ${d.name} e${epoch} r${reason}`, from, 'rejectKey', [d.address, epoch, reason], expected, 'KeyRejected');
    } else {
      const k = rnd.pick([1, 1, 2, TTL - 1, TTL, TTL + 1]);
      await env.mine(k);
      head += BigInt(k);
      seen.mine = (seen.mine ?? 0) + 1;
    }
  }
  expect(await env.blockNumber()).toBe(head);
  // The walk must have reached every outcome, or it proves little: each success and each §4 error.
  for (const k of ['setReceiverKey:ok', 'setOperator:ok', 'enroll:ok', 'revoke:ok', 'offerKey:ok', 'acceptKey:ok', 'rejectKey:ok',
    'NotAuthorized', 'NotEnrolled', 'BadKey', 'BadSignature', 'BadEpoch', 'UnknownKeyVersion', 'NotOffered', 'OfferExpired',
    'BadProof', 'BadReason']) {
    expect({ outcome: k, reached: (seen[k] ?? 0) > 0 }).toEqual({ outcome: k, reached: true });
  }
  if (process.env.IOTKX_FUZZ_VERBOSE) console.log(seen);
}, 120_000);
