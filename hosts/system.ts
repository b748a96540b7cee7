/**
 * The whole system on one machine, in one process: an embedded anvil (or an existing
 * node), the KeyExchange deployment, the receiver, the relay and a fleet of simulated
 * devices that get paired (provisioned, enrolled by an operator, funded) and then run
 * the exchange and send sealed readings. `npm start` and the system test use it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseEther, type Address, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { keyExchangeAbi } from '../contracts/build/KeyExchange.js';
import { startAnvil, type Anvil } from './chain/anvil.js';
import { attach, connect, deployKeyExchange, fund, readDeployment, verifyDeployment, writeDeployment, type DeploymentRecord } from './chain/deploy.js';
import { claimDataDir } from './data-dir.js';
import { startSimFleet, type SimDevice, type SimFleetOptions } from './sim/device.js';
import { initReceiverKeys } from './receiver/keys.js';
import { redactUrl } from './receiver/mqtt.js';
import { startReceiver, type RunningReceiver } from './receiver/receiver.js';
import { startRelay, type Relay } from './relay/server.js';
import { writeSecretFile } from './receiver/keys.js';

export interface SystemOptions {
  /**
   * Where everything the run writes goes. Only a directory iotkx made (or a new, empty one) is used, one
   * process at a time (hosts/data-dir.ts). Wiped at start (a new chain needs new devices) unless `keep`.
   */
  dataDir: string;
  /**
   * Resume the previous run in dataDir instead of wiping it: the embedded chain's state is saved there
   * (anvil --state), and the contract, the receiver's keys and readings, the relay's store and the
   * simulated devices' identities are reused; the relay keeps its port, which the devices were given.
   */
  keep?: boolean;
  devices: number;
  /** Seconds between readings of each device. */
  intervalSec: number;
  /** Use this node instead of starting anvil (needs deployerKey, a funded account). */
  rpcUrl?: string;
  deployerKey?: Hex;
  /** Seconds per block of the embedded anvil; 0 = automine (a block per transaction, none otherwise). */
  blockTime: number;
  /**
   * Receiver confirmation depth (exchange.ts). Default 2, except 0 on an embedded automine anvil (blockTime 0):
   * a node that mines only our own transactions neither reorgs nor buries anything by itself.
   */
  confirmations?: number;
  /** Receiver: act at depth 0 once the node produced no block for this long (ms; 0 = never; default 30 s). */
  idleDepthZeroMs?: number;
  offerTtlBlocks: number;
  relayPort?: number;
  /** Interface the relay listens on (default 127.0.0.1; 0.0.0.0 lets boards on the LAN reach it — it holds no secret). */
  relayHost?: string;
  receiverPort?: number;
  /** The receiver publishes every accepted reading to this MQTT broker (hosts/receiver/mqtt.ts). */
  mqttUrl?: string;
  log?: (line: string) => void;
  /** The receiver's own log lines (why it waits, what it accepted); none by default. */
  receiverLog?: (msg: string, extra?: Record<string, unknown>) => void;
  /** Aborting it while the system starts stops what is up and rejects with StartAborted (Ctrl-C). */
  signal?: AbortSignal;
  /** Extra options for the simulated XS devices (tests: power cuts, HTTP observers, short sleeps). */
  sim?: Partial<SimFleetOptions>;
}

/** Everything another program needs to join the running system (written to `system.json`). */
export interface JoinInfo {
  rpcUrl: string;
  chainId: number;
  contract: Address;
  deploymentBlock: number;
  offerTtlBlocks: number;
  relayUrl: string;
  relayRpcUrl: string;
  receiverUrl: string;
  receiverAddress: Address;
  operatorAddress: Address;
  operatorKeyFile: string;
  receiverKeyFile: string;
  devices: string[];
  /** The simulated devices' §6 consoles (`iotkx devices` and `iotkx pair --port` take these). */
  consoles: { name: string; port: string; address: string }[];
}

export interface RunningSystem {
  info: JoinInfo;
  infoFile: string;
  devices: SimDevice[];
  receiver: RunningReceiver;
  relay: Relay;
  stop(): Promise<void>;
}

export async function startSystem(opts: SystemOptions): Promise<RunningSystem> {
  const log = opts.log ?? (() => {});
  const claimed = claimDataDir(opts.dataDir, { keep: opts.keep });
  const dir = claimed.dir;
  if (claimed.wiped.length) log(`data dir ${dir}: removed the previous run's ${claimed.wiped.join(', ')}`);
  if (claimed.staleLockPid !== undefined) log(`data dir ${dir}: took over the lock of pid ${claimed.staleLockPid}, which is gone (a run that did not stop cleanly)`);
  const stops: Array<() => Promise<unknown>> = [async () => claimed.release()];
  // Idempotent: an abort during start-up and the start-up's own failure both call it.
  let stopping: Promise<void> | undefined;
  const stopAll = () => (stopping ??= (async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  })());
  // Ctrl-C while starting (opts.signal): stop what is up now; a step waiting on a service that the terminal's
  // SIGINT already killed (anvil is in the same process group) would otherwise wait for ever.
  const aborted = new Promise<never>((_, reject) => {
    const onAbort = () => void stopAll().finally(() => reject(new StartAborted()));
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
  });
  aborted.catch(() => undefined);
  try {
    return await Promise.race([aborted, build()]);
  } catch (e) {
    await stopAll();
    throw e;
  }

  async function build(): Promise<RunningSystem> {
    const previous = claimed.resumed ? readPreviousRun(dir) : undefined;
    if (claimed.resumed) log(`data dir ${dir}: resuming the previous run (--keep)`);
    const stateFile = path.join(dir, 'chain-state.json');
    if (previous?.deployment && !opts.rpcUrl && !fs.existsSync(stateFile)) {
      // Without the chain's saved state a kept run cannot resume (and anvil would save an empty chain there).
      throw new Error(`--keep: ${dir} holds no saved chain state (its run ended before saving any); ` +
        'start without --keep to begin anew');
    }
    // 1. Chain and deployment.
    let anvil: Anvil | undefined;
    let rpcUrl = opts.rpcUrl;
    let deployerKey = opts.deployerKey;
    let operatorKey: Hex;
    if (!rpcUrl) {
      // Every run saves the chain (state and blocks, every second and at exit) so that a later --keep can resume
      // it; with --keep anvil also loads it.
      const extraArgs = ['--state', stateFile, '--state-interval', '1'];
      anvil = await startAnvil({ blockTime: opts.blockTime > 0 ? opts.blockTime : undefined, extraArgs });
      stops.push(() => anvil!.stop());
      rpcUrl = anvil.rpcUrl;
      deployerKey = anvil.accounts[0].privateKey;
      operatorKey = anvil.accounts[1].privateKey;
      log(`chain: anvil at ${rpcUrl} (chain id ${anvil.chainId}, ${opts.blockTime > 0 ? `${opts.blockTime}s blocks` : 'automine: a block per transaction'})`);
    } else {
      if (!deployerKey) throw new Error('an existing node needs IOTKX_DEPLOYER_KEY (a funded account) to deploy and fund');
      operatorKey = deployerKey;
      log(`chain: ${rpcUrl}`);
    }
    const deployer = opts.rpcUrl ? await attach(rpcUrl, deployerKey) : await connect(rpcUrl, deployerKey!);
    let deployment: DeploymentRecord;
    if (previous?.deployment) {
      deployment = { ...previous.deployment, rpcUrl };
      await verifyDeployment(deployer, deployment).catch((e: Error) => {
        throw new Error(`--keep: the chain no longer holds the previous run's contract (${e.message}); ` +
          'start without --keep to begin anew');
      });
      log(`contract: KeyExchange at ${deployment.address} (kept from the previous run)`);
    } else {
      deployment = await deployKeyExchange(deployer, opts.offerTtlBlocks);
      log(`contract: KeyExchange at ${deployment.address} (block ${deployment.block}, offer TTL ${deployment.offerTtlBlocks} blocks)`);
    }
    writeDeployment(deployment, path.join(dir, 'deployment.json'));

    // 2. Receiver: fresh keys, funded, key record published at start.
    const receiverDir = path.join(dir, 'receiver');
    const receiverKeyFile = path.join(receiverDir, 'keys.json');
    const keys = initReceiverKeys(receiverKeyFile);
    const receiverAddress = privateKeyToAccount(`0x${Buffer.from(keys.accountKey).toString('hex')}` as Hex).address;
    await fund(deployer, receiverAddress, parseEther('10'));

    // 3. Relay in front of the chain, then the receiver pulling readings from it.
    const relay = await startRelay({
      upstreamUrl: rpcUrl, chainId: deployment.chainId, contract: deployment.address,
      // Kept devices were provisioned with the previous relay URL, so a resumed run reuses its port.
      dbPath: path.join(dir, 'relay.db'), port: opts.relayPort ?? previous?.relayPort ?? 0, host: opts.relayHost, logLevel: 'silent',
    });
    stops.push(() => relay.stop());
    // Services on this machine reach the relay on loopback whatever interface it listens on.
    const relayUrl = `http://127.0.0.1:${relay.port}`;
    log(`relay: ${relay.url}`);
    const confirmations = opts.confirmations ?? (anvil && opts.blockTime <= 0 ? 0 : 2);
    const receiver = await startReceiver({
      rpcUrl, chainId: deployment.chainId, contract: deployment.address, startBlock: BigInt(deployment.block),
      dataDir: receiverDir, keyFile: receiverKeyFile, relayUrl, pollIntervalMs: 1000,
      http: { port: opts.receiverPort ?? 0 },
      ...(opts.mqttUrl ? { mqtt: { url: opts.mqttUrl } } : {}),
      exchange: { confirmations, ...(opts.idleDepthZeroMs !== undefined ? { idleDepthZeroMs: opts.idleDepthZeroMs } : {}) },
      logger: opts.receiverLog,
    });
    stops.push(() => receiver.stop());
    log(`receiver: ${receiver.url} (account ${receiver.address}, acting at ${confirmations} confirmation${confirmations === 1 ? '' : 's'})`);
    if (opts.mqttUrl) log(`receiver: publishing readings to MQTT ${redactUrl(opts.mqttUrl)} (topics iotkx/<device>/readings)`);

    // 4. The operator, authorised by the receiver (§5.2).
    const operatorKeyFile = path.join(dir, 'operator.key');
    writeSecretFile(operatorKeyFile, `${operatorKey}\n`);
    const operator = await connect(rpcUrl, operatorKey, deployment.chainId);
    const asReceiver = await connect(rpcUrl, `0x${Buffer.from(keys.accountKey).toString('hex')}` as Hex, deployment.chainId);
    await send(asReceiver, deployment.address, 'setOperator', [operator.account.address, true]);

    // 5. Devices: the sensor firmware in XS workers (hosts/sim). Provision over the §6
    // console, enroll, fund (§5.2), then they run on their own.
    const devices = await startSimFleet(opts.devices, { dir: path.join(dir, 'devices'), prefix: 'sim', log, ...opts.sim });
    stops.push(async () => { await Promise.all(devices.map((d) => d.stop())); });
    for (const d of devices) {
      if (opts.keep) {
        const { state } = await d.console({ cmd: 'identity' });
        if (state !== 'unprovisioned') {
          log(`device ${d.address}: kept from the previous run (${state}; console on 127.0.0.1:${d.consolePort})`);
          continue;
        }
      }
      // In-process the device cannot fail to take its configuration, so it is enrolled and
      // funded first and finds itself enrolled at its first step (the CLI pairs the other way round).
      await send(operator, deployment.address, 'enroll', [receiver.address, d.address as Address]);
      await fund(deployer, d.address as Address, parseEther('0.1'));
      const r = await d.console({
        cmd: 'provision',
        config: {
          relayUrl: `${relayUrl}/rpc`, chainId: String(deployment.chainId), contract: deployment.address,
          receiver: receiver.address, intervalSec: opts.intervalSec,
          maxFeePerGas: '100000000000', maxPriorityFeePerGas: '2000000000', offerGas: '120000', maxTxPerDay: 24,
          blockTime: opts.blockTime > 0 ? opts.blockTime : 1, backoffMaxSec: 3600, rotation: { maxReadings: 0, maxAgeSec: 0 },
        },
      });
      if (!r.ok) throw new Error(`device ${d.address}: provision refused: ${r.error}: ${r.message}`);
      log(`device ${d.address}: enrolled, funded, provisioned (XS simulator, console on 127.0.0.1:${d.consolePort})`);
    }

    const info: JoinInfo = {
      rpcUrl, chainId: deployment.chainId, contract: deployment.address, deploymentBlock: deployment.block,
      offerTtlBlocks: deployment.offerTtlBlocks, relayUrl, relayRpcUrl: `${relayUrl}/rpc`,
      receiverUrl: receiver.url, receiverAddress: receiver.address, operatorAddress: operator.account.address,
      operatorKeyFile, receiverKeyFile, devices: devices.map((d) => d.address),
      consoles: devices.map((d, i) => ({ name: `sim${i}`, port: `tcp://127.0.0.1:${d.consolePort}`, address: d.address })),
    };
    const infoFile = path.join(dir, 'system.json');
    fs.writeFileSync(infoFile, `${JSON.stringify(info, null, 2)}\n`);
    return { info, infoFile, devices, receiver, relay, stop: stopAll };
  }
}

/** startSystem was aborted (opts.signal) while starting; everything it had started is stopped. */
export class StartAborted extends Error {
  constructor() {
    super('start-up interrupted; everything started so far is stopped');
    this.name = 'StartAborted';
  }
}

/** What a --keep run takes over from the previous run's system.json and deployment record. */
function readPreviousRun(dir: string): { deployment?: DeploymentRecord; relayPort?: number } {
  const deploymentFile = path.join(dir, 'deployment.json');
  const deployment = fs.existsSync(deploymentFile) ? readDeployment(deploymentFile) : undefined;
  let relayPort: number | undefined;
  try {
    const info = JSON.parse(fs.readFileSync(path.join(dir, 'system.json'), 'utf8')) as Partial<JoinInfo>;
    const port = Number(new URL(String(info.relayUrl)).port);
    if (Number.isInteger(port) && port > 0) relayPort = port;
  } catch { /* no previous join file: the relay takes a new port */ }
  return { deployment, relayPort };
}

async function send(s: Awaited<ReturnType<typeof connect>>, contract: Address, functionName: 'setOperator' | 'enroll', args: readonly unknown[]) {
  const hash = await s.walletClient.writeContract({ address: contract, abi: keyExchangeAbi, functionName, args } as any);
  const receipt = await s.publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== 'success') throw new Error(`${functionName} reverted (${hash})`);
}
