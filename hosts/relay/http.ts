/**
 * Small node:http helpers: a body reader that stops at a byte limit, and JSON replies.
 * node:http rather than a framework: we need exact control of body limits (refuse on
 * Content-Length, cut a streamed body at the limit without reading the rest) and of the
 * slow-client timeouts, and it adds no dependency.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

export class TooLarge extends Error {
  constructor(readonly limit: number) {
    super(`body over ${limit} bytes`);
  }
}

/**
 * Read the whole body, or throw TooLarge as soon as it is known to exceed `limit`
 * (from Content-Length before reading anything, else when the running count passes it).
 * On TooLarge the request is paused: the rest of the body is never read.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    req.pause();
    return Promise.reject(new TooLarge(limit));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.pause();
        finish(new TooLarge(limit));
      } else chunks.push(chunk);
    };
    const onEnd = () => finish();
    const onError = (e: Error) => finish(e);
    // A connection closed mid-body may end with 'close' alone: never leave the promise hanging.
    const onClose = () => finish(new Error('connection closed before the body was complete'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.once('close', onClose);
  });
}

const COMMON_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
} as const;

export function sendJson(res: ServerResponse, status: number, value: unknown, extra: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const body = JSON.stringify(value);
  res.writeHead(status, {
    ...COMMON_HEADERS,
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
    ...extra,
  });
  res.end(body);
}

/** §9 error shape: {"error": "<code>", "message": "..."}; `extra` adds fields. */
export function sendError(res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  sendJson(res, status, { error: code, message }, headers);
}

export function sendText(res: ServerResponse, status: number, contentType: string, body: string): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { ...COMMON_HEADERS, 'content-type': contentType, 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
}

/**
 * After a reply to a request whose body we refused to read: half-close once the reply is
 * flushed (so the client still reads it), then drop the socket shortly after even if the
 * client keeps sending. Reading is never resumed.
 */
export function closeAfterReply(req: IncomingMessage, res: ServerResponse, graceMs = 1000): void {
  const socket = req.socket;
  const end = () => {
    socket.end();
    setTimeout(() => socket.destroy(), graceMs).unref();
  };
  if (res.writableFinished) end();
  else res.once('finish', end);
}

/**
 * Answer a request whose body is over its limit with `reply` (a 413 with `connection: close`) once the rest
 * of the body has been read and thrown away, up to `maxDiscardBytes` in all. A client that writes its whole
 * body before it reads (most simple HTTP stacks, a device's among them) would otherwise be reset while still
 * writing: it sees EPIPE or ECONNRESET, and the 413 waiting in its receive buffer is lost. A body declared
 * or found to be over the bound is answered at once and the connection dropped; the time it may take is
 * bounded by the server's requestTimeout (408).
 */
export function refuseBody(req: IncomingMessage, res: ServerResponse, maxDiscardBytes: number, reply: () => void): void {
  if (req.complete) return reply();
  const declared = Number(req.headers['content-length'] ?? '0');
  const dropAfterReply = () => {
    reply();
    closeAfterReply(req, res);
  };
  if (declared > maxDiscardBytes) return dropAfterReply();
  let seen = 0;
  const done = (over: boolean) => {
    req.off('data', onData);
    req.off('end', onEnd);
    req.off('close', onClose);
    if (over) {
      req.pause();
      dropAfterReply();
    } else reply(); // the whole body is read: `connection: close` now ends the socket cleanly, with no reset
  };
  const onData = (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > maxDiscardBytes) done(true);
  };
  const onEnd = () => done(false);
  const onClose = () => done(true); // the client went away (or requestTimeout struck): nothing to answer
  req.on('data', onData);
  req.once('end', onEnd);
  req.once('close', onClose);
  req.resume();
}

export { discardBody } from '../http-guard.js';

/** The media type of a Content-Type header, lower case, without parameters. */
export function mediaType(req: IncomingMessage): string | undefined {
  const ct = req.headers['content-type'];
  if (typeof ct !== 'string') return undefined;
  return ct.split(';')[0].trim().toLowerCase();
}
