// The embedded chain: an anvil node from the @foundry-rs/anvil npm package, on loopback, on a port the OS picked.
// We spawn the platform binary (@foundry-rs/anvil-<os>-<arch>/bin/anvil) directly rather than the package's
// bin.mjs wrapper, so SIGTERM reaches anvil itself and no extra node process sits in between.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { mnemonicToAccount } from 'viem/accounts';
import { bytesToHex, type Hex } from 'viem';

/** anvil's (and Hardhat's) default development mnemonic: its accounts are public, for local chains only. */
export const ANVIL_MNEMONIC = 'test test test test test test test test test test test junk';

export interface AnvilOptions {
  /** Chain id (default 31337, anvil's own default). */
  chainId?: number;
  /** Seconds between blocks; absent = automine (one block per transaction). */
  blockTime?: number;
  /** Number of funded dev accounts (default 10). */
  accounts?: number;
  /** EVM hardfork name (default: anvil's own). */
  hardfork?: string;
  /** More anvil flags, e.g. ['--steps-tracing'] for opcode traces. */
  extraArgs?: string[];
  /** How long to wait for the RPC to answer (ms, default 15 s). */
  startTimeoutMs?: number;
}

export interface DevAccount {
  address: Hex;
  privateKey: Hex;
}

export interface Anvil {
  rpcUrl: string;
  chainId: number;
  /** anvil's default-mnemonic accounts, each funded with 10,000 ETH. */
  accounts: DevAccount[];
  pid: number;
  /** SIGTERM, then SIGKILL if anvil has not exited after `timeoutMs` (default 3 s). */
  stop(timeoutMs?: number): Promise<void>;
}

/** Path of the anvil binary shipped by @foundry-rs/anvil's platform package; throws a clear error if absent. */
export function anvilBinary(): string {
  const arch = ({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[process.arch];
  const pkg = `@foundry-rs/anvil-${process.platform}-${arch ?? process.arch}`;
  const exe = process.platform === 'win32' ? 'anvil.exe' : 'anvil';
  const require = createRequire(import.meta.url);
  let path: string | undefined;
  try {
    path = require.resolve(`${pkg}/bin/${exe}`);
  } catch {
    path = undefined;
  }
  if (!path || !existsSync(path)) {
    throw new Error(
      `anvil binary not found (looked for ${pkg}/bin/${exe}): install dependencies with \`npm ci\` ` +
        `(the @foundry-rs/anvil package ships it per platform), or point IOTKX_RPC_URL at another node`,
    );
  }
  return path;
}

/** Asks the OS for a free loopback TCP port (bind to 0, read it back, release it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('could not get a free port'))));
    });
  });
}

/** The first `n` accounts of anvil's default mnemonic (BIP-44 m/44'/60'/0'/0/i). */
export function devAccounts(n = 10): DevAccount[] {
  return Array.from({ length: n }, (_, i) => {
    const acct = mnemonicToAccount(ANVIL_MNEMONIC, { addressIndex: i });
    return { address: acct.address, privateKey: bytesToHex(acct.getHdKey().privateKey!) };
  });
}

async function rpcAnswers(rpcUrl: string): Promise<string | undefined> {
  try {
    const res = await fetch(rpcUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
      signal: AbortSignal.timeout(1000),
    });
    const body = (await res.json()) as { result?: string };
    return body.result;
  } catch {
    return undefined;
  }
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

async function startOnce(opts: AnvilOptions): Promise<Anvil> {
  const chainId = opts.chainId ?? 31337;
  const nAccounts = opts.accounts ?? 10;
  const port = await freePort();
  const args = ['--host', '127.0.0.1', '--port', String(port), '--chain-id', String(chainId),
    '--accounts', String(nAccounts), '--mnemonic', ANVIL_MNEMONIC, '--silent'];
  if (opts.blockTime !== undefined) args.push('--block-time', String(opts.blockTime));
  if (opts.hardfork) args.push('--hardfork', opts.hardfork);
  if (opts.extraArgs) args.push(...opts.extraArgs);
  const child = spawn(anvilBinary(), args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));

  const rpcUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (opts.startTimeoutMs ?? 15_000);
  const stop = async (timeoutMs = 3000) => {
    if (exited) return;
    child.kill('SIGTERM');
    if (!(await waitExit(child, timeoutMs))) {
      child.kill('SIGKILL');
      await waitExit(child, timeoutMs);
    }
  };
  for (;;) {
    const err = await Promise.race([spawnError, new Promise<undefined>((r) => setTimeout(() => r(undefined), 50))]);
    if (err) throw new Error(`could not start anvil: ${err.message}`);
    if (exited) throw new Error(`anvil exited during start-up: ${stderr.trim() || 'no output'}`);
    const answer = await rpcAnswers(rpcUrl);
    if (answer !== undefined) {
      if (Number(answer) !== chainId) {
        await stop();
        throw new Error(`anvil on ${rpcUrl} reports chain id ${answer}, expected ${chainId}`);
      }
      break;
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`anvil did not answer on ${rpcUrl} in time: ${stderr.trim()}`);
    }
  }
  return { rpcUrl, chainId, accounts: devAccounts(nAccounts), pid: child.pid!, stop };
}

/** Starts anvil and resolves once its JSON-RPC answers. Retries on a fresh port if another process took ours. */
export async function startAnvil(opts: AnvilOptions = {}): Promise<Anvil> {
  let last: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(opts);
    } catch (e) {
      last = e;
      if (!(e instanceof Error) || !/exited during start-up/.test(e.message)) throw e;
    }
  }
  throw last;
}
