/**
 * A scripted in-memory chain behind a fake relay, for the device engine's tests.
 * It speaks the JSON-RPC methods a device uses over a fake Transport and models
 * the KeyExchange contract (PROTOCOL.md §4) and a receiver (§5.4) with viem and
 * eciesjs — implementations independent of lib/. It can LIE: `tamper` rewrites any
 * answer, and helpers fake rejections, expiry, fees and acceptance logs.
 */
import { ECIES_CONFIG, decrypt } from 'eciesjs';
import {
  decodeFunctionData, encodeAbiParameters, encodeEventTopics, encodeFunctionResult, keccak256, parseTransaction,
  recoverTransactionAddress, toHex, type Address, type Hex,
} from 'viem';
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { keyExchangeAbi } from '../../contracts/build/KeyExchange.js';
import { channelId as viemChannelId, proofFor, signKeyAcceptance, signReceiverKey } from '../../hosts/chain/signing.js';
import type { HttpResponse, Storage, Transport } from '../../lib/platform.js';

ECIES_CONFIG.symmetricAlgorithm = 'xchacha20'; // PROTOCOL.md §2

export const CONTRACT: Address = '0x5fbdb2315678afecb367f032d93f642f64180aa3';
export const CHAIN_ID = 31337;
const GWEI = 1_000_000_000n;

type Json = any;
interface Channel { enrolled: boolean; epoch: bigint; state: number; keyVersion: bigint; commitment: Hex; offeredAt: bigint; acceptedAt: bigint }
interface SentTx { raw: Hex; hash: Hex; from: Address; nonce: bigint; type: string; maxFeePerGas: bigint; maxPriorityFeePerGas: bigint; gasPrice: bigint; gas: bigint; data: Hex; to: Address; chainId: number; value: bigint }

export class RpcFail extends Error { constructor(readonly code: number, message: string) { super(message); } }

/** The receiver (§5.4): an account key and an ECIES key pair. */
export class TestReceiver {
  readonly account: PrivateKeyAccount;
  encSk: Uint8Array;
  encPub: Uint8Array;
  version = 0;
  /** K by epoch, as the receiver unwrapped and accepted it. */
  readonly accepted = new Map<bigint, Hex>();
  policy: 'accept' | 'reject' | 'ignore' = 'accept';
  constructor() {
    this.account = privateKeyToAccount(generatePrivateKey());
    this.encSk = secp256k1.utils.randomSecretKey();
    this.encPub = secp256k1.getPublicKey(this.encSk, false);
  }
  get address(): Address { return this.account.address.toLowerCase() as Address; }
  rotateEncKey(): void {
    this.encSk = secp256k1.utils.randomSecretKey();
    this.encPub = secp256k1.getPublicKey(this.encSk, false);
  }
}

export class FakeChain {
  chainId = CHAIN_ID;
  block = 100n;
  ttlBlocks = 10n;
  /** 0n makes the chain legacy (no base fee). */
  baseFee = 1n * GWEI;
  priorityFee = 1n * GWEI;
  gasPrice = 3n * GWEI;
  autoMine = true;
  /** Mine this many blocks per mine() (time passing). */
  readonly nonces = new Map<string, bigint>();
  readonly mempool = new Map<string, SentTx>(); // key from:nonce
  readonly receipts = new Map<string, Json>();
  readonly logs: Json[] = [];
  readonly channels = new Map<string, Channel>();
  readonly receiverKeys = new Map<string, { encKey: Hex; version: number; sig: Hex }>();
  /** Every transaction the device got the relay to accept, in order. */
  readonly sent: SentTx[] = [];
  /** Every raw transaction the device broadcast (accepted by the relay or not). */
  readonly broadcasts: Hex[] = [];
  /** Every JSON-RPC call, by method. */
  readonly calls: string[] = [];
  /** Rewrite an answer (return undefined to keep it; throw RpcFail for an error). */
  tamper: ((method: string, params: Json[], result: Json) => Json) | undefined;
  /** Called on every JSON-RPC request (e.g. to timestamp broadcasts). */
  onCall: ((method: string) => void) | undefined;
  /** Answer a request without the chain seeing it (a relay that withholds or invents); undefined = pass on. */
  intercept: ((method: string, params: Json[]) => Json) | undefined;
  /** The receiver key record the relay serves (a genuine older one, say); the chain itself keeps `receiverKeys`. */
  servedKeyRecord: { encKey: Hex; version: number; sig: Hex } | undefined;
  /** Every key record the receiver published, by version, with its encryption secret key. */
  readonly keyHistory = new Map<number, { encKey: Hex; version: number; sig: Hex; encSk: Uint8Array }>();
  /** Make the transport itself fail (relay down). */
  down = false;
  receiver = new TestReceiver();

  constructor() {}

  async publishReceiverKey(r = this.receiver): Promise<void> {
    r.version += 1;
    const encKey = toHex(r.encPub);
    const sig = await signReceiverKey(r.account, this.chainId, CONTRACT, r.version, encKey);
    this.receiverKeys.set(r.address, { encKey, version: r.version, sig });
    if (r === this.receiver) this.keyHistory.set(r.version, { encKey, version: r.version, sig, encSk: r.encSk });
    this.block += 1n;
  }

  /** enroll(receiver, device) by the receiver, mined in a block of its own (§4: emits DeviceEnrolled). */
  enroll(device: string, receiver = this.receiver.address): void {
    const ch = this.channel(device, receiver);
    ch.enrolled = true;
    this.block += 1n;
    this.log('DeviceEnrolled', { receiver, device }, [{ type: 'address' }], [receiver]);
  }

  /** revoke(receiver, device) by the receiver, mined in a block of its own (§4: emits DeviceRevoked). */
  revoke(device: string, receiver = this.receiver.address): void {
    this.channel(device, receiver).enrolled = false;
    this.block += 1n;
    this.log('DeviceRevoked', { receiver, device }, [{ type: 'address' }], [receiver]);
  }

  channel(device: string, receiver = this.receiver.address): Channel {
    const k = `${device.toLowerCase()}:${receiver.toLowerCase()}`;
    let ch = this.channels.get(k);
    if (!ch) {
      ch = { enrolled: false, epoch: 0n, state: 0, keyVersion: 0n, commitment: `0x${'00'.repeat(32)}`, offeredAt: 0n, acceptedAt: 0n };
      this.channels.set(k, ch);
    }
    return ch;
  }

  nonceOf(a: string): bigint { return this.nonces.get(a.toLowerCase()) ?? 0n; }

  transport(): Transport {
    return {
      request: async (_m, _url, body): Promise<HttpResponse> => {
        if (this.down) throw new Error('connection refused');
        const req = JSON.parse(Buffer.from(body!).toString('utf8'));
        let out: Json;
        try {
          this.calls.push(req.method);
          this.onCall?.(req.method);
          if (req.method === 'eth_sendRawTransaction') this.broadcasts.push(req.params[0]);
          const lie = this.intercept?.(req.method, req.params);
          let result = lie !== undefined ? lie : await this.handle(req.method, req.params);
          if (this.tamper) {
            const t = this.tamper(req.method, req.params, result);
            if (t !== undefined) result = t;
          }
          out = { jsonrpc: '2.0', id: req.id, result };
        } catch (e) {
          if (!(e instanceof RpcFail)) throw e;
          out = { jsonrpc: '2.0', id: req.id, error: { code: e.code, message: e.message } };
        }
        return { status: 200, body: new Uint8Array(Buffer.from(JSON.stringify(out))) };
      },
    };
  }

  private async handle(method: string, params: Json[]): Promise<Json> {
    switch (method) {
      case 'eth_chainId': return toHex(this.chainId);
      case 'eth_blockNumber': return toHex(this.block);
      case 'eth_gasPrice': return toHex(this.gasPrice);
      case 'eth_maxPriorityFeePerGas': return toHex(this.priorityFee);
      case 'eth_feeHistory':
        return { oldestBlock: toHex(this.block), baseFeePerGas: [toHex(this.baseFee), toHex(this.baseFee)], gasUsedRatio: [0.5], reward: [[toHex(this.priorityFee)]] };
      case 'eth_getTransactionCount': {
        const a = String(params[0]).toLowerCase();
        let n = this.nonceOf(a);
        if (params[1] === 'pending') while (this.mempool.has(`${a}:${n}`)) n++;
        return toHex(n);
      }
      case 'eth_call': return this.call(params[0]);
      case 'eth_sendRawTransaction': return this.send(params[0]);
      case 'eth_getTransactionReceipt': return this.receipts.get(String(params[0]).toLowerCase()) ?? null;
      case 'eth_getLogs': return this.getLogs(params[0]);
      default: throw new RpcFail(-32601, `method ${method} not supported`);
    }
  }

  private call(c: { to: string; data: Hex }): Hex {
    if (c.to.toLowerCase() !== CONTRACT) return '0x';
    const { functionName, args } = decodeFunctionData({ abi: keyExchangeAbi, data: c.data });
    switch (functionName) {
      case 'offerTtlBlocks': return encodeFunctionResult({ abi: keyExchangeAbi, functionName, result: this.ttlBlocks });
      case 'receiverKey': {
        const rk = this.servedKeyRecord ?? this.receiverKeys.get(String(args![0]).toLowerCase());
        return encodeFunctionResult({ abi: keyExchangeAbi, functionName, result: rk ? [rk.encKey, rk.version, rk.sig] : ['0x', 0, '0x'] });
      }
      case 'channel': {
        const ch = this.channel(String(args![0]), String(args![1]) as Address);
        return encodeFunctionResult({ abi: keyExchangeAbi, functionName, result: [ch.enrolled, ch.epoch, ch.state, Number(ch.keyVersion), ch.commitment, ch.offeredAt, ch.acceptedAt] });
      }
      default: throw new RpcFail(-32602, `call ${functionName} not modelled`);
    }
  }

  /** The relay hands a raw transaction to the chain (as eth_sendRawTransaction does). */
  submit(raw: Hex): Promise<Hex> { return this.send(raw); }

  private async send(raw: Hex): Promise<Hex> {
    const tx = parseTransaction(raw);
    const from = (await recoverTransactionAddress({ serializedTransaction: raw as any })).toLowerCase() as Address;
    if (tx.chainId !== this.chainId) throw new RpcFail(-32000, 'invalid chain id');
    const hash = keccak256(raw);
    const s: SentTx = {
      raw, hash, from, nonce: BigInt(tx.nonce!), type: tx.type!, maxFeePerGas: tx.maxFeePerGas ?? 0n, maxPriorityFeePerGas: tx.maxPriorityFeePerGas ?? 0n,
      gasPrice: tx.gasPrice ?? 0n, gas: tx.gas!, data: tx.data!, to: tx.to!.toLowerCase() as Address, chainId: tx.chainId!, value: tx.value ?? 0n,
    };
    if (s.nonce < this.nonceOf(from)) {
      if (this.receipts.has(hash)) throw new RpcFail(-32000, 'already known');
      throw new RpcFail(-32000, 'nonce too low');
    }
    const key = `${from}:${s.nonce}`;
    const old = this.mempool.get(key);
    if (old) {
      if (old.hash === hash) throw new RpcFail(-32000, 'already known');
      const fee = (t: SentTx) => (t.type === 'legacy' ? t.gasPrice : t.maxFeePerGas);
      if (fee(s) * 10n < fee(old) * 11n) throw new RpcFail(-32000, 'replacement transaction underpriced');
    }
    this.mempool.set(key, s);
    this.sent.push(s);
    if (this.autoMine) await this.mine();
    return hash;
  }

  /** Mine one block: every executable mempool transaction, then let the receiver react. */
  async mine(): Promise<void> {
    this.block += 1n;
    const offered: Json[] = [];
    for (let progress = true; progress; ) {
      progress = false;
      for (const [key, t] of this.mempool) {
        if (t.nonce !== this.nonceOf(t.from)) continue;
        this.mempool.delete(key);
        this.nonces.set(t.from, t.nonce + 1n);
        const logs = this.execute(t);
        offered.push(...logs.filter((l: Json) => l.topics[0] === topic('KeyOffered')));
        this.receipts.set(t.hash, { status: logs === REVERT ? '0x0' : '0x1', blockNumber: toHex(this.block), logs: logs === REVERT ? [] : logs, transactionHash: t.hash });
        progress = true;
      }
    }
    for (const l of offered) await this.receiverReacts(l);
  }

  /** Blocks pass with nothing mined (for expiry). */
  advanceBlocks(n: bigint): void { this.block += n; }

  private execute(t: SentTx): Json[] {
    if (t.to !== CONTRACT) return [];
    let call;
    try { call = decodeFunctionData({ abi: keyExchangeAbi, data: t.data }); } catch { return REVERT; }
    if (call.functionName !== 'offerKey') return REVERT;
    const [receiver, epoch, keyVersion, wrappedKey, commitment] = call.args as [Address, bigint, number, Hex, Hex];
    const ch = this.channel(t.from, receiver);
    const rk = this.receiverKeys.get(receiver.toLowerCase());
    if (!ch.enrolled || !rk || keyVersion !== rk.version || epoch !== ch.epoch + 1n) return REVERT; // §4 NotEnrolled, BadKey, UnknownKeyVersion, BadEpoch
    Object.assign(ch, { epoch, state: 1, keyVersion: BigInt(keyVersion), commitment, offeredAt: this.block });
    const log = this.log('KeyOffered', { device: t.from, receiver, epoch }, [{ type: 'uint32' }, { type: 'bytes' }, { type: 'bytes32' }], [keyVersion, wrappedKey, commitment], t.hash);
    return [log];
  }

  log(event: string, indexed: Json, types: Json[], values: Json[], txHash: Hex = `0x${'11'.repeat(32)}`): Json {
    const topics = encodeEventTopics({ abi: keyExchangeAbi, eventName: event as any, args: indexed });
    const l = { address: CONTRACT, topics, data: encodeAbiParameters(types, values), blockNumber: toHex(this.block), transactionHash: txHash, logIndex: toHex(this.logs.length), removed: false };
    this.logs.push(l);
    return l;
  }

  private async receiverReacts(offerLog: Json): Promise<void> {
    const r = this.receiver;
    const device = (`0x${offerLog.topics[1].slice(26)}`) as Address;
    const epoch = BigInt(offerLog.topics[3]);
    if (`0x${offerLog.topics[2].slice(26)}` !== r.address || r.policy === 'ignore') return;
    if (r.policy === 'reject') return this.reject(device, epoch, 3);
    await this.accept(device, epoch);
  }

  /** The genuine receiver accepts (§5.4): unwrap with eciesjs, check the commitment, sign KeyAcceptance. */
  async accept(device: Address, epoch: bigint): Promise<void> {
    const r = this.receiver;
    const offer = this.logs.find((l) => l.topics[0] === topic('KeyOffered') && BigInt(l.topics[3]) === epoch && `0x${l.topics[1].slice(26)}` === device.toLowerCase());
    const [keyVersion, wrappedKey, commitment] = decodeAbi([{ type: 'uint32' }, { type: 'bytes' }, { type: 'bytes32' }], offer.data);
    if (keyVersion !== r.version) return this.reject(device, epoch, 1);
    const K = toHex(decrypt(r.encSk, Buffer.from((wrappedKey as Hex).slice(2), 'hex')));
    const chId = viemChannelId(this.chainId, CONTRACT, device, r.account.address);
    const { proof, commitment: c } = proofFor(K, chId, epoch);
    if (c !== commitment) return this.reject(device, epoch, 2);
    const sig = await signKeyAcceptance(r.account, this.chainId, CONTRACT, device, epoch, proof);
    this.block += 1n;
    const ch = this.channel(device);
    Object.assign(ch, { state: 2, acceptedAt: this.block });
    r.accepted.set(epoch, K);
    this.log('KeyAccepted', { device, receiver: r.address, epoch }, [{ type: 'bytes32' }, { type: 'bytes' }], [proof, sig]);
  }

  reject(device: Address, epoch: bigint, reason: number): void {
    this.block += 1n;
    this.channel(device).state = 3;
    this.log('KeyRejected', { device, receiver: this.receiver.address, epoch }, [{ type: 'uint8' }], [reason]);
  }

  private getLogs(f: Json): Json[] {
    const from = f.fromBlock && f.fromBlock !== 'earliest' ? BigInt(f.fromBlock) : 0n;
    return this.logs.filter((l) => l.address === String(f.address).toLowerCase()
      && BigInt(l.blockNumber) >= from
      && (f.topics ?? []).every((t: Hex | null, i: number) => t === null || l.topics[i] === t.toLowerCase()));
  }

  /** Offer transactions (by epoch) the device got mined or queued. */
  offers(): { epoch: bigint; nonce: bigint; hash: Hex; data: Hex }[] {
    return this.sent.filter((s) => s.to === CONTRACT).map((s) => {
      const { args } = decodeFunctionData({ abi: keyExchangeAbi, data: s.data });
      return { epoch: args![1] as bigint, nonce: s.nonce, hash: s.hash, data: s.data };
    });
  }

  /**
   * Every offer the device ever broadcast (whether the relay passed it on or not), its wrapped K
   * opened with the receiver's secret key of the version it names (as a holder of that key could).
   */
  wraps(): { epoch: bigint; nonce: bigint; keyVersion: number; wrappedKey: Hex; K: Hex; raw: Hex }[] {
    const out = [];
    for (const raw of new Set(this.broadcasts)) {
      const tx = parseTransaction(raw);
      const { functionName, args } = decodeFunctionData({ abi: keyExchangeAbi, data: tx.data! });
      if (functionName !== 'offerKey') continue;
      const [, epoch, keyVersion, wrappedKey] = args as [Address, bigint, number, Hex, Hex];
      const key = this.keyHistory.get(keyVersion);
      if (!key) throw new Error(`offer wrapped for key version ${keyVersion}, which the receiver never published`);
      const K = toHex(decrypt(key.encSk, Buffer.from(wrappedKey.slice(2), 'hex')));
      out.push({ epoch, nonce: BigInt(tx.nonce!), keyVersion, wrappedKey, K, raw });
    }
    return out;
  }

  /** The wrappedKey of the KeyOffered log that landed for (device, epoch), if any. */
  landedWrap(device: string, epoch: bigint): Hex | undefined {
    const l = this.logs.find((x) => x.topics[0] === topic('KeyOffered') && BigInt(x.topics[3]) === epoch && `0x${x.topics[1].slice(26)}` === device.toLowerCase());
    return l ? (decodeAbi([{ type: 'uint32' }, { type: 'bytes' }, { type: 'bytes32' }], l.data)[1] as Hex) : undefined;
  }

  /** The device's transactions still waiting in the mempool. */
  stuck(device: string): SentTx[] { return [...this.mempool.values()].filter((t) => t.from === device.toLowerCase()); }
}

const REVERT: Json[] = [];

export function topic(event: string): Hex {
  return encodeEventTopics({ abi: keyExchangeAbi, eventName: event as any })[0];
}

import { decodeAbiParameters } from 'viem';
function decodeAbi(types: Json[], data: Hex): Json[] { return decodeAbiParameters(types, data) as Json[]; }

/** Storage with the device's NVS limits, a write log, and a switch that cuts power at the Nth write. */
export class MemStorage implements Storage {
  readonly map = new Map<string, Uint8Array>();
  writes: string[] = [];
  /** Throw (power cut) instead of performing write number `cutAt` (0-based, counted from now). */
  cutAt: number | undefined;
  get(key: string) { const v = this.map.get(key); return v ? v.slice() : undefined; }
  set(key: string, value: Uint8Array) {
    if (key.length > 15) throw new Error(`NVS: key ${key} too long`);
    if (value.length > 4000) throw new Error(`NVS: value of ${key} too long`);
    if (this.cutAt !== undefined && this.cutAt-- === 0) throw new PowerCut();
    this.map.set(key, value.slice());
    this.writes.push(key);
  }
  delete(key: string) { this.map.delete(key); }
}
export class PowerCut extends Error { constructor() { super('power cut'); } }

/**
 * Wall clock `t` (a test may set it anywhere: SNTP lies, RTC glitches) and a monotonic clock `mono`
 * (ms since boot on a real board: only time passing, advance(), moves it).
 */
export class FakeClock {
  t = Date.UTC(2025, 0, 1, 8);
  mono = 0;
  now() { return this.t; }
  monotonic() { return this.mono; }
  advance(ms: number) { this.t += ms; this.mono += ms; }
}

export function deviceConfig(receiver: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    relayUrl: 'http://relay.test/rpc', chainId: String(CHAIN_ID), contract: CONTRACT, receiver, intervalSec: 60,
    maxFeePerGas: String(50n * GWEI), maxPriorityFeePerGas: String(2n * GWEI), offerGas: '300000', maxTxPerDay: 20,
    blockTime: 2, backoffMaxSec: 3600, rotation: { maxReadings: 0, maxAgeSec: 0 }, ...over,
  };
}
export { GWEI };
