/**
 * The provisioning console (PROTOCOL.md §6): newline-delimited JSON, one request
 * `{"id": n, "cmd": "...", ...}` a line, one reply `{"id": n, "ok": true, ...}` or
 * `{"id": n, "ok": false, "error": "<code>", "message": "..."}`. Portable: the
 * firmware feeds it serial bytes, the simulator TCP lines.
 *
 * Nothing here can print the identity key or an epoch key: replies are built only
 * from what a ConsoleTarget returns, and none of its methods hands out a secret.
 */
import { utf8Decode } from '../../lib/bytes.js';
import { IotkxError } from '../../lib/errors.js';

/** A line longer than this is refused unparsed (a provision request is ~1 KiB; NVS caps a value at 4000 B). */
export const MAX_LINE_CHARS = 4096;

export interface ConsoleTarget {
  identity(): Record<string, unknown>;
  provision(config: unknown): Record<string, unknown>;
  status(): Record<string, unknown>;
  factoryReset(confirm: unknown): Record<string, unknown>;
  reboot(): Record<string, unknown>;
  /** Set when the firmware refused to start: every command but `reboot` answers with it. */
  bootError?: { code: string; message: string };
}

const COMMANDS = ['identity', 'provision', 'status', 'factory-reset', 'reboot'] as const;

function errorReply(id: unknown, code: string, message: string): string {
  return JSON.stringify({ id, ok: false, error: code, message });
}

/** Answer one request line (always exactly one reply line). */
export function handleLine(target: ConsoleTarget, line: string): string {
  if (line.length > MAX_LINE_CHARS) return errorReply(null, 'line-too-long', `requests are at most ${MAX_LINE_CHARS} characters`);
  let req: Record<string, unknown>;
  try {
    req = JSON.parse(line);
  } catch {
    return errorReply(null, 'bad-request', 'not JSON');
  }
  if (req === null || typeof req !== 'object' || Array.isArray(req)) return errorReply(null, 'bad-request', 'expected a JSON object');
  const id = typeof req.id === 'number' || typeof req.id === 'string' ? req.id : null;
  const cmd = req.cmd;
  if (typeof cmd !== 'string' || !(COMMANDS as readonly string[]).includes(cmd)) {
    return errorReply(id, 'unknown-command', `cmd must be one of ${COMMANDS.join(', ')}`);
  }
  if (target.bootError && cmd !== 'reboot') return errorReply(id, target.bootError.code, target.bootError.message);
  try {
    let out: Record<string, unknown>;
    switch (cmd) {
      case 'identity': out = target.identity(); break;
      case 'provision':
        if (!('config' in req)) return errorReply(id, 'bad-request', 'provision needs a config');
        out = target.provision(req.config);
        break;
      case 'status': out = target.status(); break;
      case 'factory-reset': out = target.factoryReset(req.confirm); break;
      default: out = target.reboot();
    }
    return JSON.stringify({ id, ok: true, ...out });
  } catch (e) {
    if (e instanceof IotkxError) return errorReply(id, e.code, e.message);
    return errorReply(id, 'internal-error', String((e as Error)?.message ?? e));
  }
}

/** An unsolicited line (no id): the firmware says why it refused to start. */
export function eventLine(event: string, fields: Record<string, unknown>): string {
  return JSON.stringify({ event, ...fields });
}

/**
 * Splits a byte or text stream into lines (LF or CRLF; bytes are UTF-8, so a
 * non-ASCII SSID survives). A line that grows past MAX_LINE_CHARS is delivered
 * cut at that length plus one, so handleLine refuses it and memory stays bounded.
 */
export class LineSplitter {
  private bytes: number[] = [];
  private text = '';
  private overflow = false;
  constructor(private readonly onLine: (line: string) => void) {}

  private emit(line: string): void {
    const over = this.overflow;
    this.overflow = false;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (over) this.onLine('x'.repeat(MAX_LINE_CHARS + 1));
    else if (line.length > 0) this.onLine(line);
  }

  push(text: string): void {
    for (let i = 0; i < text.length; i++) {
      const ch = text[i];
      if (ch === '\n') { const line = this.text; this.text = ''; this.emit(line); }
      else if (this.text.length < MAX_LINE_CHARS * 4) this.text += ch;
      else this.overflow = true;
    }
  }

  pushBytes(chunk: Uint8Array): void {
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i];
      if (b === 0x0a) {
        let line: string;
        try { line = utf8Decode(Uint8Array.from(this.bytes)); } catch { line = '\u0000'; }
        this.bytes = [];
        this.emit(line);
      } else if (this.bytes.length < MAX_LINE_CHARS * 4) this.bytes.push(b);
      else this.overflow = true;
    }
  }
}
