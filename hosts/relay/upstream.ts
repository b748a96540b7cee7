/**
 * The relay's client to its upstream chain node: one JSON body out, one JSON body in,
 * with a deadline, a response size cap and keep-alive sockets. Every failure is an
 * UpstreamError with a kind the RPC layer turns into a clear JSON-RPC error.
 */
import http from 'node:http';
import https from 'node:https';

export type UpstreamFailure = 'timeout' | 'unreachable' | 'http-status' | 'bad-response' | 'too-large';

export class UpstreamError extends Error {
  constructor(readonly kind: UpstreamFailure, message: string) {
    super(message);
    this.name = 'UpstreamError';
  }
}

export interface UpstreamOptions {
  timeoutMs: number;
  maxResponseBytes: number;
  sockets: number;
}

export class Upstream {
  private readonly url: URL;
  private readonly agent: http.Agent;
  private readonly transport: typeof http | typeof https;

  constructor(url: string, private readonly opts: UpstreamOptions) {
    this.url = new URL(url);
    if (this.url.protocol !== 'http:' && this.url.protocol !== 'https:') {
      throw new Error(`upstream URL must be http: or https:, got ${this.url.protocol}`);
    }
    this.transport = this.url.protocol === 'https:' ? https : http;
    this.agent = new this.transport.Agent({ keepAlive: true, maxSockets: opts.sockets });
  }

  /** POST `payload` as JSON and parse the answer. The deadline covers queueing, connect and body. */
  call(payload: unknown): Promise<unknown> {
    const body = Buffer.from(JSON.stringify(payload));
    const { timeoutMs, maxResponseBytes } = this.opts;
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (e: UpstreamError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        reject(e);
      };
      const req = this.transport.request(this.url, {
        method: 'POST',
        agent: this.agent,
        headers: { 'content-type': 'application/json', 'content-length': String(body.length), accept: 'application/json' },
      });
      const timer = setTimeout(() => fail(new UpstreamError('timeout', `upstream did not answer within ${timeoutMs} ms`)), timeoutMs);
      req.on('error', (e: NodeJS.ErrnoException) =>
        fail(new UpstreamError('unreachable', `upstream unreachable (${e.code ?? e.message})`)));
      req.on('response', (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          fail(new UpstreamError('http-status', `upstream answered HTTP ${res.statusCode}`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxResponseBytes) fail(new UpstreamError('too-large', `upstream response over ${maxResponseBytes} bytes`));
          else chunks.push(c);
        });
        res.on('error', (e) => fail(new UpstreamError('unreachable', `upstream connection lost (${e.message})`)));
        res.on('end', () => {
          if (settled) return;
          let value: unknown;
          try {
            value = JSON.parse(Buffer.concat(chunks, size).toString('utf8'));
          } catch {
            fail(new UpstreamError('bad-response', 'upstream answered with invalid JSON'));
            return;
          }
          settled = true;
          clearTimeout(timer);
          resolve(value);
        });
      });
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
