// The whole system for fault tests, with every part under the test's control: an anvil on a
// fixed port that persists its state (so it can be SIGKILLed and brought back with the same
// chain), KeyExchange, the relay on a fixed port and db file (restartable), the receiver
// (restartable on its data dir), and Node devices whose every POST /v1/readings is recorded.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseEther, type Address, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { keyExchangeAbi } from '../../contracts/build/KeyExchange.js';
import { anvilBinary, devAccounts, freePort } from '../../hosts/chain/anvil.js';
import { connect, deployKeyExchange, fund, type ChainSession } from '../../hosts/chain/deploy.js';
import { startNodeDevice, type NodeDevice } from '../../hosts/device-node/device.js';
import { nodeTransport } from '../../hosts/device-node/transport.js';
import { initReceiverKeys } from '../../hosts/receiver/keys.js';
import { startReceiver, type ReceiverOptions, type RunningReceiver } from '../../hosts/receiver/receiver.js';
import { pad } from '../../hosts/receiver/store.js';
import type { RelayOptions } from '../../hosts/relay/config.js';
import { startRelay, type Relay } from '../../hosts/relay/server.js';
import { toHex } from '../../lib/bytes.js';
import { decodeEnvelope } from '../../lib/envelope.js';
import { channelId, dataKeyOf } from '../../lib/ids.js';
import type { Transport } from '../../lib/platform.js';
import type { Sensor } from '../../lib/device/sensor.js';

import { sleep, until } from '../helpers/until.js';

export { sleep, until };

/** anvil on a fixed loopback port, dumping its state every second, so a SIGKILL loses at most the last second. */
export class StateAnvil {
  private child?: ChildProcess;
  constructor(readonly port: number, readonly stateFile: string, readonly blockTime: number) {}
  get rpcUrl(): string { return `http://127.0.0.1:${this.port}`; }
  async start(): Promise<void> {
    this.child = spawn(anvilBinary(), ['--host', '127.0.0.1', '--port', String(this.port), '--block-time', String(this.blockTime),
      '--state', this.stateFile, '--state-interval', '1', '--silent'], { stdio: 'ignore' });
    await until('anvil to answer', async () => {
      const r = await fetch(this.rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' });
      return ((await r.json()) as { result?: string }).result !== undefined;
    }, 20_000, 50);
  }
  /** SIGKILL: no clean shutdown, no final state dump. */
  async kill(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((resolve) => { c.once('exit', () => resolve()); c.kill('SIGKILL'); });
  }
}

/** One POST /v1/readings as the device made it, and the status it got (0 = no answer). */
export interface Post { epoch: bigint; seq: bigint; body: Uint8Array; status: number }

export interface FaultDevice extends NodeDevice { posts: Post[]; cfg: Record<string, unknown> }

export interface FaultSystem {
  dir: string;
  anvil: StateAnvil;
  chainId: number;
  contract: Address;
  deployBlock: bigint;
  receiverAddress: Address;
  /** The receiver acting on chain (enroll, revoke). */
  receiverSession: ChainSession;
  deployer: ChainSession;
  relay: Relay;
  relayPort: number;
  receiver: RunningReceiver;
  devices: FaultDevice[];
  addDevice(name: string, relayBase?: string, over?: Record<string, unknown>, sensor?: Sensor): Promise<FaultDevice>;
  startRelay(): Promise<Relay>;
  restartReceiver(): Promise<RunningReceiver>;
  /** The receiver's K for (device, epoch), or undefined if it holds none. */
  receiverK(device: string, epoch: bigint): Uint8Array | undefined;
  /** Decrypted readings the receiver stored for a device: "epoch:seq" strings, one per row. */
  stored(device: string): string[];
  enroll(device: Address, fn?: 'enroll' | 'revoke'): Promise<void>;
  stop(): Promise<void>;
}

export interface FaultSystemOptions {
  blockTime?: number;
  offerTtlBlocks?: number;
  relay?: Partial<RelayOptions>;
  receiver?: Partial<ReceiverOptions>;
}

export async function startFaultSystem(opts: FaultSystemOptions = {}): Promise<FaultSystem> {
  const dir = mkdtempSync(join(tmpdir(), 'iotkx-faults-'));
  const blockTime = opts.blockTime ?? 1;
  const anvil = new StateAnvil(await freePort(), join(dir, 'anvil-state.json'), blockTime);
  await anvil.start();
  const cleanups: Array<() => Promise<unknown>> = [() => anvil.kill()];
  const [acct0] = devAccounts(1);
  const deployer = await connect(anvil.rpcUrl, acct0.privateKey);
  const dep = await deployKeyExchange(deployer, opts.offerTtlBlocks ?? 30);
  const keyFile = join(dir, 'receiver', 'keys.json');
  const keys = initReceiverKeys(keyFile);
  const receiverKeyHex = toHex(keys.accountKey) as Hex;
  const receiverAddress = privateKeyToAccount(receiverKeyHex).address;
  await fund(deployer, receiverAddress, parseEther('10'));
  const receiverSession = await connect(anvil.rpcUrl, receiverKeyHex, dep.chainId);

  const relayPort = await freePort();
  const relayOpts: RelayOptions = {
    upstreamUrl: anvil.rpcUrl, chainId: dep.chainId, contract: dep.address, dbPath: join(dir, 'relay.db'),
    port: relayPort, logLevel: 'silent', limits: { rateLimit: false, healthCacheMs: 200, upstreamTimeoutMs: 3000 }, ...opts.relay,
  };
  const receiverOpts: ReceiverOptions = {
    rpcUrl: anvil.rpcUrl, chainId: dep.chainId, contract: dep.address, startBlock: BigInt(dep.block),
    dataDir: join(dir, 'receiver'), keyFile, pollIntervalMs: 300, http: { port: 0 },
    exchange: { confirmations: 1 }, ...opts.receiver,
  };

  const sys: FaultSystem = {
    dir, anvil, chainId: dep.chainId, contract: dep.address, deployBlock: BigInt(dep.block), receiverAddress, receiverSession, deployer,
    relay: undefined as unknown as Relay, relayPort, receiver: undefined as unknown as RunningReceiver, devices: [],
    async startRelay() {
      sys.relay = await startRelay(relayOpts);
      return sys.relay;
    },
    async restartReceiver() {
      await sys.receiver?.stop();
      sys.receiver = await startReceiver({ ...receiverOpts, relayUrl: sys.relay.url });
      return sys.receiver;
    },
    receiverK(device, epoch) {
      const row = sys.receiver.store.db.prepare('SELECT k_enc FROM epochs WHERE device = ? AND epoch = ?')
        .get(device.toLowerCase(), pad(epoch)) as { k_enc: Buffer | null } | undefined;
      return row?.k_enc ? sys.receiver.store.openK(device.toLowerCase(), epoch, row.k_enc) : undefined;
    },
    stored(device) {
      const rows = sys.receiver.store.db.prepare('SELECT epoch, seq FROM readings WHERE device = ? ORDER BY epoch, seq')
        .all(device.toLowerCase()) as Array<{ epoch: Buffer | string | number; seq: Buffer | string | number }>;
      return rows.map((r) => `${unpad(r.epoch)}:${unpad(r.seq)}`);
    },
    async enroll(device, fn = 'enroll') {
      const hash = await receiverSession.walletClient.writeContract({ address: dep.address, abi: keyExchangeAbi, functionName: fn, args: [receiverAddress, device] } as any);
      const r = await receiverSession.publicClient.waitForTransactionReceipt({ hash });
      if (r.status !== 'success') throw new Error(`${fn} reverted`);
    },
    async addDevice(name, relayBase, over = {}, sensor) {
      const posts: Post[] = [];
      const inner = nodeTransport({ timeoutMs: 5000 });
      const transport: Transport = {
        async request(method, url, body, contentType) {
          if (!url.endsWith('/v1/readings') || !body) return inner.request(method, url, body, contentType);
          const env = decodeEnvelope(body);
          const post: Post = { epoch: env.epoch, seq: env.seq, body, status: 0 };
          posts.push(post);
          const r = await inner.request(method, url, body, contentType);
          post.status = r.status;
          return r;
        },
      };
      const nd = startNodeDevice({ dir: join(dir, 'devices'), name, transport, maxSleepMs: 300, sensor });
      const address = nd.address as Address;
      await sys.enroll(address);
      await fund(deployer, address, parseEther('1'));
      const cfg = {
        relayUrl: `${relayBase ?? sys.relay.url}/rpc`, chainId: String(dep.chainId), contract: dep.address, receiver: receiverAddress,
        intervalSec: 1, maxFeePerGas: '100000000000', maxPriorityFeePerGas: '2000000000', offerGas: '150000', maxTxPerDay: 50,
        blockTime, backoffMaxSec: 4, rotation: { maxReadings: 0, maxAgeSec: 0 }, ...over,
      };
      nd.provision(cfg);
      const fd = Object.assign(nd, { posts, cfg });
      sys.devices.push(fd);
      cleanups.push(() => fd.stop());
      return fd;
    },
    async stop() {
      for (const d of sys.devices) await d.stop().catch(() => undefined);
      await sys.receiver?.stop().catch(() => undefined);
      await sys.relay?.stop().catch(() => undefined);
      for (const c of cleanups.reverse()) await c().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await sys.startRelay();
  await sys.restartReceiver();
  return sys;
}

/** The data key the receiver's K gives for (device, epoch): what any envelope of that epoch must open with. */
export function receiverDataKey(sys: FaultSystem, device: string, epoch: bigint): Uint8Array | undefined {
  const K = sys.receiverK(device, epoch);
  if (!K) return undefined;
  const ch = channelId(BigInt(sys.chainId), hexBytes(sys.contract), hexBytes(device), hexBytes(sys.receiverAddress));
  return dataKeyOf(K, ch);
}

export const hexBytes = (h: string) => new Uint8Array(Buffer.from(h.replace(/^0x/, ''), 'hex'));

/** JSON-RPC straight to a URL (the relay's /rpc or anvil). */
export async function rpc(url: string, method: string, params: unknown[] = []): Promise<any> {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) });
  return r.json();
}

function unpad(v: Buffer | string | number): string {
  return BigInt(typeof v === 'string' ? v : typeof v === 'number' ? v : `0x${v.toString('hex')}`).toString();
}
