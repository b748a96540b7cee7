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

interface Waiting {
  calls: Array<{ id: number } & Record<string, unknown>>;
  resolve(answers: unknown[]): void;
  reject(e: unknown): void;
}

/**
 * Coalesces the JSON-RPC calls that arrive in one event-loop turn into one upstream batch
 * (at most `maxCalls`), so many concurrent devices cost the upstream node, and the relay,
 * one HTTP exchange instead of one each. Nothing waits on a timer: the flush runs at
 * setImmediate, right after the poll phase that read the requests, so a lone call is
 * forwarded at once. Each caller gets back exactly the answers to its own calls (ids are
 * rewritten per flush and restored). An upstream failure fails the calls of that flush, except an answer
 * over the size cap (or a batch refused as a whole): then each caller is retried in an exchange of its own,
 * so one client's large answer fails only that client.
 */
export class Coalescer {
  private queue: Waiting[] = [];
  private queued = 0;
  private scheduled = false;

  constructor(private readonly upstream: Upstream, private readonly maxCalls: number) {}

  /**
   * Forward `calls` (ids unique within the array); resolves with the upstream answers, in any
   * order, ids as given. `alone`: send them in an exchange of their own (large answers).
   */
  call(calls: Array<{ id: number } & Record<string, unknown>>, alone = false): Promise<unknown[]> {
    if (alone || calls.length >= this.maxCalls) return this.send([{ calls, resolve: () => {}, reject: () => {} }], true);
    return new Promise((resolve, reject) => {
      if (this.queued + calls.length > this.maxCalls) this.flush();
      this.queue.push({ calls, resolve, reject });
      this.queued += calls.length;
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const group = this.queue;
    this.queue = [];
    this.queued = 0;
    if (group.length) void this.send(group, false).catch(() => {}); // errors went to each waiter
  }

  private async send(group: Waiting[], direct: boolean): Promise<unknown[]> {
    // Upstream ids: the position in this flush, so answers map back to their caller.
    const out: Array<Record<string, unknown>> = [];
    const owner: Array<[Waiting, number]> = [];
    for (const w of group) for (const c of w.calls) {
      owner.push([w, c.id]);
      out.push({ ...c, id: out.length });
    }
    let up: unknown;
    try {
      up = await this.upstream.call(out.length === 1 ? out[0] : out);
    } catch (e) {
      if (direct) throw e;
      // One caller's answer over the size cap fails the whole exchange: give each caller an exchange of its
      // own, so only a caller that asked for too much gets the error (calls that change state never share
      // an exchange, rpc.ts, so nothing is submitted twice).
      if (group.length > 1 && e instanceof UpstreamError && e.kind === 'too-large') return this.split(group);
      for (const w of group) w.reject(e);
      return [];
    }
    // A batch answered with one object (a node refusing the batch as a whole): the same, caller by caller.
    if (group.length > 1 && !Array.isArray(up)) return this.split(group);
    const answers = new Map<Waiting, unknown[]>(group.map((w) => [w, []]));
    const seen = new Set<number>();
    for (const a of Array.isArray(up) ? up : [up]) {
      const idx = (a as { id?: unknown } | null)?.id;
      if (typeof idx !== 'number' || !Number.isInteger(idx) || idx < 0 || idx >= owner.length || seen.has(idx)) continue;
      seen.add(idx);
      const [w, id] = owner[idx];
      answers.get(w)!.push({ ...(a as object), id });
    }
    if (direct) return answers.get(group[0])!;
    for (const w of group) w.resolve(answers.get(w)!);
    return [];
  }

  private split(group: Waiting[]): unknown[] {
    for (const w of group) void this.send([w], false).catch(() => {}); // errors went to the waiter
    return [];
  }
}
