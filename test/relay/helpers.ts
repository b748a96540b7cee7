// Test helpers for the relay: plain HTTP calls, raw sockets for hostile clients, and an
// anvil we can kill and bring back on the same port.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { anvilBinary, freePort } from '../../hosts/chain/anvil.js';

export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: any;
}

/** One HTTP request on a fresh connection (no pooling surprises); body as given. */
export function request(url: string, method: string, body?: string | Uint8Array, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: any;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export const postJson = (url: string, value: unknown) =>
  request(url, 'POST', typeof value === 'string' ? value : JSON.stringify(value), { 'content-type': 'application/json' });

let nextId = 1;
/** A single JSON-RPC call; returns the whole response object. */
export async function call(url: string, method: string, params: unknown[] = []): Promise<any> {
  const r = await postJson(url, { jsonrpc: '2.0', id: nextId++, method, params });
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${r.text}`);
  return r.json;
}

/** Raw bytes on a TCP socket; resolves with everything the server sent before closing (or after `waitMs`). */
export function rawExchange(port: number, chunks: Array<string | Buffer>, opts: { gapMs?: number; waitMs?: number } = {}): Promise<{ text: string; closed: boolean; ms: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const sock = net.connect(port, '127.0.0.1');
    let text = '';
    let closed = false;
    const done = () => resolve({ text, closed, ms: Date.now() - started });
    const timer = setTimeout(() => {
      sock.destroy();
      done();
    }, opts.waitMs ?? 5000);
    sock.on('data', (d) => (text += d.toString('latin1')));
    sock.on('error', () => {});
    sock.on('close', () => {
      closed = true;
      clearTimeout(timer);
      done();
    });
    (async () => {
      for (const c of chunks) {
        if (sock.destroyed) return;
        sock.write(c);
        if (opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
      }
    })();
  });
}

/** Anvil on a fixed loopback port, so it can be killed and restarted where the relay expects it. */
export class PortAnvil {
  private child?: ChildProcess;
  constructor(readonly port: number, readonly chainId = 31337) {}

  static async create(chainId = 31337): Promise<PortAnvil> {
    return new PortAnvil(await freePort(), chainId);
  }

  get rpcUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.child = spawn(anvilBinary(), ['--host', '127.0.0.1', '--port', String(this.port), '--chain-id', String(this.chainId), '--silent'], { stdio: 'ignore' });
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        const r = await call(this.rpcUrl, 'eth_chainId');
        if (r.result) return;
      } catch {
        /* not up yet */
      }
      if (Date.now() > deadline) throw new Error('anvil did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGKILL');
    });
  }
}

/** The address nobody holds a key for, as a stand-in "other contract". */
export const OTHER = '0x00000000000000000000000000000000000000aa';

/** anvil mines right after eth_sendRawTransaction answers, not before: poll for the receipt. */
export async function waitReceipt(url: string, hash: string): Promise<any> {
  for (let i = 0; i < 200; i++) {
    const r = await call(url, 'eth_getTransactionReceipt', [hash]);
    if (r.error) throw new Error(JSON.stringify(r.error));
    if (r.result) return r.result;
    await new Promise((res) => setTimeout(res, 20));
  }
  throw new Error(`no receipt for ${hash}`);
}
