/**
 * What every iotkx HTTP server (relay, receiver and its dashboard) does before a request reaches a handler:
 * slow-client timeouts, connection caps (in total and per client address), a §9-shaped answer to malformed
 * HTTP and to CONNECT, and a request-target parser that never throws. All of it runs before authentication,
 * so a stranger who cannot log in cannot hold sockets open, crash the process or make it answer 500.
 */
import http, { type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';

export interface ServerGuardLimits {
  /** The request's headers must arrive within this (slowloris). */
  headersTimeoutMs: number;
  /** The whole request, headers and body, within this; Node answers 408 and closes. */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** Open connections at once; a further one is closed as soon as it is accepted. */
  maxConnections: number;
  /** Open connections at once from one client address; a further one from that address is closed at once. */
  maxConnectionsPerClient: number;
  /** Request line and headers together; over it is 431. */
  maxHeaderBytes: number;
}

/** createServer options for the limits Node applies itself. */
export function serverOptions(l: ServerGuardLimits): http.ServerOptions {
  return {
    headersTimeout: l.headersTimeoutMs,
    requestTimeout: l.requestTimeoutMs,
    keepAliveTimeout: l.keepAliveTimeoutMs,
    maxHeaderSize: l.maxHeaderBytes,
    // Node checks the two timeouts above only this often (default 30 s): keep it a fraction of them.
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(l.headersTimeoutMs / 4))),
    // Node's own answer to a missing Host is a bare 400 without a body: admitRequest answers it in the §9 shape.
    requireHostHeader: false,
  };
}

export interface GuardHooks {
  /** A malformed request or a timeout was answered (or the socket dropped) with this status. */
  onClientError?(status: number): void;
  /** A connection was closed unserved: over a cap. */
  onRefused?(reason: 'per-client'): void;
}

/** A raw HTTP/1.1 answer with a §9 error body, then the connection is closed. */
export function rawError(socket: Duplex, status: number, code: string, message: string, extra = ''): void {
  const body = JSON.stringify({ error: code, message });
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\n${extra}connection: close\r\n\r\n${body}`);
  // If the client never reads or closes, do not keep the socket for it.
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** Connection caps, the malformed-HTTP answer and the CONNECT answer, on `server` (made with serverOptions). */
export function guardServer(server: Server, l: ServerGuardLimits, hooks: GuardHooks = {}): void {
  server.maxConnections = l.maxConnections;
  const perClient = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    // Node's headersTimeout starts with the first byte of a request: a client that connects and never sends
    // one would hold its socket for ever. Until the first request's headers are in, silence for as long as
    // headersTimeout is answered 408 and closed ('timeout' below); see 'request' below.
    socket.setTimeout(l.headersTimeoutMs);
    const key = socket.remoteAddress;
    if (key === undefined) return void socket.destroy(); // already gone
    const n = (perClient.get(key) ?? 0) + 1;
    if (n > l.maxConnectionsPerClient) {
      hooks.onRefused?.('per-client');
      socket.destroy();
      return;
    }
    perClient.set(key, n);
    socket.once('close', () => {
      const left = (perClient.get(key) ?? 1) - 1;
      if (left <= 0) perClient.delete(key);
      else perClient.set(key, left);
    });
  });
  // Headers complete: from here Node's requestTimeout (and keepAliveTimeout between requests) governs the
  // socket, and a handler waiting for the chain must not be cut for the socket's silence.
  const served = new WeakSet<Duplex>();
  server.on('request', (req: IncomingMessage) => {
    served.add(req.socket);
    req.socket.setTimeout(0);
  });
  // A socket timeout with no request listening for it: silence before a first request is a 408 (as Node's
  // headersTimeout answers partial headers); an idle keep-alive connection is just closed, as Node would.
  server.on('timeout', (socket: Duplex) => {
    if (!served.has(socket) && socket.writable) {
      rawError(socket, 408, 'timeout', 'request too slow');
      hooks.onClientError?.(408);
    } else socket.destroy();
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // Malformed HTTP or a timeout: answer plainly if the socket still can, then drop it.
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    // As Node's default handler does: answer unless a response has already begun on this socket.
    const pending = (socket as unknown as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (socket.writable && !pending?.headersSent) {
      if (status === 408) rawError(socket, 408, 'timeout', 'request too slow');
      else rawError(socket, status, 'bad-http', 'malformed HTTP request');
    } else socket.destroy();
    hooks.onClientError?.(status);
  });
  // Node's own 417 for an Expect it cannot meet has no body: the same answer in the §9 shape.
  server.on('checkExpectation', (_req: IncomingMessage, res: http.ServerResponse) => {
    const body = JSON.stringify({ error: 'expectation-failed', message: 'only Expect: 100-continue is understood' });
    res.writeHead(417, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', connection: 'close' });
    res.end(body);
    hooks.onClientError?.(417);
  });
  // Without a listener Node drops a CONNECT silently; answer it like any other method we do not serve.
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => undefined);
    rawError(socket, 405, 'method-not-allowed', 'CONNECT is not served');
    hooks.onClientError?.(405);
  });
}

/** A request target, parsed: origin-form (`/path?query`) or absolute-form (`http://host/path?query`). */
export interface Target {
  url: URL;
  /** absolute-form: the client named the host in the target (it overrides Host, RFC 9112 §3.2.2). */
  absolute: boolean;
}

const BASE = 'http://host.invalid';

/**
 * Parse a request target without ever throwing: null for anything that is not a path starting with `/` or
 * an absolute http(s) URL (`*`, authority-form, a relative path). The path is taken as written, never
 * resolved against a base: `//x` and `/\x` are paths, not another host.
 */
export function requestTarget(raw: string | undefined): Target | null {
  if (raw === undefined || raw === '') return null;
  try {
    if (raw.startsWith('/')) {
      // Concatenated, not resolved: `new URL('//x', base)` would read `x` as a host (and throw for `//`).
      const url = new URL(BASE + raw);
      return url.origin === BASE ? { url, absolute: false } : null;
    }
    if (/^https?:\/\//i.test(raw)) {
      const url = new URL(raw);
      return { url, absolute: true };
    }
  } catch {
    /* not a URL at all */
  }
  return null;
}

export interface Refusal {
  status: number;
  code: string;
  message: string;
}

/**
 * The checks every request passes before routing (and before authentication): a target we can parse, and
 * exactly one Host header (RFC 9112 §3.2: an HTTP/1.1 request without one, or with two, is a 400).
 */
export function admitRequest(req: IncomingMessage): Target | Refusal {
  let hosts = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i].toLowerCase() === 'host') hosts++;
  if (hosts > 1) return { status: 400, code: 'bad-request', message: 'more than one Host header' };
  if (hosts === 0 && req.httpVersion !== '1.0') return { status: 400, code: 'bad-request', message: 'an HTTP/1.1 request needs a Host header' };
  const target = requestTarget(req.url);
  if (!target) return { status: 400, code: 'bad-request', message: 'the request target must be a path starting with / or an absolute http URL' };
  return target;
}

export const isRefusal = (t: Target | Refusal): t is Refusal => 'status' in t;

/** decodeURIComponent that answers undefined for a malformed %-escape instead of throwing URIError. */
export function decodeComponent(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/**
 * Read and throw away the body of a request answered without it (404, 405, 415...), so the connection can
 * serve the next request; past `maxBytes` the connection is dropped instead of reading on.
 */
export function discardBody(req: IncomingMessage, maxBytes: number): void {
  if (req.complete) return;
  let seen = 0;
  const onData = (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > maxBytes) {
      req.off('data', onData);
      req.socket.destroy();
    }
  };
  req.on('data', onData);
  req.resume();
}
