/**
 * One real anvil + KeyExchange, OUR receiver (hosts/receiver, driven by explicit sync()), an operator the
 * receiver authorised, and helpers to fund and enroll devices and to read the chain with viem (independent of
 * lib/). Shared by the end-to-end tests of our device engine on Node (test/e2e) and on XS (test/xs).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bytesToHex, parseEther, parseEventLogs, type Address, type Hex } from 'viem';
import { setupChain, type ChainEnv } from '../helpers/chain.js';
import { fund } from '../../hosts/chain/deploy.js';
import { channelId, proofFor } from '../../hosts/chain/signing.js';
import { startReceiver, type ReceiverOptions, type RunningReceiver } from '../../hosts/receiver/receiver.js';

export const TTL_BLOCKS = 20;

export interface Stack {
  env: ChainEnv;
  receiver: Address;
  /** Starts our receiver on the stack's data directory (a restart when called again after stop()). */
  startReceiver(extra?: Partial<ReceiverOptions>): Promise<RunningReceiver>;
  /** A device config (PROTOCOL.md §5.2) for the device engine's provision(). */
  deviceConfig(relayUrl: string, over?: Record<string, unknown>): Record<string, unknown>;
  /** §5.2 step 3: the operator enrolls, the funder funds. */
  pair(device: Address): Promise<void>;
  revoke(device: Address): Promise<void>;
  /** One receiver pass, the receipts of what it sent, then a second pass to settle them. */
  pass(r: RunningReceiver): Promise<void>;
  /** channel(device, receiver) by viem. */
  channel(device: Address): Promise<{ enrolled: boolean; epoch: bigint; state: number; keyVersion: number }>;
  /** KeyOffered / KeyAccepted logs for a device, by viem. */
  offered(device: Address): Promise<{ epoch: bigint; keyVersion: number }[]>;
  accepted(device: Address): Promise<{ epoch: bigint; proof: Hex }[]>;
  /** The K our receiver stores for (device, epoch), opened with its master key, or undefined. */
  storedK(r: RunningReceiver, device: Address, epoch: bigint): Hex | undefined;
  /** The receiver's row state for (device, epoch). */
  rowState(r: RunningReceiver, device: Address, epoch: bigint): { state: string; key_version: number } | undefined;
  /** proof for K on the device's channel, by viem (§5.3). */
  proof(device: Address, K: Hex, epoch: bigint): Hex;
  stop(): Promise<void>;
}

export async function startStack(): Promise<Stack> {
  const env = await setupChain(['receiver', 'operator', 'funder'], TTL_BLOCKS);
  const dir = mkdtempSync(join(tmpdir(), 'iotkx-e2e-'));
  const receiver = env.actors.receiver.address;
  const pad = (e: bigint) => e.toString().padStart(20, '0');
  const running = new Set<RunningReceiver>();
  const ok = async (r: Promise<{ error?: string }>, what: string) => {
    const res = await r;
    if (res.error) throw new Error(`${what} reverted: ${res.error}`);
  };
  await ok(env.tx(env.actors.receiver, 'setOperator', [env.actors.operator.address, true]), 'setOperator');

  const stack: Stack = {
    env,
    receiver,
    async startReceiver(extra = {}) {
      const r = await startReceiver({
        rpcUrl: env.anvil.rpcUrl, chainId: env.chainId, contract: env.address, startBlock: env.deployBlock,
        dataDir: join(dir, 'receiver'), pollIntervalMs: 0, http: false,
        env: { IOTKX_RECEIVER_KEY: env.anvil.accounts[1].privateKey }, // = env.actors.receiver
        exchange: { confirmations: 0 },
        logger: process.env.RCV_DEBUG ? (m, e) => console.log(m, e) : undefined,
        ...extra,
      });
      running.add(r);
      const stop = r.stop.bind(r);
      r.stop = async () => { running.delete(r); await stop(); };
      return r;
    },
    deviceConfig(relayUrl, over = {}) {
      return {
        relayUrl, chainId: String(env.chainId), contract: env.address, receiver, intervalSec: 60,
        maxFeePerGas: parseEther('0.0000001').toString(), maxPriorityFeePerGas: '2000000000', offerGas: '300000', maxTxPerDay: 20,
        blockTime: 1, backoffMaxSec: 3600, rotation: { maxReadings: 2, maxAgeSec: 0 }, ...over,
      };
    },
    async pair(device) {
      await ok(env.tx(env.actors.operator, 'enroll', [receiver, device]), 'enroll');
      await fund(env.actors.funder.session, device, parseEther('1'));
    },
    async revoke(device) {
      await ok(env.tx(env.actors.operator, 'revoke', [receiver, device]), 'revoke');
    },
    async pass(r) {
      await r.sync();
      const sent = r.store.db.prepare("SELECT action_tx FROM epochs WHERE state IN ('acceptSent', 'rejectSent')").all() as { action_tx: Hex }[];
      for (const s of sent) await env.pub.waitForTransactionReceipt({ hash: s.action_tx, pollingInterval: 50, timeout: 10_000 }).catch(() => undefined);
      await r.sync();
    },
    async channel(device) {
      const [enrolled, epoch, state, keyVersion] = await env.read<[boolean, bigint, number, number]>('channel', [device, receiver]);
      return { enrolled, epoch, state, keyVersion };
    },
    async offered(device) {
      const logs = parseEventLogs({ abi: env.abi, logs: await env.pub.getLogs({ address: env.address, fromBlock: env.deployBlock, toBlock: 'latest' }), eventName: 'KeyOffered' });
      return logs.filter((l) => (l.args as { device: Address }).device.toLowerCase() === device.toLowerCase())
        .map((l) => ({ epoch: (l.args as { epoch: bigint }).epoch, keyVersion: Number((l.args as { keyVersion: number }).keyVersion) }));
    },
    async accepted(device) {
      const logs = parseEventLogs({ abi: env.abi, logs: await env.pub.getLogs({ address: env.address, fromBlock: env.deployBlock, toBlock: 'latest' }), eventName: 'KeyAccepted' });
      return logs.filter((l) => (l.args as { device: Address }).device.toLowerCase() === device.toLowerCase())
        .map((l) => ({ epoch: (l.args as { epoch: bigint }).epoch, proof: (l.args as { proof: Hex }).proof }));
    },
    storedK(r, device, epoch) {
      const row = r.store.db.prepare('SELECT k_enc FROM epochs WHERE device = ? AND epoch = ?').get(device.toLowerCase(), pad(epoch)) as { k_enc: Buffer | null } | undefined;
      return row?.k_enc ? bytesToHex(r.store.openK(device.toLowerCase(), epoch, row.k_enc)) : undefined;
    },
    rowState(r, device, epoch) {
      return r.store.db.prepare('SELECT state, key_version FROM epochs WHERE device = ? AND epoch = ?').get(device.toLowerCase(), pad(epoch)) as
        { state: string; key_version: number } | undefined;
    },
    proof(device, K, epoch) {
      return proofFor(K, channelId(env.chainId, env.address, device, receiver), epoch).proof;
    },
    async stop() {
      for (const r of [...running]) await r.stop().catch(() => undefined);
      await env.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return stack;
}
