// A lying relay at system level (issue 6, PROTOCOL.md §1 G5, §5.3, §5.5): a relay double
// sits between a Node device and the real relay. In turn it substitutes the receiver key
// record, lies about channel(), swallows an offer transaction, hides the genuine
// KeyAccepted logs and serves forged ones, and replays epoch 1's acceptance during epoch 2.
// The device must never activate, or seal with, a K other than the one the real receiver
// holds for that epoch; once the double stops lying the exchange completes (only delay).
// Rotation is by age (5 s): lib/device notices a count-based rotation only at its next idle check (10 min).
import '../helpers/node-random.js';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import {
  decodeFunctionData, decodeFunctionResult, encodeAbiParameters, encodeFunctionResult, keccak256, padHex, toEventSelector, toHex,
  type Address, type Hex,
} from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { keyExchangeAbi } from '../../contracts/build/KeyExchange.js';
import { keyExchangeDomain, keyAcceptanceTypes, signReceiverKey } from '../../hosts/chain/signing.js';
import { decodeEnvelope } from '../../lib/envelope.js';
import { openReading } from '../../lib/reading.js';
import { receiverDataKey, rpc, sleep, startFaultSystem, until, type FaultDevice, type FaultSystem } from './system.js';

jest.setTimeout(240_000);

const KEY_ACCEPTED = toEventSelector('KeyAccepted(address,address,uint64,bytes32,bytes)');
const attacker = privateKeyToAccount(generatePrivateKey());
const attackerEnc = toHex(Buffer.concat([Buffer.from([4]), randomBytes(64)])); // any 65 bytes: the device must not even get that far

interface Lies {
  keyRecord: boolean;
  channel: boolean;
  hideAccepts: boolean;
  fakeAccepts: boolean;
  replayEpoch1: boolean;
  swallowTx: number;
}
const noLies = (): Lies => ({ keyRecord: false, channel: false, hideAccepts: false, fakeAccepts: false, replayEpoch1: false, swallowTx: 0 });
let lies = noLies();
/** How often each lie was actually told (so the test knows the device was exposed to it). */
const told = { keyRecord: 0, channel: 0, hidden: 0, forged: 0, replayed: 0, swallowed: 0 };
/** Every envelope the device posted, as the relay double saw it. */
const envelopes: Uint8Array[] = [];

let sys: FaultSystem;
let dev: FaultDevice;
let proxy: http.Server;
let proxyUrl: string;

const word = (a: string) => padHex(a.toLowerCase() as Hex, { size: 32 });

async function lieAbout(call: any, realUrl: string): Promise<unknown> {
  const forward = async (c = call) => rpc(`${realUrl}/rpc`, c.method, c.params);
  if (call.method === 'eth_sendRawTransaction' && lies.swallowTx > 0) {
    lies.swallowTx--;
    told.swallowed++;
    return { jsonrpc: '2.0', id: call.id, result: keccak256(call.params[0]) }; // "sent", never forwarded
  }
  if (call.method === 'eth_call') {
    const real = await forward();
    if (real.error) return { ...real, id: call.id };
    const { functionName } = decodeFunctionData({ abi: keyExchangeAbi, data: call.params[0].data });
    if (functionName === 'receiverKey' && lies.keyRecord) {
      const [, version, realSig] = decodeFunctionResult({ abi: keyExchangeAbi, functionName, data: real.result }) as readonly [Hex, number, Hex];
      // Alternately: a higher version signed by the attacker, and the receiver's own signature over another key.
      const forged = told.keyRecord++ % 2 === 0
        ? [attackerEnc, version + 1, await signReceiverKey(attacker, sys.chainId, sys.contract, version + 1, attackerEnc)]
        : [attackerEnc, version, realSig];
      return { jsonrpc: '2.0', id: call.id, result: encodeFunctionResult({ abi: keyExchangeAbi, functionName, result: forged as any }) };
    }
    if (functionName === 'channel' && lies.channel) {
      const r = decodeFunctionResult({ abi: keyExchangeAbi, functionName, data: real.result }) as readonly [boolean, bigint, number, number, Hex, bigint, bigint];
      const pending = BigInt(dev.status().pendingEpoch ?? r[1]);
      // Alternately: the pending epoch "accepted", and an epoch far ahead "accepted".
      const epoch = told.channel++ % 2 === 0 ? pending : pending + 5n;
      const forged = [true, epoch, 2, r[3], r[4], r[5], r[6] > 0n ? r[6] : r[5]];
      return { jsonrpc: '2.0', id: call.id, result: encodeFunctionResult({ abi: keyExchangeAbi, functionName, result: forged as any }) };
    }
    return { ...real, id: call.id };
  }
  if (call.method === 'eth_getLogs' && call.params[0]?.topics?.[0] === KEY_ACCEPTED) {
    const real = await forward();
    if (real.error) return { ...real, id: call.id };
    const topics = call.params[0].topics as Hex[];
    const epoch = BigInt(topics[3]);
    let logs: any[] = real.result;
    if (lies.hideAccepts && logs.length) {
      told.hidden++;
      logs = [];
    }
    const template = { address: sys.contract.toLowerCase(), blockNumber: '0x1', blockHash: keccak256('0x01'), transactionHash: keccak256('0x02'), transactionIndex: '0x0', logIndex: '0x0', removed: false };
    if (lies.fakeAccepts) {
      // Acceptances the attacker signed: one with a random proof, one with the genuine proof (copied
      // from the real log when there is one), each "from" the pinned receiver in the typed data.
      const proofs: Hex[] = [toHex(randomBytes(32)), ...real.result.map((l: any) => `0x${l.data.slice(2 + 64 * 2, 2 + 64 * 3)}` as Hex)];
      for (const proof of proofs) {
        const sig = await attacker.signTypedData({
          domain: keyExchangeDomain(sys.chainId, sys.contract), types: keyAcceptanceTypes, primaryType: 'KeyAcceptance',
          message: { device: dev.address as Address, receiver: sys.receiverAddress, epoch, proof },
        });
        logs.push({ ...template, topics: [KEY_ACCEPTED, word(dev.address), word(sys.receiverAddress), topics[3]], data: encodeAbiParameters([{ type: 'bytes32' }, { type: 'bytes' }], [proof, sig]) });
        told.forged++;
      }
    }
    if (lies.replayEpoch1 && epoch > 1n) {
      const old = await rpc(`${realUrl}/rpc`, 'eth_getLogs', [{ ...call.params[0], topics: [...topics.slice(0, 3), word('0x1')], fromBlock: toHex(sys.deployBlock) }]);
      for (const l of old.result ?? []) {
        logs.push(l); // as it is (epoch 1 in a query for epoch 2)…
        logs.push({ ...l, topics: [...l.topics.slice(0, 3), topics[3]] }); // …and relabelled as the queried epoch
        told.replayed++;
      }
    }
    return { jsonrpc: '2.0', id: call.id, result: logs };
  }
  return { ...(await forward()), id: call.id };
}

function startDouble(realUrl: () => string): Promise<void> {
  proxy = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    try {
      if (req.url === '/rpc') {
        const answer = await lieAbout(JSON.parse(body.toString('utf8')), realUrl());
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
        return;
      }
      if (req.url === '/v1/readings' && req.method === 'POST') envelopes.push(new Uint8Array(body));
      const r = await fetch(`${realUrl()}${req.url}`, { method: req.method, body: req.method === 'POST' ? body : undefined, headers: { 'content-type': String(req.headers['content-type'] ?? '') } });
      res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' }).end(Buffer.from(await r.arrayBuffer()));
    } catch (e) {
      res.writeHead(502).end(String(e));
    }
  });
  return new Promise((resolve) => proxy.listen(0, '127.0.0.1', () => {
    proxyUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
    resolve();
  }));
}

/** Watches the device all along: whatever key it has active must be the receiver's K for that epoch. */
const violations: string[] = [];
let watcher: NodeJS.Timeout;
function watchActiveKey(): void {
  watcher = setInterval(() => {
    const a = dev.device.engine.activeKey();
    if (!a) return;
    const K = sys.receiverK(dev.address, a.epoch);
    if (!K || Buffer.compare(Buffer.from(K), Buffer.from(a.K)) !== 0) violations.push(`active epoch ${a.epoch} with a K the receiver does not hold`);
  }, 100);
}

beforeAll(async () => {
  sys = await startFaultSystem({ offerTtlBlocks: 12 });
  await startDouble(() => sys.relay.url);
  lies = { ...noLies(), keyRecord: true, channel: true };
  dev = await sys.addDevice('h', proxyUrl, { rotation: { maxReadings: 0, maxAgeSec: 5 } });
  watchActiveKey();
}, 120_000);
afterAll(async () => {
  clearInterval(watcher);
  await sys?.stop();
  proxy?.close();
});

const deviceTxCount = async () => BigInt((await rpc(sys.anvil.rpcUrl, 'eth_getTransactionCount', [dev.address, 'latest'])).result);

test('a substituted receiver key record (and a lying channel()) gets no offer out of the device', async () => {
  await until('the device saw the forged key records', () => told.keyRecord >= 4, 60_000);
  await sleep(1500);
  expect(dev.status().state).not.toBe('active');
  expect(dev.status().pendingEpoch).toBeNull();
  expect(await deviceTxCount()).toBe(0n);
  expect(envelopes).toHaveLength(0);
});

test('a swallowed offer, hidden genuine acceptance and forged acceptances: no activation; once the lies stop, epoch 1 activates with the receiver\'s K', async () => {
  lies = { ...noLies(), channel: true, hideAccepts: true, fakeAccepts: true, swallowTx: 1 };
  await until('the offer was swallowed once, then re-broadcast and landed', async () => told.swallowed === 1 && (await deviceTxCount()) >= 1n, 90_000);
  await until('the receiver accepted epoch 1 on chain', () => sys.receiverK(dev.address, 1n) !== undefined && told.hidden >= 1, 90_000);
  await until('the device saw forged acceptances for a while', () => told.forged >= 6, 60_000);
  expect(dev.status().state).toBe('exchanging');
  expect(dev.device.engine.activeKey()).toBeUndefined();
  expect(envelopes).toHaveLength(0);

  lies = noLies();
  await until('epoch 1 active', () => dev.device.engine.activeKey()?.epoch === 1n, 60_000);
  expect(Buffer.from(dev.device.engine.activeKey()!.K)).toEqual(Buffer.from(sys.receiverK(dev.address, 1n)!));
});

test('epoch 1\'s acceptance replayed during epoch 2: the device keeps sealing with epoch 1 until epoch 2 is genuinely accepted', async () => {
  lies = { ...noLies(), hideAccepts: true, replayEpoch1: true, channel: true, fakeAccepts: true };
  await until('the receiver accepted epoch 2 on chain', () => sys.receiverK(dev.address, 2n) !== undefined, 120_000);
  await until('the device saw the replayed log', () => told.replayed >= 4, 60_000);
  expect(dev.device.engine.activeKey()?.epoch).toBe(1n);
  expect(dev.status().pendingEpoch).toBe('2');

  lies = noLies();
  await until('epoch 2 active', () => dev.device.engine.activeKey()?.epoch === 2n, 60_000);
  expect(Buffer.from(dev.device.engine.activeKey()!.K)).toEqual(Buffer.from(sys.receiverK(dev.address, 2n)!));
  await until('an epoch 2 reading posted', () => envelopes.some((e) => decodeEnvelope(e).epoch === 2n), 30_000);
});

test('every envelope the device ever sent opens with the receiver\'s K of its epoch; the active key was never one the receiver lacks', async () => {
  expect(envelopes.length).toBeGreaterThan(4);
  const epochs = new Set<bigint>();
  for (const e of envelopes) {
    const env = decodeEnvelope(e);
    const dk = receiverDataKey(sys, dev.address, env.epoch);
    expect(dk).toBeDefined();
    expect(openReading(dk!, env).seq).toBe(env.seq); // throws if the tag does not verify
    epochs.add(env.epoch);
  }
  expect(epochs.has(1n) && epochs.has(2n)).toBe(true); // (a later rotation may have begun epoch 3 by now)
  expect(violations).toEqual([]);
  // The receiver decrypted them too.
  await until('receiver stored readings of both epochs', () => {
    const s = sys.stored(dev.address);
    return s.some((x) => x.startsWith('1:')) && s.some((x) => x.startsWith('2:'));
  }, 30_000);
});
