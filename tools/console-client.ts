/**
 * Client of the provisioning console (PROTOCOL.md §6): newline-delimited JSON over a serial port or a TCP
 * socket (`tcp://host:port`, the simulator's). Requests carry increasing ids; replies are matched by id, so an
 * unsolicited line (`{"event": ...}`) or boot chatter on a serial line never answers a request.
 *
 * Errors are ConsoleError with a stable code:
 *   bad-port        not a console address (e.g. host:port without tcp://: the fix is named);
 *   connect-failed  nothing at that port (refused, no such device, permission);
 *   timeout         no reply in time (after the retries);
 *   not-iotkx       the other end talks, but not iotkx console JSON (garbage, other JSON, HTTP…);
 *   closed          the connection closed before the reply;
 *   device-error    the device answered `ok: false` (its code in `deviceCode`, e.g. already-provisioned).
 */
import { connect as tcpConnect, type Socket } from 'node:net';
import { addressHex, addressOf } from '../lib/address.js';
import { hexToBytes } from '../lib/bytes.js';

export type ConsoleErrorCode = 'bad-port' | 'connect-failed' | 'timeout' | 'not-iotkx' | 'closed' | 'device-error';

export class ConsoleError extends Error {
  constructor(readonly code: ConsoleErrorCode, message: string, readonly deviceCode?: string, readonly reply?: Record<string, unknown>) {
    super(message);
  }
}

export interface ConsoleOptions {
  /** Per-attempt reply deadline (ms, default 5000). */
  timeoutMs?: number;
  /** Extra attempts after a timeout for commands that are safe to repeat (default 2). */
  retries?: number;
  /** Serial speed (default 115200, the ESP32 console's). */
  baudRate?: number;
  /** Connection deadline (ms, default 5000). */
  connectTimeoutMs?: number;
}

/** identity and status only read: repeating them after a lost reply is harmless. provision, factory-reset and reboot are never repeated blindly. */
const REPEATABLE = new Set(['identity', 'status']);
/** A line longer than this is not console output (§6 replies are short); it is dropped. */
const MAX_LINE = 16 * 1024;

interface Link {
  write(text: string): void;
  close(): void;
  onData(fn: (chunk: Buffer) => void): void;
  onClose(fn: (why?: string) => void): void;
}

interface Pending {
  resolve(v: Record<string, unknown>): void;
  reject(e: Error): void;
}

/**
 * A `host:port` given where a console is expected is a simulator console without its scheme: opening it as
 * a serial port would only say "No such file or directory". Returns the tcp:// form, else undefined.
 * (COM3, /dev/ttyUSB0 and tcp://… never match.)
 */
export function tcpSuggestion(port: string): string | undefined {
  if (port.startsWith('tcp://')) return undefined;
  const m = /^(?:[a-z][a-z0-9+.-]*:\/\/)?((?:[a-z0-9.-]+|\[[0-9a-f:.]+\]):[0-9]{1,5})\/?$/i.exec(port);
  return m ? `tcp://${m[1]}` : undefined;
}

export function describePort(port: string): string {
  return port.startsWith('tcp://') ? `console ${port}` : `serial port ${port}`;
}

async function openTcp(url: string, timeoutMs: number): Promise<Link> {
  const m = /^tcp:\/\/([^:/]+|\[[^\]]+\]):(\d{1,5})\/?$/.exec(url);
  if (!m) throw new ConsoleError('connect-failed', `bad console address ${url}: expected tcp://host:port`);
  const host = m[1].replace(/^\[|\]$/g, '');
  const port = Number(m[2]);
  const sock: Socket = await new Promise((resolve, reject) => {
    const s = tcpConnect({ host, port });
    const t = setTimeout(() => { s.destroy(); reject(new ConsoleError('connect-failed', `no answer from ${url} within ${timeoutMs} ms`)); }, timeoutMs);
    s.once('connect', () => { clearTimeout(t); resolve(s); });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      const why = e.code === 'ECONNREFUSED' ? 'nothing is listening there (is the simulator running? `iotkx devices` lists consoles)' : e.message;
      reject(new ConsoleError('connect-failed', `cannot connect to ${url}: ${why}`));
    });
  });
  sock.setNoDelay(true);
  return {
    write: (t) => void sock.write(t),
    close: () => sock.destroy(),
    onData: (fn) => void sock.on('data', fn),
    onClose: (fn) => {
      sock.on('error', (e) => fn(e.message));
      sock.on('close', () => fn());
    },
  };
}

async function openSerial(path: string, baudRate: number): Promise<Link> {
  let SerialPort: typeof import('serialport').SerialPort;
  try {
    ({ SerialPort } = await import('serialport'));
  } catch (e) {
    throw new ConsoleError('connect-failed', `serial support unavailable (the serialport package did not load: ${(e as Error).message}); use the simulator's tcp:// console or reinstall with \`npm ci\``);
  }
  const port = new SerialPort({ path, baudRate, autoOpen: false, hupcl: false });
  await new Promise<void>((resolve, reject) => port.open((err) => {
    if (!err) return resolve();
    const hint = /EACCES|Permission/i.test(err.message) ? ' (permission denied: on Linux add yourself to the dialout group and log in again)'
      : /ENOENT|No such file/i.test(err.message) ? ' (no such port: `iotkx devices` lists them)' : '';
    reject(new ConsoleError('connect-failed', `cannot open ${path}: ${err.message}${hint}`));
  }));
  // DTR and RTS the same level: on ESP32 boards' auto-reset circuit that leaves EN and IO0 high (run, not reset).
  await new Promise<void>((resolve) => port.set({ dtr: false, rts: false }, () => resolve()));
  return {
    write: (t) => void port.write(t),
    close: () => { if (port.isOpen) port.close(); },
    onData: (fn) => void port.on('data', fn),
    onClose: (fn) => {
      port.on('error', (e) => fn(e.message));
      port.on('close', () => fn());
    },
  };
}

export class ConsoleClient {
  private nextId = 1;
  private buf = '';
  private readonly pending = new Map<number, Pending>();
  /** Recent lines that were not a reply (boot chatter, events, garbage), for error messages. */
  private readonly stray: string[] = [];
  private closedWhy: string | undefined;
  private closed = false;
  /** Unsolicited `{"event": ...}` lines (e.g. boot-failed). */
  readonly events: Record<string, unknown>[] = [];

  private constructor(readonly port: string, private readonly link: Link, private readonly opts: Required<ConsoleOptions>) {
    link.onData((chunk) => this.onData(chunk));
    link.onClose((why) => {
      if (why) this.closedWhy = why;
      if (this.closed) return;
      this.closed = true;
      for (const p of this.pending.values()) p.reject(this.closedError());
      this.pending.clear();
    });
  }

  static async open(port: string, opts: ConsoleOptions = {}): Promise<ConsoleClient> {
    const o: Required<ConsoleOptions> = { timeoutMs: 5000, retries: 2, baudRate: 115200, connectTimeoutMs: 5000, ...opts };
    const tcp = tcpSuggestion(port);
    if (tcp) throw new ConsoleError('bad-port', `${port} is not a serial port: a simulator console is addressed as ${tcp} (e.g. \`iotkx pair --port ${tcp}\`)`);
    const link = port.startsWith('tcp://') ? await openTcp(port, o.connectTimeoutMs) : await openSerial(port, o.baudRate);
    const c = new ConsoleClient(port, link, o);
    // A newline first ends any partial line the device holds from before we connected.
    link.write('\n');
    return c;
  }

  private closedError(): ConsoleError {
    if (this.stray.length) return this.notIotkx('closed the connection');
    return new ConsoleError('closed', `${describePort(this.port)} closed the connection${this.closedWhy ? ` (${this.closedWhy})` : ''}`);
  }

  private notIotkx(what: string): ConsoleError {
    const sample = this.stray.slice(-3).map((l) => JSON.stringify(l.length > 80 ? `${l.slice(0, 80)}…` : l)).join(', ');
    return new ConsoleError('not-iotkx', `${describePort(this.port)} ${what} without an iotkx console reply: is this iotkx firmware? It sent: ${sample}`);
  }

  private onData(chunk: Buffer): void {
    this.buf += chunk.toString('utf8');
    let i: number;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, i).replace(/\r$/, '');
      this.buf = this.buf.slice(i + 1);
      if (line.trim()) this.onLine(line);
    }
    if (this.buf.length > MAX_LINE) {
      this.remember(this.buf);
      this.buf = '';
    }
  }

  private remember(line: string): void {
    this.stray.push(line);
    if (this.stray.length > 10) this.stray.shift();
  }

  private onLine(line: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      this.remember(line);
      return;
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) return this.remember(line);
    const m = msg as Record<string, unknown>;
    if (typeof m.event === 'string' && m.id === undefined) {
      this.events.push(m);
      return;
    }
    const p = typeof m.id === 'number' ? this.pending.get(m.id) : undefined;
    if (!p || typeof m.ok !== 'boolean') return this.remember(line);
    this.pending.delete(m.id as number);
    p.resolve(m);
  }

  private once(cmd: string, fields: Record<string, unknown>, timeoutMs: number): Promise<Record<string, unknown>> {
    if (this.closed) return Promise.reject(this.closedError());
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.pending.delete(id);
        reject(new ConsoleError('timeout', `no reply to "${cmd}" from ${describePort(this.port)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => { clearTimeout(t); resolve(v); },
        reject: (e) => { clearTimeout(t); reject(e); },
      });
      this.link.write(`${JSON.stringify({ ...fields, id, cmd })}\n`);
    });
  }

  /**
   * Sends `cmd` and returns the reply's fields (ok: true). Read-only commands are repeated after a timeout;
   * an `ok: false` reply becomes a ConsoleError('device-error') carrying the device's code.
   */
  async request(cmd: string, fields: Record<string, unknown> = {}, opts: { timeoutMs?: number; retries?: number } = {}): Promise<Record<string, unknown>> {
    const timeoutMs = opts.timeoutMs ?? this.opts.timeoutMs;
    const attempts = 1 + (REPEATABLE.has(cmd) ? (opts.retries ?? this.opts.retries) : 0);
    let last: unknown;
    for (let a = 0; a < attempts; a++) {
      try {
        const reply = await this.once(cmd, fields, timeoutMs);
        if (reply.ok !== true) {
          const code = typeof reply.error === 'string' ? reply.error : 'unknown';
          const boot = this.events.find((e) => e.event === 'boot-failed');
          throw new ConsoleError('device-error', `device refused "${cmd}": ${code}${typeof reply.message === 'string' ? `: ${reply.message}` : ''}${boot ? ` (boot failed: ${String(boot.error)})` : ''}`, code, reply);
        }
        return reply;
      } catch (e) {
        last = e;
        if (!(e instanceof ConsoleError) || e.code !== 'timeout') throw e;
      }
    }
    // Lines came back but none was a reply: the other end is not an iotkx console.
    if (this.stray.length) throw this.notIotkx(`answered "${cmd}" ${attempts} time(s)`);
    throw last;
  }

  close(): void {
    this.closed = true;
    for (const p of this.pending.values()) p.reject(new ConsoleError('closed', 'console closed'));
    this.pending.clear();
    this.link.close();
  }
}

/** §6 identity, checked: the address must be the one the public key gives, else this is not trustworthy iotkx firmware. */
export interface Identity {
  address: string;
  publicKey: string;
  firmware: string;
  state: string;
}

export async function readIdentity(c: ConsoleClient): Promise<Identity> {
  const r = await c.request('identity');
  const { address, publicKey, firmware, state } = r as Record<string, unknown>;
  if (typeof address !== 'string' || typeof publicKey !== 'string' || typeof state !== 'string') {
    throw new ConsoleError('not-iotkx', `${describePort(c.port)} answered "identity" without address, publicKey and state: not iotkx firmware?`);
  }
  let derived: string;
  try {
    derived = addressHex(addressOf(hexToBytes(publicKey)));
  } catch {
    throw new ConsoleError('not-iotkx', `${describePort(c.port)} sent an identity whose publicKey is not a 65-byte hex point`);
  }
  if (derived !== address.toLowerCase()) {
    throw new ConsoleError('not-iotkx', `${describePort(c.port)} sent an identity whose address ${address} is not its publicKey's (${derived})`);
  }
  return { address: derived, publicKey: publicKey.toLowerCase(), firmware: typeof firmware === 'string' ? firmware : 'unknown', state };
}
