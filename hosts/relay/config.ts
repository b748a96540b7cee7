import type { GroupCommitOptions } from './group-commit.js';
import type { RetentionOptions } from './store.js';

/**
 * Relay configuration and its defaults. The protocol numbers come from PROTOCOL.md §9;
 * the rest are operational choices, each named where it is used.
 */

export interface RateLimitOptions {
  /** Tokens added per second per client (remote address). */
  ratePerSec: number;
  /** Bucket size: the burst a client may send at once. */
  burst: number;
  /** Clients tracked at once; the least recently seen is forgotten beyond this (bounds memory). */
  maxClients: number;
}

export interface RelayLimits {
  /** §9: a /rpc body over 64 KiB is HTTP 413. (geth's default is 5 MB; ours is tighter.) */
  maxRpcBodyBytes: number;
  /** §9: a batch over 20 calls gets one error object. (geth allows 1000.) */
  maxBatch: number;
  /** §9: an envelope over 4 KiB is HTTP 413 (lib/envelope MAX_ENVELOPE_BYTES). */
  maxEnvelopeBytes: number;
  /** §9: beyond 4 different bodies for one (device, epoch, seq) is 409. */
  maxVariants: number;
  /** GET /v1/readings page size when `limit` is absent, and its ceiling. */
  pageDefault: number;
  pageMax: number;
  /** An upstream call that has not answered in this time is a JSON-RPC error (-32000). */
  upstreamTimeoutMs: number;
  /** Upstream responses over this are refused (the device drops anything over 8 KiB anyway, §5.3; geth caps a batch response at 25 MB). */
  maxUpstreamResponseBytes: number;
  /** Parallel sockets to the upstream node; further calls queue (and their timeout runs while queued). */
  upstreamSockets: number;
  /**
   * Calls that arrive in the same event-loop turn travel upstream as one JSON-RPC batch of
   * at most this many (eth_getLogs always alone); 1 turns coalescing off. Within geth's
   * default batch limit (1000) and the §9 client batch limit (20).
   */
  upstreamBatch: number;
  /** Slow clients: the headers must arrive within this... */
  headersTimeoutMs: number;
  /** ...and the whole request (headers and body) within this; Node answers 408 and closes. */
  requestTimeoutMs: number;
  /** Idle keep-alive connections are closed after this. */
  keepAliveTimeoutMs: number;
  /** Open connections at once; further ones are closed as soon as they are accepted. */
  maxConnections: number;
  /** Open connections at once from one client address (devices behind one NAT share it); further ones are closed at once. */
  maxConnectionsPerClient: number;
  /**
   * A body over its limit is answered 413 only once it has been read to its end, so a client still writing
   * sees the 413 rather than a reset; beyond this many bytes the relay stops reading and drops the connection.
   */
  maxDiscardBytes: number;
  /** Per-client token bucket; `false` disables it. Over the limit is HTTP 429 (JSON-RPC -32005 on /rpc). */
  rateLimit: RateLimitOptions | false;
  /** /healthz reuses an upstream probe younger than this. */
  healthCacheMs: number;
}

export const DEFAULT_LIMITS: RelayLimits = Object.freeze({
  maxRpcBodyBytes: 64 * 1024,
  maxBatch: 20,
  maxEnvelopeBytes: 4096,
  maxVariants: 4,
  pageDefault: 100,
  pageMax: 1000,
  upstreamTimeoutMs: 10_000,
  maxUpstreamResponseBytes: 1024 * 1024,
  upstreamSockets: 32,
  upstreamBatch: 20,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 20_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 1024,
  maxConnectionsPerClient: 256,
  maxDiscardBytes: 4 * 1024 * 1024,
  rateLimit: Object.freeze({ ratePerSec: 50, burst: 200, maxClients: 10_000 }),
  healthCacheMs: 2_000,
});

export interface ChannelCheckOptions {
  /** First block to scan for DeviceEnrolled logs (the deployment block; default 0). */
  fromBlock?: bigint;
  /** Blocks per eth_getLogs call of a scan (default 10,000: within public nodes' range limits). */
  chunkBlocks?: number;
  /** Tail scan interval, ms (default 5,000). */
  tailMs?: number;
  /** An unknown device triggers a (shared) tail scan when the index is older than this, ms (default 2,000). */
  refreshMs?: number;
}

/**
 * Retention of the envelope store (store.ts), each 0 = off. Defaults: 14 days, 50,000
 * envelopes per device (about 3 days of 5-s readings a receiver has not pulled), 2,000,000
 * in all (about 0.5 GB of SQLite file at ~250 B a row with its indexes).
 */
export const DEFAULT_RETENTION: RetentionOptions = Object.freeze({ maxAgeSec: 14 * 86_400, maxPerDevice: 50_000, maxRows: 2_000_000 });
/** How often the relay deletes envelopes past their age, ms. */
export const PRUNE_EVERY_MS = 60_000;

export interface RelayOptions {
  /** JSON-RPC URL of the chain node the relay forwards to (http: or https:). */
  upstreamUrl: string;
  /** The deployment's chain id: raw transactions for another chain are refused. */
  chainId: number | bigint;
  /** The KeyExchange contract address: the only target of eth_call/eth_estimateGas/eth_getLogs/transactions. */
  contract: string;
  /** SQLite file holding the envelopes (created if absent). */
  dbPath: string;
  port?: number;
  host?: string;
  limits?: Partial<RelayLimits>;
  /**
   * Refuse envelopes (403 no-channel) from devices with no DeviceEnrolled log on the contract
   * (channel-check.ts). Default ON; `false` turns it off (a relay for a test double of the chain).
   */
  requireChannel?: boolean | ChannelCheckOptions;
  /** Store retention (store.ts); missing fields take DEFAULT_RETENTION. */
  retention?: Partial<RetentionOptions>;
  /** Group commit of POST /v1/readings (group-commit.ts); missing fields take DEFAULT_GROUP_COMMIT. */
  commit?: Partial<GroupCommitOptions>;
  /** Also export prom-client's process metrics (CPU, memory, event loop) on /metrics. Default off. */
  processMetrics?: boolean;
  /** pino level: 'fatal'..'trace' or 'silent' (default 'info'). */
  logLevel?: string;
}
