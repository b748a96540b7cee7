/**
 * The relay (PROTOCOL.md §8, §9): the light HTTP host a device talks to. It holds no
 * secret and trusts no caller: every body is size-capped before it is parsed, every
 * JSON-RPC call is checked against the policy before it is forwarded, and an envelope is
 * acknowledged only once SQLite has fsync'd it.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import pino, { type Logger } from 'pino';
import { addressHex, parseAddress } from '../../lib/address.js';
import { decodeEnvelope } from '../../lib/envelope.js';
import { installRandom } from '../../lib/secp256k1.js';
import { IotkxError } from '../../lib/errors.js';
import { toHex } from '../../lib/bytes.js';
import { ChannelCheck } from './channel-check.js';
import { DEFAULT_LIMITS, DEFAULT_RETENTION, PRUNE_EVERY_MS, type RelayLimits, type RelayOptions } from './config.js';
import { TooLarge, closeAfterReply, discardBody, mediaType, readBody, refuseBody, sendError, sendJson, sendText } from './http.js';
import { RelayMetrics } from './metrics.js';
import { RateLimiter } from './ratelimit.js';
import { RpcProxy, parseRpcBody, rpcError } from './rpc.js';
import { RPC_LIMIT_EXCEEDED } from './rpc-policy.js';
import { EnvelopeStore, MAX_CURSOR, type PutResult } from './store.js';
import { GroupCommit } from './group-commit.js';
import { Coalescer, Upstream, UpstreamError } from './upstream.js';
import { admitRequest, guardServer, isRefusal, serverOptions } from '../http-guard.js';

export interface Relay {
  /** Base URL, e.g. http://127.0.0.1:40123 */
  url: string;
  port: number;
  metrics: RelayMetrics;
  stop(): Promise<void>;
}

/** Raw transactions are checked with lib/tx (signature recovery needs lib's RNG for blinding). */
function ensureRandom(): void {
  try {
    installRandom({ bytes: (n) => new Uint8Array(randomBytes(n)) });
  } catch (e) {
    // Another Node host part (or a test helper) installed the OS RNG already: that one serves.
    if (!(e instanceof IotkxError && e.code === 'random-installed')) throw e;
  }
}

const DECIMAL = /^(0|[1-9][0-9]{0,18})$/;

type Route = 'rpc' | 'readings' | 'healthz' | 'metrics' | 'other';

export async function startRelay(opts: RelayOptions): Promise<Relay> {
  ensureRandom();
  const limits: RelayLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const chainId = BigInt(opts.chainId);
  const contract = addressHex(parseAddress(opts.contract));
  const log: Logger = pino({ name: 'iotkx-relay', level: opts.logLevel ?? 'info' });
  const debug = log.isLevelEnabled('debug');
  const metrics = new RelayMetrics(opts.processMetrics ?? false);
  const upstream = new Upstream(opts.upstreamUrl, {
    timeoutMs: limits.upstreamTimeoutMs,
    maxResponseBytes: limits.maxUpstreamResponseBytes,
    sockets: limits.upstreamSockets,
  });
  const store = new EnvelopeStore(opts.dbPath, { ...DEFAULT_RETENTION, ...opts.retention });
  const pruner = setInterval(() => {
    try {
      const n = store.prune();
      if (n > 0) log.info({ deleted: n }, 'envelopes past their retention age deleted');
    } catch (e) {
      log.error({ err: e }, 'prune failed');
    }
  }, PRUNE_EVERY_MS).unref();
  store.prune();
  const commits = new GroupCommit(store, limits.maxVariants, opts.commit, (n, ok) => metrics.commits.observe({ outcome: ok ? 'ok' : 'failed' }, n));
  const limiter = limits.rateLimit ? new RateLimiter(limits.rateLimit) : undefined;
  const channels = opts.requireChannel !== false
    ? new ChannelCheck(upstream, contract, store, typeof opts.requireChannel === 'object' ? opts.requireChannel : {})
    : undefined;
  channels?.start();
  const proxy = new RpcProxy({ chainId, contract }, new Coalescer(upstream, Math.max(1, limits.upstreamBatch)), {
    onCall: (m, o) => metrics.rpcCall(m, o),
    onUpstreamFailure: (kind) => {
      metrics.upstreamErrors.inc({ kind });
      log.warn({ kind }, 'upstream failure');
    },
  });

  let health: { at: number; up: boolean; pending?: Promise<boolean> } = { at: 0, up: false };
  async function upstreamHealthy(): Promise<boolean> {
    if (health.pending) return health.pending;
    if (Date.now() - health.at < limits.healthCacheMs) return health.up;
    const probe = upstream
      .call({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] })
      .then((a) => {
        const r = (a as { result?: unknown })?.result;
        // Reachable and serving our chain: a node on another chain is as good as none.
        return typeof r === 'string' && /^0x[0-9a-fA-F]+$/.test(r) && BigInt(r) === chainId;
      })
      .catch((e) => {
        if (e instanceof UpstreamError) metrics.upstreamErrors.inc({ kind: e.kind });
        return false;
      })
      .then((up) => {
        health = { at: Date.now(), up };
        return up;
      });
    health = { ...health, pending: probe };
    return probe;
  }

  /** Spend `cost` tokens; on refusal answer 429 (JSON-RPC shaped on /rpc) and return false. */
  function admit(req: IncomingMessage, res: ServerResponse, route: Route, cost: number): boolean {
    if (!limiter) return true;
    const key = req.socket.remoteAddress ?? 'unknown';
    if (limiter.take(key, cost)) return true;
    const headers = { 'retry-after': String(limiter.retryAfter(key, cost)) };
    if (route === 'rpc') sendJson(res, 429, rpcError(null, RPC_LIMIT_EXCEEDED, 'rate limit exceeded'), headers);
    else sendError(res, 429, 'rate-limited', 'rate limit exceeded', headers);
    return false;
  }

  async function handleRpc(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!admit(req, res, 'rpc', 1)) return;
    const body = await readBody(req, limits.maxRpcBodyBytes);
    const parsed = parseRpcBody(body, limits.maxBatch);
    if (parsed.kind === 'answer') {
      metrics.rpcCall(undefined, 'invalid');
      return sendJson(res, 200, parsed.answer);
    }
    // One token was spent on the request; a batch pays for its other calls too.
    if (parsed.entries.length > 1 && !admit(req, res, 'rpc', parsed.entries.length - 1)) return;
    sendJson(res, 200, await proxy.run(parsed.batch, parsed.entries));
  }

  async function postReading(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!admit(req, res, 'readings', 1)) return;
    const refused = (status: number, code: string, message: string) => {
      metrics.readings.inc({ result: 'refused' });
      sendError(res, status, code, message);
    };
    if (mediaType(req) !== 'application/cbor') {
      discardBody(req, limits.maxDiscardBytes); // this body is never used: drained, up to a bound
      return refused(415, 'unsupported-media-type', 'Content-Type must be application/cbor');
    }
    const body = await readBody(req, limits.maxEnvelopeBytes);
    let env;
    try {
      env = decodeEnvelope(new Uint8Array(body.buffer, body.byteOffset, body.length));
    } catch (e) {
      const msg = e instanceof Error ? e.message : 'malformed envelope';
      return refused(400, 'bad-envelope', msg);
    }
    if (channels) {
      let ok: boolean;
      try {
        ok = await channels.accepted(env.device);
      } catch (e) {
        if (e instanceof UpstreamError) metrics.upstreamErrors.inc({ kind: e.kind });
        return refused(503, 'upstream-unavailable', 'cannot check the device channel on chain right now');
      }
      if (!ok) return refused(403, 'no-channel', 'the device has no accepted key on chain');
    }
    let r: PutResult;
    try {
      // Waits for the shared commit of this envelope's batch (group-commit.ts): after it, a stored one is fsync'd.
      r = await commits.put(body, env);
    } catch (e) {
      // The whole batch was rolled back (disk full, I/O error): nothing of it is stored; the device retries.
      log.error({ err: e }, 'envelope commit failed');
      return refused(503, 'store-unavailable', 'the envelope could not be stored durably; retry later');
    }
    if (r.kind === 'too-many-variants') {
      return refused(409, 'too-many-variants', `already ${limits.maxVariants} different envelopes for this (device, epoch, seq)`);
    }
    // Retention caps (store.ts): 5xx, so the device keeps the envelope and retries later.
    if (r.kind === 'device-full') return refused(507, 'device-full', 'this device has as many envelopes stored as the relay keeps; retry later');
    if (r.kind === 'store-full') return refused(507, 'store-full', 'the relay store is full; retry later');
    if (r.kind === 'duplicate') {
      metrics.readings.inc({ result: 'duplicate' });
      return sendJson(res, 200, { stored: false, duplicate: true });
    }
    metrics.readings.inc({ result: 'stored' });
    if (debug) log.debug({ device: addressHex(env.device), epoch: String(env.epoch), seq: String(env.seq), id: String(r.id) }, 'envelope stored');
    sendJson(res, 202, { stored: true, device: addressHex(env.device), epoch: env.epoch.toString(), seq: env.seq.toString() });
  }

  function getReadings(req: IncomingMessage, res: ServerResponse, url: URL): void {
    if (!admit(req, res, 'readings', 1)) return;
    const q = url.searchParams;
    if (q.getAll('after').length > 1 || q.getAll('limit').length > 1) {
      return sendError(res, 400, 'bad-query', 'after and limit may each appear once');
    }
    const afterText = q.get('after');
    const limitText = q.get('limit');
    let after = 0n;
    if (afterText !== null) {
      if (!DECIMAL.test(afterText) || BigInt(afterText) > MAX_CURSOR) return sendError(res, 400, 'bad-cursor', 'after must be a cursor returned as next');
      after = BigInt(afterText);
    }
    let limit = limits.pageDefault;
    if (limitText !== null) {
      if (!DECIMAL.test(limitText) || Number(limitText) < 1 || Number(limitText) > limits.pageMax) {
        return sendError(res, 400, 'bad-limit', `limit must be an integer in [1, ${limits.pageMax}]`);
      }
      limit = Number(limitText);
    }
    const rows = store.page(after, limit);
    const next = rows.length ? rows[rows.length - 1].id : after;
    sendJson(res, 200, { envelopes: rows.map((r) => toHex(r.body)), next: next.toString() });
  }

  function routeOf(path: string): Route {
    switch (path) {
      case '/rpc': return 'rpc';
      case '/v1/readings': return 'readings';
      case '/healthz': return 'healthz';
      case '/metrics': return 'metrics';
      default: return 'other';
    }
  }

  const ALLOW: Record<Exclude<Route, 'other'>, string> = { rpc: 'POST', readings: 'GET, POST', healthz: 'GET', metrics: 'GET' };

  async function dispatch(req: IncomingMessage, res: ServerResponse, route: Route, url: URL): Promise<void> {
    const m = req.method;
    if (route === 'other') {
      discardBody(req, limits.maxDiscardBytes);
      return sendError(res, 404, 'not-found', 'no such endpoint');
    }
    if (route === 'rpc' && m === 'POST') return handleRpc(req, res);
    if (route === 'readings' && m === 'POST') return postReading(req, res);
    if (route === 'readings' && m === 'GET') return getReadings(req, res, url);
    if (route === 'healthz' && m === 'GET') return sendJson(res, 200, { ok: true, upstream: await upstreamHealthy() });
    if (route === 'metrics' && m === 'GET') {
      metrics.stored.set(store.count()); // queue depth, read at scrape time
      metrics.commitWaiting.set(commits.waiting);
      return sendText(res, 200, metrics.registry.contentType, await metrics.registry.metrics());
    }
    discardBody(req, limits.maxDiscardBytes);
    sendError(res, 405, 'method-not-allowed', `${route === 'rpc' ? '/rpc' : url.pathname} allows ${ALLOW[route]}`, { allow: ALLOW[route] });
  }

  const guard = { ...limits, maxHeaderBytes: 16 * 1024 };
  const server = http.createServer(serverOptions(guard), (req, res) => {
    const started = process.hrtime.bigint();
    // Parsed without throwing; `//x` and `/\\x` are paths here, never another host.
    const target = admitRequest(req);
    const url = isRefusal(target) ? new URL('http://relay.invalid/') : target.url;
    const route = isRefusal(target) ? 'other' : routeOf(url.pathname);
    res.on('finish', () => {
      const secs = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.request(route, res.statusCode, secs);
      // Built only when wanted: this runs for every request.
      if (debug) log.debug({ route, method: req.method, status: res.statusCode, ms: Math.round(secs * 1e4) / 10, client: req.socket.remoteAddress }, 'request');
    });
    if (isRefusal(target)) {
      discardBody(req, limits.maxDiscardBytes);
      return sendError(res, target.status, target.code, target.message, { connection: 'close' });
    }
    dispatch(req, res, route, url).catch((e: unknown) => {
      if (e instanceof TooLarge) {
        if (route === 'readings') metrics.readings.inc({ result: 'refused' });
        const reply = () => {
          if (route === 'rpc') sendJson(res, 413, rpcError(null, -32600, `request body over ${e.limit} bytes`), { connection: 'close' });
          else sendError(res, 413, 'too-large', `request body over ${e.limit} bytes`, { connection: 'close' });
        };
        refuseBody(req, res, limits.maxDiscardBytes, reply);
        return;
      }
      // A broken connection mid-body, or a bug: never a stack trace to the caller.
      if (req.destroyed && !req.complete) log.debug({ route }, 'client went away mid-request');
      else log.error({ err: e, route }, 'request failed');
      sendError(res, 500, 'internal', 'internal error');
      if (!req.complete) closeAfterReply(req, res);
    });
  });
  guardServer(server, guard, { onClientError: (status) => metrics.requests.inc({ route: 'other', status: String(status) }) });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}`;
  log.info({ url, upstream: opts.upstreamUrl, chainId: chainId.toString(), contract }, 'relay listening');

  let stopped: Promise<void> | undefined;
  return {
    url,
    port: addr.port,
    metrics,
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        clearInterval(pruner);
        channels?.stop();
        server.close(() => resolve());
        server.closeAllConnections();
      }).then(() => {
        upstream.close();
        commits.close(); // envelopes already waiting are committed (their clients are gone: they retry, duplicates are 200)
        store.close();
      });
      return stopped;
    },
  };
}
