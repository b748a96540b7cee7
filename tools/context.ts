/**
 * Where the chain, relay and receiver are, and how the CLI talks back.
 * Each setting comes from, in order: its flag, its environment variable, the join file `npm start` writes
 * (`.iotkx/run/system.json`, or `--system <file>` / IOTKX_SYSTEM), then the deployment record
 * (`.iotkx/deployment.json`, hosts/chain/deploy.ts) for the chain and contract.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import { getAddress, isAddress, type Address, type Hex } from 'viem';
import { readDeployment } from '../hosts/chain/deploy.js';
import { CliError, EXIT, printed, usageError } from './errors.js';

export const DEFAULT_SYSTEM_FILE = '.iotkx/run/system.json';
export const DEFAULT_DEPLOYMENT_FILE = '.iotkx/deployment.json';
export const DEFAULT_RECEIVER_KEY_FILE = '.iotkx/receiver/keys.json';

/** Options every command accepts (program-level, read with optsWithGlobals()). */
export interface GlobalOpts {
  system?: string;
  deployment?: string;
  json?: boolean;
  rpcUrl?: string;
  chainId?: string;
  contract?: string;
  relayUrl?: string;
  receiverUrl?: string;
  receiver?: string;
  operatorKeyFile?: string;
  receiverKeyFile?: string;
}

export interface Settings {
  rpcUrl?: string;
  chainId?: number;
  contract?: Address;
  /** Relay base URL (…/rpc is its JSON-RPC endpoint, §9). */
  relayUrl?: string;
  receiverUrl?: string;
  receiverAddress?: Address;
  operatorKeyFile?: string;
  receiverKeyFile?: string;
  /** The block the contract was deployed in (where its event history starts), if known. */
  deploymentBlock?: number;
  /** The join file that was read, if any. */
  systemFile?: string;
  /** Simulator consoles a join file lists (helper code may add them), as port specs. */
  consoles?: { name?: string; port: string; address?: string }[];
}

function readJson(path: string, what: string): Record<string, any> {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw usageError(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
}

function address(v: string | undefined, what: string): Address | undefined {
  if (v === undefined || v === '') return undefined;
  if (!isAddress(v, { strict: false })) throw usageError(`${what}: ${JSON.stringify(v)} is not an address`);
  return getAddress(v);
}

export function resolveSettings(o: GlobalOpts, env: NodeJS.ProcessEnv = process.env): Settings {
  const explicitSystem = o.system ?? env.IOTKX_SYSTEM;
  const systemFile = explicitSystem ?? DEFAULT_SYSTEM_FILE;
  let sys: Record<string, any> = {};
  if (explicitSystem && !existsSync(explicitSystem)) throw usageError(`join file ${explicitSystem} does not exist`, 'start the system with `npm start` (it writes .iotkx/run/system.json) or pass the services with flags');
  const haveSystem = existsSync(systemFile);
  if (haveSystem) sys = readJson(systemFile, 'join file');
  const depFile = o.deployment ?? env.IOTKX_DEPLOYMENT ?? DEFAULT_DEPLOYMENT_FILE;
  let dep: { rpcUrl?: string; chainId?: number; address?: string; block?: number } = {};
  if ((o.deployment || env.IOTKX_DEPLOYMENT) && !existsSync(depFile)) throw usageError(`deployment record ${depFile} does not exist`);
  if (existsSync(depFile)) {
    try {
      dep = readDeployment(depFile);
    } catch (e) {
      throw usageError((e as Error).message);
    }
  }
  const chainIdText = o.chainId ?? env.IOTKX_CHAIN_ID;
  let chainId: number | undefined = sys.chainId ?? dep.chainId;
  if (chainIdText !== undefined) {
    if (!/^[1-9][0-9]*$/.test(chainIdText)) throw usageError(`--chain-id must be a positive integer, not ${JSON.stringify(chainIdText)}`);
    chainId = Number(chainIdText);
  }
  const strip = (u: string | undefined) => (u ? u.replace(/\/+$/, '') : u);
  return {
    rpcUrl: o.rpcUrl ?? env.IOTKX_RPC_URL ?? sys.rpcUrl ?? dep.rpcUrl,
    chainId,
    contract: address(o.contract ?? env.IOTKX_CONTRACT ?? sys.contract ?? dep.address, 'contract'),
    relayUrl: strip(o.relayUrl ?? env.IOTKX_RELAY_URL ?? sys.relayUrl)?.replace(/\/rpc$/, ''),
    receiverUrl: strip(o.receiverUrl ?? env.IOTKX_RECEIVER_URL ?? sys.receiverUrl),
    receiverAddress: address(o.receiver ?? env.IOTKX_RECEIVER ?? sys.receiverAddress, 'receiver'),
    operatorKeyFile: o.operatorKeyFile ?? env.IOTKX_OPERATOR_KEY_FILE ?? sys.operatorKeyFile,
    receiverKeyFile: o.receiverKeyFile ?? env.IOTKX_RECEIVER_KEY_FILE ?? sys.receiverKeyFile,
    deploymentBlock: [sys.deploymentBlock, dep.block].find((b) => Number.isInteger(b) && b >= 0),
    systemFile: haveSystem ? systemFile : undefined,
    consoles: Array.isArray(sys.consoles) ? sys.consoles : undefined,
  };
}

const SOURCES: Record<string, string> = {
  rpcUrl: '--rpc-url or IOTKX_RPC_URL',
  chainId: '--chain-id or IOTKX_CHAIN_ID',
  contract: '--contract or IOTKX_CONTRACT',
  relayUrl: '--relay-url or IOTKX_RELAY_URL',
  receiverUrl: '--receiver-url or IOTKX_RECEIVER_URL',
  receiverAddress: '--receiver or IOTKX_RECEIVER',
  operatorKeyFile: '--operator-key-file or IOTKX_OPERATOR_KEY_FILE (or IOTKX_OPERATOR_KEY)',
};

/** The setting, or a usage error naming where it can come from. */
export function need<K extends keyof Settings>(s: Settings, key: K): NonNullable<Settings[K]> {
  const v = s[key];
  if (v === undefined || v === null) {
    throw usageError(`no ${key} configured: pass ${SOURCES[key] ?? key}`, `or run \`npm start\`, which writes ${DEFAULT_SYSTEM_FILE} for the CLI to read (--system <file> for another)`);
  }
  return v as NonNullable<Settings[K]>;
}

/** A private key from IOTKX_<NAME>_KEY or a key file (never a flag: flags show in `ps`). */
export function readKeyHex(envName: string, file: string | undefined, what: string, env: NodeJS.ProcessEnv = process.env): Hex {
  let text = env[envName];
  let from = envName;
  if (!text) {
    if (!file) throw usageError(`no ${what} key: set ${envName} or give a key file`);
    if (!existsSync(file)) throw usageError(`${what} key file ${file} does not exist`);
    text = readFileSync(file, 'utf8');
    from = file;
  }
  const t = text.trim();
  if (!/^0x[0-9a-fA-F]{64}$/.test(t)) throw usageError(`${from}: expected the ${what} private key as 0x + 64 hex digits`);
  return t as Hex;
}

/* ---------- output ---------- */

/** Human output to stdout, progress to stderr; with --json only the JSON result goes to stdout and no progress. */
export class Out {
  constructor(readonly json: boolean, private readonly stderr: NodeJS.WriteStream = process.stderr) {}

  /** The command's result: JSON (one line) or the human rendering. */
  result(value: unknown, human?: () => void): void {
    printed.result = true;
    if (this.json) process.stdout.write(`${JSON.stringify(value, jsonReplacer)}\n`);
    else if (human) human();
    else process.stdout.write(`${JSON.stringify(value, jsonReplacer, 2)}\n`);
  }

  line(text = ''): void {
    if (!this.json) process.stdout.write(`${text}\n`);
  }

  /** A note on stderr (suppressed with --json). */
  note(text: string): void {
    if (!this.json) this.stderr.write(`${text}\n`);
  }

  /** Runs a long step with a progress indicator: a spinner on a terminal, a start and an end line otherwise. */
  async step<T>(label: string, fn: (update: (detail: string) => void) => Promise<T>): Promise<T> {
    if (this.json) return fn(() => {});
    const t0 = Date.now();
    const tty = this.stderr.isTTY;
    const frames = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏';
    let detail = '';
    let i = 0;
    let timer: NodeJS.Timeout | undefined;
    const draw = () => this.stderr.write(`\r\x1b[2K${frames[i++ % frames.length]} ${label}${detail ? ` — ${detail}` : ''}`);
    if (tty) {
      draw();
      timer = setInterval(draw, 100);
    } else this.stderr.write(`… ${label}\n`);
    const update = (d: string) => {
      if (d === detail) return;
      detail = d;
      if (!tty) this.stderr.write(`  ${label}: ${d}\n`);
    };
    const secs = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
    try {
      const v = await fn(update);
      clearInterval(timer);
      this.stderr.write(`${tty ? '\r\x1b[2K' : ''}✓ ${label} (${secs()})\n`);
      return v;
    } catch (e) {
      clearInterval(timer);
      this.stderr.write(`${tty ? '\r\x1b[2K' : ''}✗ ${label} (${secs()})\n`);
      throw e;
    }
  }
}

/** bigint as decimal strings (as §9 writes uint64s). */
export function jsonReplacer(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? v.toString() : v;
}

/**
 * Asks for confirmation unless `yes`; in a script (stdin not a terminal) without --yes this is a usage
 * error rather than a silent default. `expect` set: the answer must equal it (case-insensitive).
 */
export async function confirm(question: string, opts: { yes?: boolean; expect?: string }): Promise<void> {
  if (opts.yes) return;
  if (!process.stdin.isTTY) throw usageError('confirmation needed and stdin is not a terminal', opts.expect ? 'pass --confirm <address>' : 'pass --yes');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = (await rl.question(`${question} `)).trim();
    const ok = opts.expect ? answer.toLowerCase() === opts.expect.toLowerCase() : /^y(es)?$/i.test(answer);
    if (!ok) throw new CliError(EXIT.refused, 'declined', opts.expect ? 'the typed address does not match: nothing done' : 'not confirmed: nothing done');
  } finally {
    rl.close();
  }
}

/* ---------- display ---------- */

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

/** Every 20-byte address in a JSON-like value in EIP-55 case (the case every CLI command shows, §9 allows it). */
export function eip55Deep<T>(v: T): T {
  if (typeof v === 'string') return (ADDRESS.test(v) ? getAddress(v) : v) as T;
  if (Array.isArray(v)) return v.map((x) => eip55Deep(x)) as T;
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, eip55Deep(x)])) as T;
  return v;
}

/** `2026-12-03T13:14:00Z (12 s ago)` for a time in ms since the epoch. */
export function formatTime(ms: number, now = Date.now()): string {
  const iso = new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const d = Math.round((now - ms) / 1000);
  const span = (s: number) => (s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : s < 172_800 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86_400)} d`);
  return `${iso} (${d >= 0 ? `${span(d)} ago` : `in ${span(-d)}`})`;
}

/** Keys whose numbers are times: ms since the epoch (`at`, `…At`, `…Ms`), or seconds for the reading's `t`. */
const TIME_KEY = /^(at|t|time)$|(At|Ms|Time)$/;

/**
 * A key-value block for humans: nested objects indented under their key, times as RFC 3339 plus "N s ago",
 * addresses EIP-55, null as "-". `fmt` may render a key its own way (return undefined to fall through).
 */
export function keyValueLines(v: Record<string, unknown>, indent = '  ', fmt?: (key: string, value: unknown) => string | undefined): string[] {
  const lines: string[] = [];
  const width = Math.max(12, ...Object.keys(v).map((k) => k.length + 1));
  for (const [k, x] of Object.entries(v)) {
    const own = fmt?.(k, x);
    if (own !== undefined) lines.push(`${indent}${k.padEnd(width)} ${own}`);
    else if (x !== null && typeof x === 'object' && !Array.isArray(x)) {
      const entries = Object.entries(x as Record<string, unknown>);
      if (!entries.length) lines.push(`${indent}${k.padEnd(width)} -`);
      else {
        lines.push(`${indent}${k}:`);
        lines.push(...keyValueLines(x as Record<string, unknown>, `${indent}  `, fmt));
      }
    } else lines.push(`${indent}${k.padEnd(width)} ${scalarText(k, x)}`);
  }
  return lines;
}

function scalarText(k: string, x: unknown): string {
  if (x === null || x === undefined) return '-';
  if (Array.isArray(x)) return x.length ? x.map((e) => (typeof e === 'object' && e !== null ? JSON.stringify(eip55Deep(e)) : scalarText('', e))).join(', ') : '-';
  if (typeof x === 'number' && TIME_KEY.test(k)) {
    if (x > 1e11 && x < 1e14) return formatTime(x);
    if (k === 't' && x > 1e8 && x < 1e11) return formatTime(x * 1000);
  }
  if (typeof x === 'string' && ADDRESS.test(x)) return getAddress(x);
  return String(x);
}
