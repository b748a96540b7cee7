// startReceiver: the service provider's host in one call (keys, store, chain watcher, readings ingestion, HTTP
// API), so `npm start`, the CLI (main.ts) and tests run the same code in-process.
import { join } from 'node:path';
import { getAddress, type Address } from 'viem';
import type { Server } from 'node:http';
import { ReceiverChain } from './chain.js';
import { DEFAULT_EXCHANGE_CONFIG, Exchange, type ExchangeConfig, type ExchangeHooks } from './exchange.js';
import { startHttp } from './http.js';
import { DEFAULT_INGEST_CONFIG, Ingest, type IngestConfig } from './ingest.js';
import { ensureKeyPublished, rotateEncKey } from './keyrecord.js';
import { eraseEncryptionKey, loadReceiverKeys, type ReceiverKeys } from './keys.js';
import { ReceiverMetrics } from './metrics.js';
import { startMqttPublisher, type MqttOptions, type MqttPublisher } from './mqtt.js';
import { ensureRandom } from './random.js';
import { loadMasterKey, Store } from './store.js';

export type Logger = (msg: string, extra?: Record<string, unknown>) => void;

export interface ReceiverOptions {
  /** JSON-RPC URL of a node the receiver trusts (§5.4). */
  rpcUrl: string;
  /** Chain id; asked of the (trusted) node when absent. */
  chainId?: number;
  /** KeyExchange address. */
  contract: Address;
  /** First block to scan (the deployment block; default 0). */
  startBlock?: bigint;
  /** Directory for the default key file, database and database key file (default `.iotkx/receiver`). */
  dataDir?: string;
  keyFile?: string;
  dbPath?: string;
  dbKeyFile?: string;
  /** Where IOTKX_RECEIVER_KEY, IOTKX_RECEIVER_ENC_KEY, IOTKX_RECEIVER_DB_KEY are read (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** HTTP API; `false` for none. Default 127.0.0.1 on a free port. */
  http?: { host?: string; port?: number; token?: string } | false;
  /** Relay base URL to pull envelopes from (GET /v1/readings); none = no ingestion loop. */
  relayUrl?: string;
  /** Milliseconds between loop passes; 0 = no loop (call sync() yourself). Default 2000. */
  pollIntervalMs?: number;
  /** Publish the key record at start if the chain lacks ours (§5.1). Default true. */
  publishKey?: boolean;
  exchange?: Partial<Omit<ExchangeConfig, 'startBlock'>>;
  ingest?: Partial<IngestConfig>;
  hooks?: ExchangeHooks;
  logger?: Logger;
  /** Publish every accepted reading to this MQTT broker (hosts/receiver/mqtt.ts). */
  mqtt?: MqttOptions;
}

export interface RunningReceiver {
  /** Base URL of the HTTP API ('' without one). */
  url: string;
  /** The receiver's account address (EIP-55). */
  address: Address;
  /** One pass of the watcher, then one of ingestion. Passes of each never overlap; the two loops run apart. */
  sync(): Promise<void>;
  /** §5.1 rotation: publishes a fresh E as version + 1; older e stay until erased. Returns the new version. */
  rotateEncryptionKey(): Promise<number>;
  /** §5.6: erase the secret e of a retired version. */
  eraseEncryptionKey(version: number): boolean;
  keys: ReceiverKeys;
  store: Store;
  metrics: ReceiverMetrics;
  ingest: Ingest;
  /** The MQTT publisher, when `mqtt` was given. */
  mqtt?: MqttPublisher;
  stop(): Promise<void>;
}

export async function startReceiver(opts: ReceiverOptions): Promise<RunningReceiver> {
  ensureRandom();
  const env = opts.env ?? process.env;
  const log: Logger = opts.logger ?? (() => {});
  const dataDir = opts.dataDir ?? '.iotkx/receiver';
  const keys = loadReceiverKeys({ path: opts.keyFile ?? join(dataDir, 'keys.json'), env });
  const contract = getAddress(opts.contract);
  let chainId = opts.chainId;
  if (chainId === undefined) {
    const probe = new ReceiverChain(opts.rpcUrl, 1, contract, keys.accountKey);
    chainId = await probe.client.getChainId();
  }
  const chain = new ReceiverChain(opts.rpcUrl, chainId, contract, keys.accountKey);
  const masterKey = loadMasterKey({ hex: env.IOTKX_RECEIVER_DB_KEY, path: opts.dbKeyFile ?? join(dataDir, 'db.key') });
  const store = new Store(opts.dbPath ?? join(dataDir, 'receiver.db'), masterKey, `${chainId}:${contract.toLowerCase()}:${chain.address.toLowerCase()}`);
  masterKey.fill(0);
  const metrics = new ReceiverMetrics();
  let server: Server | undefined;
  let publisher: MqttPublisher | undefined;
  try {
    if (opts.publishKey !== false) {
      const v = await ensureKeyPublished(chain, keys, store);
      log('receiver key record', { version: v, address: chain.address });
    }
    const exchange = new Exchange(chain, keys, store, metrics,
      { ...DEFAULT_EXCHANGE_CONFIG, ...opts.exchange, startBlock: opts.startBlock ?? 0n }, opts.hooks, log);
    const ingest = new Ingest(store, metrics, { ...DEFAULT_INGEST_CONFIG, ...opts.ingest },
      { chainId, contract, receiver: chain.address }, log);
    exchange.onAccepted = () => ingest.retryParked();
    if (opts.mqtt) publisher = startMqttPublisher(store, chain.address, metrics, opts.mqtt, log);

    let url = '';
    if (opts.http !== false) {
      const h = opts.http ?? {};
      const started = await startHttp({ host: h.host ?? '127.0.0.1', port: h.port ?? 0, token: h.token ?? env.IOTKX_RECEIVER_TOKEN }, store, metrics, log);
      server = started.server;
      url = started.url;
    }

    // Two loops that never wait for each other (issue 15 item 5): a relay with endless junk pages must not hold
    // back the chain watcher until offers expire. Each loop's passes never overlap; each pull pass is bounded
    // (maxPagesPerPass) and every page read is capped (maxPageBytes).
    let watching: Promise<void> = Promise.resolve();
    let pulling: Promise<void> = Promise.resolve();
    const watchPass = () => {
      watching = watching.then(async () => {
        try {
          await exchange.tick();
        } catch (e) {
          metrics.errors.inc({ stage: 'watcher' });
          log('watcher pass failed', { error: (e as Error).message });
        }
      });
      return watching;
    };
    const pullPass = () => {
      pulling = pulling.then(async () => {
        if (!opts.relayUrl) return;
        try {
          await ingest.pull(opts.relayUrl);
        } catch (e) {
          metrics.errors.inc({ stage: 'ingest' });
          log('ingestion pass failed', { error: (e as Error).message });
        }
      });
      return pulling;
    };
    /** One watcher pass, then one ingestion pass (tests and tools drive the receiver with it). */
    const sync = async () => {
      await watchPass();
      await pullPass();
    };
    let stopped = false;
    const timers = new Set<NodeJS.Timeout>();
    const interval = opts.pollIntervalMs ?? 2000;
    const loop = (pass: () => Promise<void>) => {
      if (stopped || interval <= 0) return;
      const t = setTimeout(() => {
        timers.delete(t);
        void pass().finally(() => loop(pass));
      }, interval);
      timers.add(t);
    };
    loop(watchPass);
    if (opts.relayUrl) loop(pullPass);

    return {
      url,
      address: chain.address,
      sync,
      rotateEncryptionKey: () => rotateEncKey(chain, keys, store),
      eraseEncryptionKey: (v) => eraseEncryptionKey(keys, v),
      keys, store, metrics, ingest, mqtt: publisher,
      async stop() {
        stopped = true;
        for (const t of timers) clearTimeout(t);
        await Promise.all([watching.catch(() => {}), pulling.catch(() => {})]);
        await publisher?.stop();
        if (server) {
          server.closeAllConnections();
          await new Promise<void>((r) => server!.close(() => r()));
        }
        store.close();
      },
    };
  } catch (e) {
    server?.close();
    await publisher?.stop().catch(() => undefined);
    store.close();
    throw e;
  }
}
