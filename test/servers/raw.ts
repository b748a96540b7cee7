// Raw HTTP/1.1 over node:net for hostile-client tests: bytes exactly as given, the first answer parsed.
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

export interface RawAnswer {
  /** 0 when the server closed (or the wait ended) before a status line arrived. */
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The server closed the connection (FIN or RST) before `waitMs`. */
  closed: boolean;
  /** A socket error seen (ECONNRESET, EPIPE...), if any. */
  error?: string;
  /** Bytes handed to the socket before the exchange ended. */
  written?: number;
}

/** Parse the first HTTP response in `text`; undefined while it is incomplete. */
export function parseResponse(text: string): Omit<RawAnswer, 'closed'> | undefined {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  if (!m) return { status: -1, headers: {}, body: text };
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  const len = Number(headers['content-length'] ?? '0');
  const body = text.slice(end + 4);
  if (Buffer.byteLength(body, 'latin1') < len) return undefined;
  return { status: Number(m[1]), headers, body: body.slice(0, len) };
}

/**
 * Write `data` on a fresh connection (all at once, or in `chunks` with `gapMs` between them) and resolve
 * with the first response (`untilClose`: once the server has closed the connection too), or with what was
 * seen when the server closed or `waitMs` ran out. `readAfterWrite`: read nothing until every byte is
 * written, and then not for `readDelayMs` more (a client busy sending over a slow link, as a device's
 * single-threaded HTTP stack is).
 */
export function rawRequest(port: number, data: string | Buffer | Array<string | Buffer>, opts: { host?: string; localAddress?: string; gapMs?: number; waitMs?: number; untilClose?: boolean; readAfterWrite?: boolean; readDelayMs?: number } = {}): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: opts.host ?? '127.0.0.1', localAddress: opts.localAddress });
    let text = '';
    let error: string | undefined;
    let settled = false;
    let written = 0;
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      const r = parseResponse(text);
      resolve(r ? { ...r, closed, error, written } : { status: 0, headers: {}, body: text, closed, error, written });
    };
    const timer = setTimeout(() => finish(false), opts.waitMs ?? 5000);
    sock.on('data', (d) => {
      text += d.toString('latin1');
      if (!opts.untilClose && parseResponse(text)) finish(false);
    });
    sock.on('error', (e: NodeJS.ErrnoException) => { error = e.code ?? e.message; });
    sock.on('close', () => finish(true));
    const parts = Array.isArray(data) ? data : [data];
    if (opts.readAfterWrite) sock.pause();
    void (async () => {
      for (const p of parts) {
        if (sock.destroyed || settled) return;
        const bytes = typeof p === 'string' ? Buffer.from(p, 'latin1') : p;
        written += bytes.length;
        const more = sock.write(bytes);
        if (!more && opts.readAfterWrite) await new Promise((r) => { sock.once('drain', r); sock.once('close', r); });
        if (opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
      }
      if (opts.readAfterWrite) sock.write('', () => setTimeout(() => sock.resume(), opts.readDelayMs ?? 0));
    })();
  });
}

/** A socket held open (connected, optionally having sent `data`), for connection-cap tests. */
export function holdOpen(port: number, opts: { host?: string; localAddress?: string; data?: string } = {}): Promise<{ sock: net.Socket; closed: Promise<void>; received(): string }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: opts.host ?? '127.0.0.1', localAddress: opts.localAddress });
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    let text = '';
    // Read whatever comes (else the server's FIN is never seen and 'close' never fires).
    sock.on('data', (d) => (text += d.toString('latin1')));
    sock.on('error', () => undefined);
    sock.once('connect', () => {
      if (opts.data) sock.write(opts.data);
      resolve({ sock, closed, received: () => text });
    });
    sock.once('error', reject);
  });
}

export interface HostProcess {
  url: string;
  port: number;
  child: ChildProcess;
  /** Exit code or signal once the process has exited, else null. */
  exited(): string | null;
  stderr(): string;
  stop(): Promise<void>;
}

/** Start test/servers/host-process.ts in a child process (so a crash is an exit, as under `npm start`). */
export function startHostProcess(kind: 'relay' | 'receiver', options: Record<string, unknown> = {}): Promise<HostProcess> {
  // Node itself with tsx's loader, not the `tsx` wrapper: the wrapper runs the script in a grandchild that a
  // SIGKILL of the wrapper would leave running. stdin is a pipe the host watches: if this process dies, it exits.
  const root = join(__dirname, '..', '..');
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'host-process.ts'), kind, JSON.stringify(options)], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let exit: string | null = null;
  child.on('exit', (code, signal) => { exit = `exit ${code ?? signal}`; });
  child.stderr!.on('data', (d) => { err += d; });
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      const { url } = JSON.parse(out.slice(0, nl));
      resolve({
        url,
        port: Number(new URL(url).port),
        child,
        exited: () => exit,
        stderr: () => err,
        stop: () => new Promise<void>((r) => {
          if (exit !== null) return r();
          child.once('exit', () => r());
          child.kill('SIGKILL');
        }),
      });
    });
    child.once('exit', (code) => reject(new Error(`${kind} exited (${code}) before listening: ${err}`)));
  });
}
