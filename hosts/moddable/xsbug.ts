/**
 * A minimal xsbug: the debugger side of the xsbug protocol (the SDK's tools/xsbug-log speaks the same), so a test
 * hears what a Moddable debug build says. A debug XS machine connects to $XSBUG_HOST:$XSBUG_PORT and sends
 * `<xsbug>…</xsbug>` messages: `<login>`, `<log>` (trace), `<break>` (an exception, with breakpoint "exceptions"
 * set), `<instruments>` (names and units, once) and `<samples>` (values, every second in -d/-i builds). We answer
 * `<set-all-breakpoints>` and `<go/>`: the machine never stays stopped.
 */
import net from 'node:net';

export interface Break { path: string; line: number; message: string }
export type Sample = Record<string, number>;

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
function decode(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (m, e: string) => {
    if (e.startsWith('#x')) return String.fromCodePoint(parseInt(e.slice(2), 16));
    if (e.startsWith('#')) return String.fromCodePoint(parseInt(e.slice(1), 10));
    return ENTITIES[e] ?? m;
  });
}
function attrs(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of s.matchAll(/([a-zA-Z-]+)="([^"]*)"/g)) out[m[1]] = decode(m[2]);
  return out;
}

export class XsbugListener {
  /** Everything traced, in order. */
  log = '';
  breaks: Break[] = [];
  /** Instrument samples as they arrived (name → value). */
  samples: Sample[] = [];
  logins = 0;
  private names: string[] = [];
  private waiters = new Set<() => void>();
  private sockets = new Set<net.Socket>();

  private constructor(private readonly server: net.Server, readonly port: number) {
    server.on('connection', (s) => this.session(s));
  }

  static async start(): Promise<XsbugListener> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', () => resolve()); });
    return new XsbugListener(server, (server.address() as net.AddressInfo).port);
  }

  /** Resolves once `pred` holds over what was heard (checked on every message). */
  waitFor<T>(what: string, pred: () => T | undefined | false, timeoutMs = 60_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const v = pred();
        if (v) { this.waiters.delete(check); clearTimeout(timer); resolve(v); }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`xsbug: timed out waiting for ${what}; log so far:\n${this.log.slice(-3000)}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private session(s: net.Socket): void {
    this.sockets.add(s);
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (chunk: string) => {
      buf += chunk;
      for (;;) {
        const start = buf.indexOf('<xsbug>');
        const end = buf.indexOf('</xsbug>', start);
        if (start < 0 || end < 0) break;
        const body = buf.slice(start + 7, end);
        buf = buf.slice(end + 8);
        this.message(s, body);
      }
      for (const w of [...this.waiters]) w();
    });
    s.on('error', () => undefined);
    s.on('close', () => this.sockets.delete(s));
  }

  private message(s: net.Socket, body: string): void {
    const send = (x: string) => { if (!s.destroyed) s.write(`\r\n${x}\r\n`); };
    const login = /<login([^>]*)\/>/.exec(body);
    if (login) {
      this.logins++;
      send('<set-all-breakpoints><breakpoint path="exceptions" line="0" id="@0"/></set-all-breakpoints>');
      send('<go/>');
    }
    for (const m of body.matchAll(/<log([^>]*)>([\s\S]*?)<\/log>/g)) this.log += decode(m[2]);
    for (const m of body.matchAll(/<break([^>]*)>([\s\S]*?)<\/break>/g)) {
      const a = attrs(m[1]);
      const b = { path: a.path ?? '', line: Number(a.line ?? 0), message: decode(m[2]) };
      this.breaks.push(b);
      this.log += `# break: ${b.path}:${b.line}: ${b.message}\n`;
      send('<go/>');
    }
    const inst = /<instruments>([\s\S]*?)<\/instruments>/.exec(body);
    if (inst) this.names = [...inst[1].matchAll(/<instrument([^>]*)\/>/g)].map((m) => attrs(m[1]).name ?? '');
    for (const m of body.matchAll(/<samples>([^<]*)<\/samples>/g)) {
      const values = m[1].split(',').map(Number);
      const sample: Sample = {};
      this.names.forEach((n, i) => { sample[n] = values[i]; });
      this.samples.push(sample);
    }
  }
}
