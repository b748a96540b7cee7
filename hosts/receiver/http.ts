// The receiver's HTTP API, exactly PROTOCOL.md §9. node:http rather than a framework: four GET routes, no
// body parsing, and one dependency fewer in the receiver's trusted base.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { cookieAuthorised, loopbackHostOk, tokenLogin } from './dashboard/auth.js';
import { serveDashboard } from './dashboard/serve.js';
import { watcherStatus } from './exchange.js';
import { parkedCount } from './dashboard/views.js';
import { routeLabel, type ReceiverMetrics } from './metrics.js';
import { gapCount, seqStateFromJson } from './seqwindow.js';
import { pad, unpad, type Store } from './store.js';
import { EXPORT_CONTENT_TYPE, exportLines, exportQueryOf, ExportQueryError, isExportQuery } from './export.js';
import { admitRequest, decodeComponent, discardBody, guardServer, isRefusal, serverOptions, type ServerGuardLimits } from '../http-guard.js';

/** Hosts that count as loopback for the no-token rule (§9: "binds to loopback by default"). */
export const LOOPBACK_HOSTS = new Set(['127.0.0.1', '::1', 'localhost']);
/** The same, as URL.hostname spells them. */
const LOOPBACK_NAMES = new Set(['127.0.0.1', '[::1]', 'localhost']);
/** Readings per page: default and ceiling (informative choice). */
export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 1000;

class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/** §9 state names from our per-epoch states: anything not yet settled on chain is still "offered". */
function stateName(row: { state: string } | undefined): 'none' | 'offered' | 'accepted' | 'rejected' {
  if (!row) return 'none';
  if (row.state === 'accepted') return 'accepted';
  if (row.state === 'rejected') return 'rejected';
  return 'offered';
}

const U64_MAX = (1n << 64n) - 1n;

/** Opaque decimal cursor: (epoch << 64) | seq of the last reading returned; it orders like (epoch, seq). */
function parseCursor(s: string | null): { epoch: bigint; seq: bigint } {
  if (s === null) return { epoch: 0n, seq: 0n };
  if (!/^(0|[1-9][0-9]{0,40})$/.test(s)) throw new HttpError(400, 'bad-cursor', 'after must be a cursor from a previous answer');
  const c = BigInt(s);
  if (c >> 128n !== 0n) throw new HttpError(400, 'bad-cursor', 'after is out of range');
  return { epoch: c >> 64n, seq: c & U64_MAX };
}

/** One device in `GET /v1/devices` (PROTOCOL.md §9): uint64 values as decimal strings. */
export interface DeviceRow {
  device: string;
  epoch: string | null;
  pendingEpoch: string | null;
  state: string;
  keyVersion: number | null;
  readings: number;
  lastSeq: string | null;
  gaps: number;
}

export function devicesView(store: Store): DeviceRow[] {
  const db = store.db;
  const devices = db.prepare('SELECT device, status FROM devices ORDER BY first_seen_ms, device').all() as { device: string; status: string }[];
  return devices.map(({ device, status }) => {
    const epochs = db.prepare('SELECT epoch, state, key_version, readings, seq_state, signed_block FROM epochs WHERE device = ? ORDER BY epoch')
      .all(device) as { epoch: string; state: string; key_version: number; readings: number; seq_state: string | null; signed_block: number | null }[];
    const latest = epochs.at(-1);
    // §5.6: an epoch whose acceptance we signed counts as accepted for readings even if its acceptKey reverted or
    // was reorganised away; the view says so too, so `epoch` and `lastSeq` name the epoch readings arrive under.
    const counts = (e: (typeof epochs)[number]) => e.state === 'accepted' || (e.signed_block !== null && e.state !== 'rejected' && e.state !== 'rejectSent');
    const active = [...epochs].reverse().find(counts);
    const latestState = latest && counts(latest) ? 'accepted' : stateName(latest);
    const activeSeq = active ? seqStateFromJson(active.seq_state) : undefined;
    return {
      device,
      epoch: active ? unpad(active.epoch).toString() : null,
      pendingEpoch: latest && latestState === 'offered' ? unpad(latest.epoch).toString() : null,
      state: status === 'revoked' ? 'revoked' : latestState,
      keyVersion: latest ? latest.key_version : null,
      readings: epochs.reduce((n, e) => n + e.readings, 0),
      lastSeq: activeSeq && activeSeq.hwm > 0n ? activeSeq.hwm.toString() : null,
      gaps: Number(epochs.reduce((n, e) => n + gapCount(seqStateFromJson(e.seq_state)), 0n)),
    };
  });
}

export function readingsView(store: Store, device: string, after: string | null, limitText: string | null): unknown {
  const known = store.db.prepare('SELECT 1 FROM devices WHERE device = ?').get(device);
  if (!known) throw new HttpError(404, 'unknown-device', `no device ${device} is known to this receiver`);
  const { epoch, seq } = parseCursor(after);
  let limit = DEFAULT_PAGE;
  if (limitText !== null) {
    if (!/^[1-9][0-9]{0,6}$/.test(limitText)) throw new HttpError(400, 'bad-limit', 'limit must be a positive integer');
    limit = Math.min(Number(limitText), MAX_PAGE);
  }
  const rows = store.db.prepare(`SELECT epoch, seq, values_json, received_ms FROM readings
    WHERE device = ? AND (epoch > ? OR (epoch = ? AND seq > ?)) ORDER BY epoch, seq LIMIT ?`)
    .all(device, pad(epoch), pad(epoch), pad(seq), limit) as { epoch: string; seq: string; values_json: string; received_ms: number }[];
  const last = rows.at(-1);
  const next = last ? ((unpad(last.epoch) << 64n) | unpad(last.seq)).toString() : ((epoch << 64n) | seq).toString();
  return {
    readings: rows.map((r) => ({
      epoch: unpad(r.epoch).toString(),
      seq: unpad(r.seq).toString(),
      values: JSON.parse(r.values_json),
      receivedAt: new Date(r.received_ms).toISOString(),
    })),
    next,
  };
}

/**
 * An export (hosts/receiver/export.ts), streamed a chunk at a time with back-pressure: a year of readings never
 * sits in memory. The query is checked before the first byte, so a bad one still gets its 400.
 */
async function sendExport(res: ServerResponse, store: Store, params: URLSearchParams, device: string | undefined): Promise<void> {
  let q;
  try {
    q = exportQueryOf(params, device);
  } catch (e) {
    if (e instanceof ExportQueryError) throw new HttpError(400, e.code, e.message);
    throw e;
  }
  if (device && !store.db.prepare('SELECT 1 FROM devices WHERE device = ?').get(device)) {
    throw new HttpError(404, 'unknown-device', `no device ${device} is known to this receiver`);
  }
  const ext = q.format === 'csv' ? 'csv' : q.format === 'jsonl' ? 'jsonl' : 'json';
  res.writeHead(200, {
    'content-type': EXPORT_CONTENT_TYPE[q.format], 'cache-control': 'no-store', 'x-content-type-options': 'nosniff',
    'content-disposition': `attachment; filename="iotkx-readings-${device ?? 'all'}.${ext}"`,
  });
  try {
    for (const chunk of exportLines(store, q)) {
      if (res.destroyed) return; // the client went away: stop reading the database
      if (!res.write(chunk)) await new Promise((r) => res.once('drain', r).once('close', r));
    }
    res.end();
  } catch (e) {
    // The status line is gone already: cut the response so the client sees it incomplete, never a crash.
    res.destroy(e as Error);
  }
}

/**
 * Slow clients and connection caps, applied before authentication (hosts/http-guard.ts). The receiver serves
 * only small GETs to an operator, a dashboard and the CLI: short timeouts, and no single address may hold
 * more than a quarter of the sockets.
 */
export const RECEIVER_HTTP_LIMITS: ServerGuardLimits = Object.freeze({
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 20_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 256,
  maxConnectionsPerClient: 64,
  maxHeaderBytes: 16 * 1024,
});

/** A request body (never used here) is read and discarded up to this, then the connection is dropped. */
const MAX_DISCARD_BYTES = 64 * 1024;

export interface HttpOptions {
  host: string;
  port: number;
  /** Required when `host` is not loopback (§9). */
  token?: string;
  limits?: Partial<ServerGuardLimits>;
}

export function tokenRequired(host: string): boolean {
  return !LOOPBACK_HOSTS.has(host);
}

function authorised(req: IncomingMessage, token: string): boolean {
  const h = req.headers.authorization ?? '';
  const m = /^Bearer (.+)$/.exec(h);
  if (!m) return false;
  const a = Buffer.from(m[1]);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

export async function startHttp(opts: HttpOptions, store: Store, metrics: ReceiverMetrics, log: (m: string, e?: Record<string, unknown>) => void): Promise<{ server: Server; url: string }> {
  const needToken = tokenRequired(opts.host);
  if (needToken && !opts.token) throw new Error(`binding to ${opts.host} needs a bearer token (IOTKX_RECEIVER_TOKEN)`);
  const limits: ServerGuardLimits = { ...RECEIVER_HTTP_LIMITS, ...opts.limits };
  const server = createServer(serverOptions(limits), (req, res) => {
    const started = process.hrtime.bigint();
    // No route reads a body: whatever a client sends is thrown away, and past a bound the connection dropped.
    discardBody(req, MAX_DISCARD_BYTES);
    // Parsed without throwing: `GET //` once crashed the process here (`new URL('//', base)` throws).
    const target = admitRequest(req);
    const url = isRefusal(target) ? new URL('http://receiver/') : target.url;
    const path = isRefusal(target) ? '' : url.pathname;
    res.on('finish', () => {
      const route = routeLabel(path);
      metrics.httpRequests.inc({ route, status: String(res.statusCode) });
      metrics.httpLatency.observe({ route }, Number(process.hrtime.bigint() - started) / 1e9);
    });
    void (async () => {
      try {
        if (isRefusal(target)) throw new HttpError(target.status, target.code, target.message);
        // A browser cannot send the bearer header with a page load: the dashboard's cookie counts too (dashboard/auth.ts).
        if (needToken && !authorised(req, opts.token!) && !cookieAuthorised(req, opts.token!)) {
          if (req.method === 'GET' && tokenLogin(res, url, opts.token!)) return;
          res.setHeader('www-authenticate', 'Bearer');
          throw new HttpError(401, 'unauthorized', 'a valid bearer token is required (a browser: open /?token=<token> once)');
        }
        // An absolute-form target names the host itself (it overrides Host): the same loopback rule holds for it.
        if (!needToken && (!loopbackHostOk(req) || (target.absolute && !LOOPBACK_NAMES.has(url.hostname)))) {
          throw new HttpError(403, 'bad-host', 'on loopback only requests to 127.0.0.1, localhost or [::1] are served');
        }
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          res.setHeader('allow', 'GET');
          throw new HttpError(405, 'method-not-allowed', 'only GET is served');
        }
        if (path === '/healthz') return send(res, 200, { ok: true, chain: watcherStatus(store) });
        if (path === '/metrics') {
          metrics.parked.set(parkedCount(store));
          const text = await metrics.registry.metrics();
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          return res.end(text);
        }
        if (path === '/v1/devices') return send(res, 200, devicesView(store));
        if (path === '/v1/readings') return await sendExport(res, store, url.searchParams, undefined);
        const m = /^\/v1\/devices\/([^/]+)\/readings$/.exec(path);
        if (m) {
          const addr = decodeComponent(m[1]);
          if (addr === undefined || !/^0x[0-9a-fA-F]{40}$/.test(addr)) throw new HttpError(400, 'bad-address', 'device must be 0x and 40 hex digits');
          const device = addr.toLowerCase();
          if (isExportQuery(url.searchParams)) return await sendExport(res, store, url.searchParams, device);
          return send(res, 200, readingsView(store, device, url.searchParams.get('after'), url.searchParams.get('limit')));
        }
        if (await serveDashboard(path, res, store)) return;
        throw new HttpError(404, 'not-found', `no route ${path.slice(0, 200)}`);
      } catch (e) {
        // A reply already under way (the client went, or a bug after writeHead) cannot take a second one.
        if (res.headersSent) {
          res.destroy();
          return;
        }
        if (e instanceof HttpError) return send(res, e.status, { error: e.code, message: e.message });
        // Never a stack trace on the wire; the log keeps the detail.
        log('http handler failed', { error: (e as Error).message });
        metrics.errors.inc({ stage: 'http' });
        send(res, 500, { error: 'internal', message: 'internal error' });
      }
    })().catch(() => res.destroy());
  });
  guardServer(server, limits, { onClientError: (status) => metrics.httpRequests.inc({ route: 'other', status: String(status) }) });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  const hostText = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return { server, url: `http://${hostText}:${port}` };
}
