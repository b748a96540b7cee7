/**
 * The loopback TCP side of a simulated device's §6 console (hosts/sim/device.ts, tools/sim-console.ts): one
 * JSON object a line in, the device's reply lines out, in order.
 *
 * A web page can make the browser connect to a loopback port and send an HTTP request there (a
 * cross-protocol POST): `POST / HTTP/1.1`, headers, a blank line, then a body the page chose, which may hold
 * `{"cmd":"provision",...}` on a line of its own. So the rule is strict: every line must be a JSON object;
 * the first line that is not one (an HTTP request line, a header, any other text) is answered with one
 * `bad-request` error and the connection is closed, and nothing after it on that connection reaches the
 * device. An HTTP request always starts with its request line, so its body is never read. A line longer
 * than `maxLine` closes the connection too (its tail is never taken for a line of its own).
 */
import type { Socket } from 'node:net';

export interface ConsoleSocketOptions {
  /** Longest request line, in characters. */
  maxLine: number;
}

/** Why a line is refused, or undefined when it is a JSON object. */
export function refuseLine(line: string): string | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return /^[A-Z]+ \S+ HTTP\/\d/.test(line) ? 'this is the device console (one JSON object a line), not an HTTP server' : 'not JSON';
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return 'expected a JSON object';
  return undefined;
}

const errorLine = (error: string, message: string) => JSON.stringify({ id: null, ok: false, error, message });

/** Serve one console connection: `handle` gets each well-formed line and returns the lines to write back. */
export function serveConsoleSocket(socket: Socket, handle: (line: string) => Promise<string[]>, opts: ConsoleSocketOptions): void {
  socket.on('error', () => undefined);
  socket.setEncoding('utf8');
  let buf = '';
  let closing = false;
  let chain = Promise.resolve();
  const write = (lines: string[]) => {
    if (!socket.destroyed) for (const l of lines) socket.write(`${l}\n`);
  };
  // Replies to the lines before it still go out first, then the error, then the end.
  const refuse = (error: string, message: string) => {
    closing = true;
    buf = '';
    socket.pause();
    chain = chain.then(() => {
      write([errorLine(error, message)]);
      socket.end();
      setTimeout(() => socket.destroy(), 1000).unref();
    });
  };
  socket.on('data', (chunk: string) => {
    if (closing) return;
    buf += chunk;
    let nl: number;
    while (!closing && (nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      if (!line.trim()) continue;
      if (line.length > opts.maxLine) return refuse('line-too-long', `requests are at most ${opts.maxLine} characters`);
      const why = refuseLine(line);
      if (why) return refuse('bad-request', `${why}; closing the connection`);
      chain = chain.then(async () => write(await handle(line))).catch((e: Error) => write([errorLine('internal-error', String(e?.message ?? e))]));
    }
    if (buf.length > opts.maxLine) refuse('line-too-long', `requests are at most ${opts.maxLine} characters`);
  });
}
