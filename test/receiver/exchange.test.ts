// The receiver against a real anvil + KeyExchange. Offers are made by INDEPENDENT code: viem transactions,
// eciesjs (xchacha20) for the wrap, viem keccak/abi encoding for channelId, proof and commitment.
import '../helpers/node-random.js';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ECIES_CONFIG, encrypt as eciesEncrypt } from 'eciesjs';
import { bytesToHex, concatHex, encodeAbiParameters, keccak256, parseEventLogs, toHex as vToHex, type Address, type Hex } from 'viem';
import { setupChain, type Actor, type ChainEnv } from '../helpers/chain.js';
import { startReceiver, type ReceiverOptions, type RunningReceiver } from '../../hosts/receiver/receiver.js';
import { watcherStatus } from '../../hosts/receiver/exchange.js';
import { sleep, until } from '../helpers/until.js';

ECIES_CONFIG.symmetricAlgorithm = 'xchacha20';

let env: ChainEnv;
let dir: string;
const DEVICES = ['d1', 'd2', 'd3', 'd4', 'd5', 'd6', 'd7', 'd8', 'd9', 'd10', 'd11', 'd12', 'd13'];

beforeAll(async () => {
  env = await setupChain(['receiver', 'receiverB', 'receiverC', ...DEVICES], 20);
  dir = mkdtempSync(join(tmpdir(), 'iotkx-rcv-'));
}, 120_000);
afterAll(async () => {
  await env?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Each data directory is one receiver with its own funded account (anvil account 1, 2 or 3). */
const ACCOUNT_OF: Record<string, number> = { main: 1, restart1: 2, restart2: 3 };
function receiverOpts(name: string, extra: Partial<ReceiverOptions> = {}): ReceiverOptions {
  return {
    rpcUrl: env.anvil.rpcUrl, chainId: env.chainId, contract: env.address, startBlock: env.deployBlock,
    dataDir: join(dir, name), pollIntervalMs: 0,
    env: { IOTKX_RECEIVER_KEY: env.anvil.accounts[ACCOUNT_OF[name]].privateKey },
    exchange: { confirmations: 0 },
    logger: process.env.RCV_DEBUG ? (m, e) => console.log(m, e) : undefined,
    ...extra,
  };
}

/** §3 and §5.3 with viem only. */
function channelIdOf(device: Address, receiver: Address): Hex {
  return keccak256(encodeAbiParameters([{ type: 'uint256' }, { type: 'address' }, { type: 'address' }, { type: 'address' }],
    [BigInt(env.chainId), env.address, device, receiver]));
}
function proofOf(K: Hex, device: Address, receiver: Address, epoch: bigint): Hex {
  return keccak256(concatHex([vToHex('iotkx/1/confirm'), K, channelIdOf(device, receiver), vToHex(epoch, { size: 8 })]));
}

async function encKeyOnChain(receiver: Address): Promise<{ encKey: Hex; version: number }> {
  const [encKey, version] = await env.read<[Hex, number, Hex]>('receiverKey', [receiver]);
  return { encKey, version };
}

interface Offer { K: Hex; epoch: bigint; proof: Hex; tx: Hex }
async function offer(dev: Actor, receiver: Address, opts: { epoch?: bigint; wrapped?: Hex; commitment?: Hex; version?: number } = {}): Promise<Offer> {
  const { encKey, version } = await encKeyOnChain(receiver);
  const [, stored] = await env.read<[boolean, bigint]>('channel', [dev.address, receiver]);
  const epoch = opts.epoch ?? stored + 1n;
  const K = bytesToHex(randomBytes(32));
  const proof = proofOf(K, dev.address, receiver, epoch);
  const wrapped = opts.wrapped ?? bytesToHex(eciesEncrypt(encKey.slice(2), Buffer.from(K.slice(2), 'hex')));
  const r = await env.tx(dev, 'offerKey', [receiver, epoch, opts.version ?? version, wrapped, opts.commitment ?? keccak256(proof)]);
  expect(r.error).toBeUndefined();
  return { K, epoch, proof, tx: r.receipt.transactionHash };
}

const receiverActor = () => env.actors.receiver;
async function enroll(dev: Actor, by: Actor = receiverActor()) {
  const r = await env.tx(by, 'enroll', [by.address, dev.address]);
  expect(r.error).toBeUndefined();
}

async function channelState(dev: Actor, receiver: Address = receiverActor().address): Promise<{ epoch: bigint; state: number }> {
  const c = await env.read<[boolean, bigint, number]>('channel', [dev.address, receiver]);
  return { epoch: c[1], state: c[2] };
}

async function events(name: 'KeyAccepted' | 'KeyRejected', device: Address) {
  const logs = await env.pub.getLogs({ address: env.address, fromBlock: env.deployBlock, toBlock: 'latest' });
  return parseEventLogs({ abi: env.abi, logs }).filter((l) => l.eventName === name && (l.args as { device: Address }).device === device) as
    { args: { epoch: bigint; proof?: Hex; sig?: Hex; reason?: number } }[];
}

function storedK(rcv: RunningReceiver, device: Address, epoch: bigint): Hex | undefined {
  const row = rcv.store.db.prepare('SELECT k_enc FROM epochs WHERE device = ? AND epoch = ?').get(device.toLowerCase(), epoch.toString().padStart(20, '0')) as
    { k_enc: Buffer | null } | undefined;
  return row?.k_enc ? bytesToHex(rcv.store.openK(device.toLowerCase(), epoch, row.k_enc)) : undefined;
}

let rcv: RunningReceiver;

/** One receiver pass, then wait for the transactions it sent (anvil mines after answering), then settle them. */
async function pass(r: RunningReceiver): Promise<void> {
  await r.sync();
  const sent = r.store.db.prepare("SELECT action_tx FROM epochs WHERE state IN ('acceptSent', 'rejectSent')").all() as { action_tx: Hex }[];
  for (const s of sent) await env.pub.waitForTransactionReceipt({ hash: s.action_tx, pollingInterval: 50, timeout: 10_000 }).catch(() => undefined);
  await r.sync();
}

describe('receiver key exchange on anvil', () => {
  beforeAll(async () => {
    rcv = await startReceiver(receiverOpts('main'));
  }, 60_000);
  afterAll(() => rcv?.stop());

  test('publishes a key record (§5.1) signed by its account key; key files are 0600', async () => {
    expect(rcv.address).toBe(receiverActor().address);
    const { encKey, version } = await encKeyOnChain(rcv.address);
    expect(version).toBe(1);
    expect(encKey).toBe(bytesToHex(rcv.keys.encKeys[0].publicKey));
    // e differs from r (§2 SHOULD)
    expect(bytesToHex(rcv.keys.encKeys[0].secretKey)).not.toBe(env.anvil.accounts[1].privateKey);
    expect(statSync(join(dir, 'main', 'keys.json')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'main', 'db.key')).mode & 0o777).toBe(0o600);
  });

  test('an independent offer is accepted and the stored K equals the device K', async () => {
    const d = env.actors.d1;
    await enroll(d);
    const o = await offer(d, rcv.address);
    await pass(rcv);
    expect(await channelState(d)).toEqual({ epoch: 1n, state: 2 });
    const acc = await events('KeyAccepted', d.address);
    expect(acc).toHaveLength(1);
    expect(acc[0].args.proof).toBe(o.proof);
    expect(storedK(rcv, d.address, 1n)).toBe(o.K);
    // Idempotent: another pass (and a re-scan from the start) sends nothing more.
    rcv.store.setMeta('cursor', JSON.stringify({ block: (env.deployBlock - 1n).toString(), hash: null }));
    await pass(rcv);
    expect(await events('KeyAccepted', d.address)).toHaveLength(1);
  });

  test('a wrap to another key (auth failure) and an off-curve ephemeral are rejected with reason 1', async () => {
    const d = env.actors.d2;
    await enroll(d);
    const other = bytesToHex(randomBytes(32));
    const { PrivateKey } = await import('eciesjs');
    const otherPub = new PrivateKey(Buffer.from(other.slice(2), 'hex')).publicKey.toHex(false);
    await offer(d, rcv.address, { wrapped: bytesToHex(eciesEncrypt(otherPub, randomBytes(32))) });
    await pass(rcv);
    expect(await channelState(d)).toEqual({ epoch: 1n, state: 3 });
    // Off-curve ephemeral point: 0x04 || x || y with y not on the curve.
    const bad = new Uint8Array(137);
    bad[0] = 4;
    bad.set(randomBytes(64), 1);
    await offer(d, rcv.address, { wrapped: bytesToHex(bad) });
    await pass(rcv);
    const rej = await events('KeyRejected', d.address);
    expect(rej.map((r) => [r.args.epoch, r.args.reason])).toEqual([[1n, 1], [2n, 1]]);
    expect(storedK(rcv, d.address, 1n)).toBeUndefined();
  });

  test('a commitment that does not match the wrapped K is rejected with reason 2', async () => {
    const d = env.actors.d3;
    await enroll(d);
    await offer(d, rcv.address, { commitment: keccak256(bytesToHex(randomBytes(32))) });
    await pass(rcv);
    const rej = await events('KeyRejected', d.address);
    expect(rej.map((r) => r.args.reason)).toEqual([2]);
    expect(await events('KeyAccepted', d.address)).toHaveLength(0);
  });

  test('an offer past its time to live when the receiver runs is not accepted', async () => {
    const d = env.actors.d4;
    await enroll(d);
    await offer(d, rcv.address);
    await env.mine(env.ttl + 1);
    await pass(rcv);
    expect(await channelState(d)).toEqual({ epoch: 1n, state: 1 });
    expect(await events('KeyAccepted', d.address)).toHaveLength(0);
    const row = rcv.store.db.prepare("SELECT state FROM epochs WHERE device = ?").get(d.address.toLowerCase()) as { state: string };
    expect(row.state).toBe('expired');
  });

  test('a revoked device’s pending offer is rejected with reason 3 (policy)', async () => {
    const d = env.actors.d5;
    await enroll(d);
    await offer(d, rcv.address);
    expect((await env.tx(receiverActor(), 'revoke', [receiverActor().address, d.address])).error).toBeUndefined();
    await pass(rcv);
    expect((await events('KeyRejected', d.address)).map((r) => r.args.reason)).toEqual([3]);
  });
});

describe('restarts', () => {
  test('crash after K is stored, before accepting: restart accepts once with the same K', async () => {
    const d = env.actors.d6;
    await enroll(d, env.actors.receiverB);
    const a = await startReceiver(receiverOpts('restart1', {
      hooks: { afterKeyStored: () => { throw new Error('simulated crash'); } },
    }));
    const o = await offer(d, a.address);
    await a.sync(); // "crashes" in the hook: the process would be gone, so no second pass
    expect(await channelState(d, a.address)).toEqual({ epoch: 1n, state: 1 });
    expect(storedK(a, d.address, 1n)).toBe(o.K);
    await a.stop();
    const b = await startReceiver(receiverOpts('restart1'));
    await pass(b);
    await pass(b);
    expect(await channelState(d, b.address)).toEqual({ epoch: 1n, state: 2 });
    expect(await events('KeyAccepted', d.address)).toHaveLength(1);
    expect(storedK(b, d.address, 1n)).toBe(o.K);
    await b.stop();
  });

  test('crash after the accept is signed and persisted, before broadcast: restart re-sends the same transaction', async () => {
    const d = env.actors.d7;
    await enroll(d, env.actors.receiverC);
    const a = await startReceiver(receiverOpts('restart2', {
      hooks: { beforeBroadcast: () => { throw new Error('simulated crash'); } },
    }));
    const o = await offer(d, a.address);
    await a.sync(); // "crashes" before broadcast
    const sent = a.store.db.prepare('SELECT state, action_tx FROM epochs WHERE device = ?').get(d.address.toLowerCase()) as { state: string; action_tx: Hex };
    expect(sent.state).toBe('acceptSent');
    expect(await channelState(d, a.address)).toEqual({ epoch: 1n, state: 1 });
    await a.stop();
    const b = await startReceiver(receiverOpts('restart2'));
    await pass(b); // re-broadcast, then receipt → accepted
    const r = await env.pub.getTransactionReceipt({ hash: sent.action_tx });
    expect(r.status).toBe('success');
    expect(await events('KeyAccepted', d.address)).toHaveLength(1);
    expect(storedK(b, d.address, 1n)).toBe(o.K);
    const row = b.store.db.prepare('SELECT state FROM epochs WHERE device = ?').get(d.address.toLowerCase()) as { state: string };
    expect(row.state).toBe('accepted');
    await b.stop();
  });
});

describe('rotation and confirmations', () => {
  test('rotation to version 2 keeps version 1’s e for an offer made before it', async () => {
    const d8 = env.actors.d8;
    const d9 = env.actors.d9;
    const r = await startReceiver(receiverOpts('main'));
    await enroll(d8);
    await enroll(d9);
    const before = await offer(d8, r.address); // under version 1
    expect(await r.rotateEncryptionKey()).toBe(2);
    const { version, encKey } = await encKeyOnChain(r.address);
    expect(version).toBe(2);
    expect(encKey).toBe(bytesToHex(r.keys.encKeys[1].publicKey));
    const after = await offer(d9, r.address); // under version 2
    await pass(r);
    expect(storedK(r, d8.address, before.epoch)).toBe(before.K);
    expect(storedK(r, d9.address, after.epoch)).toBe(after.K);
    expect(await channelState(d8)).toEqual({ epoch: 1n, state: 2 });
    expect(await channelState(d9)).toEqual({ epoch: 1n, state: 2 });
    // Erasing version 1's e: a key file with only version 2 remains.
    expect(r.eraseEncryptionKey(1)).toBe(true);
    expect(r.keys.encKeys.map((k) => k.version)).toEqual([2]);
    await r.stop();
  });

  test('an offer is acted on only at the confirmation depth', async () => {
    const d = env.actors.d10;
    await enroll(d);
    const r = await startReceiver(receiverOpts('main', { exchange: { confirmations: 3 } }));
    await offer(d, r.address);
    await pass(r);
    expect(await channelState(d)).toEqual({ epoch: 1n, state: 1 });
    await env.mine(3);
    await pass(r);
    expect(await channelState(d)).toEqual({ epoch: 1n, state: 2 });
    await r.stop();
  });
});

describe('a node that produces no blocks by itself (anvil automine)', () => {
  const rowState = (r: RunningReceiver, d: Actor) =>
    (r.store.db.prepare('SELECT state FROM epochs WHERE device = ?').get(d.address.toLowerCase()) as { state: string } | undefined)?.state;

  test('at depth 2 with the fallback off the receiver waits and says why (log, /healthz)', async () => {
    const d = env.actors.d11;
    await enroll(d);
    const lines: string[] = [];
    const r = await startReceiver(receiverOpts('main', { exchange: { confirmations: 2, idleDepthZeroMs: 0 }, logger: (m) => lines.push(m) }));
    try {
      const o = await offer(d, r.address);
      const block = Number((await env.pub.getTransactionReceipt({ hash: o.tx })).blockNumber);
      await r.sync();
      await sleep(1200);
      await r.sync();
      expect(await channelState(d)).toEqual({ epoch: 1n, state: 1 }); // nothing buries the offer
      const st = watcherStatus(r.store)!;
      expect(st).toMatchObject({ confirmations: 2, actingDepth: 2, idle: false, head: block });
      expect(st.waiting).toEqual([{ kind: 'offer', device: d.address.toLowerCase(), epoch: '1', block, depth: 0 }]);
      expect(st.reason).toMatch(/waiting for 2 confirmations: the offer of 0x[0-9a-f]{40} epoch 1 \(block \d+, 0 deep\)/);
      expect(st.reason).toMatch(/fallback off/);
      const health = await (await fetch(`${r.url}/healthz`)).json();
      expect(health).toMatchObject({ ok: true, chain: { reason: st.reason, waiting: st.waiting } });
    } finally {
      await r.stop();
    }
  });

  test('at depth 2 with the fallback on, the receiver acts at depth 0 once no block came for idleDepthZeroMs, offer and receipt', async () => {
    const d = env.actors.d11; // its epoch-1 offer from the test above is still open
    const lines: string[] = [];
    const r = await startReceiver(receiverOpts('main', { exchange: { confirmations: 2, idleDepthZeroMs: 1000 }, logger: (m) => lines.push(m) }));
    try {
      await until('the offer accepted on chain', async () => { await r.sync(); return (await channelState(d)).state === 2; }, 60_000, 300);
      // Our acceptance's block is buried by nothing either: it settles the same way.
      await until('the acceptance settled', async () => { await r.sync(); return rowState(r, d) === 'accepted'; }, 60_000, 300);
      expect(lines.some((l) => /produces no blocks by itself; acting at depth 0 instead of 2/.test(l))).toBe(true);
      const st = watcherStatus(r.store)!;
      expect(st).toMatchObject({ idle: true, actingDepth: 0, confirmations: 2, waiting: [] });
      expect(st.reason).toMatch(/no block for \d+ s/);
      // A block arrives: back to depth 2.
      await env.mine(1);
      await r.sync();
      expect(watcherStatus(r.store)).toMatchObject({ idle: false, actingDepth: 2 });
    } finally {
      await r.stop();
    }
  });
});

describe('why it waits, when the node does not answer', () => {
  test('a failed watcher pass is the status reason in /healthz', async () => {
    const { freePort } = await import('../../hosts/chain/anvil.js');
    const closed = await freePort();
    const r = await startReceiver(receiverOpts('main', { rpcUrl: `http://127.0.0.1:${closed}`, publishKey: false, dataDir: join(dir, 'unreachable') }));
    try {
      await r.sync();
      const health = (await (await fetch(`${r.url}/healthz`)).json()) as any;
      expect(health.chain.reason).toMatch(/^watcher pass failed: /);
    } finally {
      await r.stop();
    }
  });
});

describe('reorgs', () => {
  test('an acceptance undone by a reorg deeper than the confirmation depth is detected and made again, with the same K', async () => {
    const d = env.actors.d1;
    const r = await startReceiver(receiverOpts('main'));
    const snap = await env.pub.request({ method: 'evm_snapshot' as never, params: [] as never }) as Hex;
    const o = await offer(d, r.address); // d1 is at epoch 1 accepted: this is epoch 2
    const raw = await env.pub.request({ method: 'eth_getRawTransactionByHash' as never, params: [o.tx] as never }) as Hex;
    await pass(r);
    expect(await channelState(d)).toEqual({ epoch: 2n, state: 2 });
    // The chain forgets the offer and the acceptance; the device re-broadcasts its same raw offer.
    await env.pub.request({ method: 'evm_revert' as never, params: [snap] as never });
    expect(await channelState(d)).toEqual({ epoch: 1n, state: 2 });
    await env.pub.request({ method: 'eth_sendRawTransaction', params: [raw] });
    await env.pub.waitForTransactionReceipt({ hash: o.tx, pollingInterval: 50 });
    expect(await channelState(d)).toEqual({ epoch: 2n, state: 1 });
    await pass(r);
    await pass(r);
    expect(await channelState(d)).toEqual({ epoch: 2n, state: 2 });
    expect(storedK(r, d.address, 2n)).toBe(o.K);
    const reorgs = await r.metrics.registry.getSingleMetricAsString('iotkx_receiver_reorgs_total');
    expect(reorgs).toMatch(/iotkx_receiver_reorgs_total [1-9]/);
    await r.stop();
  });
});

describe('rate limit', () => {
  test('accepts per device are rate-limited: an offer over the limit waits (no transaction), and is accepted once allowed', async () => {
    const d = env.actors.d2; // epochs 1 and 2 were rejected above: no acceptance yet
    const limited = await startReceiver(receiverOpts('main', { exchange: { confirmations: 0, acceptRate: { max: 1, windowMs: 3_600_000 } } }));
    const o3 = await offer(d, limited.address);
    await pass(limited);
    expect(await channelState(d)).toEqual({ epoch: o3.epoch, state: 2 });
    const o4 = await offer(d, limited.address);
    await pass(limited);
    expect(await channelState(d)).toEqual({ epoch: o4.epoch, state: 1 });
    expect(storedK(limited, d.address, o4.epoch)).toBe(o4.K); // K kept while it waits
    await limited.stop();
    const relaxed = await startReceiver(receiverOpts('main', { exchange: { confirmations: 0, acceptRate: { max: 2, windowMs: 3_600_000 } } }));
    await pass(relaxed);
    expect(await channelState(d)).toEqual({ epoch: o4.epoch, state: 2 });
    expect((await events('KeyAccepted', d.address)).map((e) => e.args.epoch)).toEqual([o3.epoch, o4.epoch]);
    await relaxed.stop();
  });
});
