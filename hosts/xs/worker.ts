/**
 * Drives an XS engine: the `xsnap-worker` binary that the @agoric/xsnap package
 * compiles from Moddable's XS at install. We speak its netstring protocol on fds
 * 3/4 directly rather than through the package's JS wrapper, which needs SES
 * (`import 'ses'`) loaded into the host realm; this driver needs nothing but Node.
 *
 * Protocol (xsnap-worker.c): to the worker `e<code>` evaluate, `?<bytes>` command,
 * `w<path>` write snapshot, `q` quit, `/<bytes>` answer to a guest's issueCommand;
 * from the worker `.<meter json>\x01<reply>` ok, `!<text>` error, `?<bytes>` guest query.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { IotkxError } from '../../lib/errors.js';
import { ROOT } from './bundle.js';
import { FREEZE_REALM } from './freeze.js';
import { decodeMessage, encodeMessage, type Reply } from './wire.js';

export interface Meter {
  /** Deterministic work count of the delivery (bytecodes + size-weighted built-ins). */
  compute: number;
  allocate: number;
  /** Live slots after the delivery (32 B each on this 64-bit build, 16 B on the ESP32). */
  currentHeapCount: number;
}

export type HostMethods = Record<string, (...args: any[]) => unknown | Promise<unknown>>;

export interface WorkerOptions {
  name?: string;
  /** Functions the guest may call with hostCall(name, ...args). */
  host?: HostMethods;
  /** Keep xsnap's extra globals (default: remove them, see NON_DEVICE_GLOBALS). */
  keepNonDeviceGlobals?: boolean;
  /** Where the worker's stdout/stderr (print, trace) go. */
  output?: 'ignore' | 'inherit';
}

/** Globals xsnap has that a Moddable manifest build lacks (MODDABLE.md §3, XS-NOTES.md). */
export const NON_DEVICE_GLOBALS = ['TextEncoder', 'TextDecoder', 'base64', 'crypto', 'setImmediate', 'performance'];

export function xsnapBinary(): string {
  const platform = os.type() === 'Darwin' ? 'mac' : 'lin';
  const bin = path.join(ROOT, 'node_modules/@agoric/xsnap/xsnap-native/xsnap/build/bin', platform, 'release/xsnap-worker');
  if (!fs.existsSync(bin)) {
    throw new Error(`XS engine not found at ${bin}: run \`npm install\` (it compiles @agoric/xsnap; allowScripts in package.json must list it)`);
  }
  return bin;
}

type Pending = { resolve: (m: Buffer) => void; reject: (e: Error) => void };

export class XsWorker {
  private buf = Buffer.alloc(0);
  private waiting: Pending | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private exited: Error | undefined;

  private constructor(private readonly child: ChildProcess, readonly name: string, private readonly host: HostMethods) {
    child.stdio[4]!.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      this.drain();
    });
    child.once('exit', (code, signal) => {
      this.exited = new Error(`XS worker ${name} exited (${signal ?? `code ${code}`})`);
      this.waiting?.reject(this.exited);
      this.waiting = undefined;
    });
    child.stdio[3]!.on('error', () => undefined);
  }

  static async start(opts: WorkerOptions = {}): Promise<XsWorker> {
    const name = opts.name ?? 'iotkx-xs';
    const out = opts.output ?? 'inherit';
    const child = spawn(xsnapBinary(), [name], { stdio: ['ignore', out, out, 'pipe', 'pipe'] });
    const worker = new XsWorker(child, name, opts.host ?? {});
    if (!opts.keepNonDeviceGlobals) {
      await worker.evaluate(NON_DEVICE_GLOBALS.map((g) => `delete globalThis.${g};`).join(''));
    }
    return worker;
  }

  /** Run a script (a bundle) in the worker's global scope. */
  async evaluate(code: string): Promise<Meter> {
    return (await this.deliver(Buffer.concat([Buffer.from('e'), Buffer.from(code)]))).meter;
  }

  /** Freeze the built-ins as the Moddable linker does after preload (hosts/xs/freeze.ts); call after loading. */
  async freezeRealm(): Promise<void> {
    await this.evaluate(FREEZE_REALM);
  }

  /** Call a method the guest registered with serve(). */
  async call(method: string, ...args: unknown[]): Promise<any> {
    return (await this.callMetered(method, ...args)).value;
  }

  async callMetered(method: string, ...args: unknown[]): Promise<{ value: any; meter: Meter }> {
    const { reply, meter } = await this.deliver(Buffer.concat([Buffer.from('?'), encodeMessage({ m: method, a: args })]));
    if (reply.length === 0) throw new Error(`XS worker ${this.name}: ${method} did not settle within its delivery`);
    const decoded = decodeMessage(reply) as Reply;
    if ('error' in decoded) {
      const { name, code, message } = decoded.error;
      const err = code ? new IotkxError(code, message) : new Error(message);
      if (!code) err.name = name;
      throw err;
    }
    return { value: decoded.ok, meter };
  }

  /** Bytes of a heap snapshot taken after gc(): what the engine retains. */
  async snapshotSize(): Promise<number> {
    await this.evaluate('gc()');
    const file = path.join(os.tmpdir(), `iotkx-xs-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.xss`);
    try {
      await this.deliver(Buffer.from(`w${file}`));
      return fs.statSync(file).size;
    } finally {
      fs.rmSync(file, { force: true });
    }
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const done = new Promise((r) => this.child.once('exit', r));
    this.write(Buffer.from('q'));
    (this.child.stdio[3] as import("node:stream").Writable).end();
    await done;
  }

  /** Kill the engine at once, as a power cut would. */
  async kill(): Promise<void> {
    if (this.exited) return;
    const done = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await done;
  }

  private deliver(msg: Buffer): Promise<{ reply: Buffer; meter: Meter }> {
    const run = this.queue.then(async () => {
      if (this.exited) throw this.exited;
      const answer = new Promise<Buffer>((resolve, reject) => { this.waiting = { resolve, reject }; });
      this.write(msg);
      return this.settle(await answer);
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private settle(m: Buffer): { reply: Buffer; meter: Meter } {
    if (m[0] === 0x2e /* . */) {
      const sep = m.indexOf(1, 1);
      const meterJson = JSON.parse(m.subarray(1, sep).toString());
      return {
        reply: m.subarray(sep + 1),
        meter: { compute: meterJson.compute, allocate: meterJson.allocate, currentHeapCount: meterJson.currentHeapCount },
      };
    }
    if (m[0] === 0x21 /* ! */) throw new Error(`XS worker ${this.name}: uncaught exception: ${m.subarray(1).toString()}`);
    throw new Error(`XS worker ${this.name}: protocol error`);
  }

  private write(payload: Buffer): void {
    (this.child.stdio[3] as import("node:stream").Writable).write(Buffer.concat([Buffer.from(`${payload.length}:`), payload, Buffer.from(',')]));
  }

  /** Split netstrings off the input; answer guest queries, hand the rest to the waiter. */
  private drain(): void {
    for (;;) {
      const colon = this.buf.indexOf(0x3a);
      if (colon < 0) return;
      const len = Number(this.buf.subarray(0, colon).toString());
      if (this.buf.length < colon + 1 + len + 1) return;
      const msg = this.buf.subarray(colon + 1, colon + 1 + len);
      this.buf = this.buf.subarray(colon + 1 + len + 1);
      if (msg[0] === 0x3f /* ? */) void this.answerGuest(Buffer.from(msg.subarray(1)));
      else {
        const w = this.waiting;
        this.waiting = undefined;
        w?.resolve(Buffer.from(msg));
      }
    }
  }

  private async answerGuest(req: Buffer): Promise<void> {
    let reply: Reply;
    try {
      const { m, a } = decodeMessage(req);
      const fn = this.host[m];
      if (!fn) throw new Error(`no such host method: ${m}`);
      const ok = await fn(...a);
      reply = { ok: ok === undefined ? null : ok };
    } catch (e: any) {
      reply = { error: { name: e?.name ?? 'Error', code: e?.code, message: String(e?.message ?? e) } };
    }
    this.write(Buffer.concat([Buffer.from('/'), encodeMessage(reply)]));
  }
}
