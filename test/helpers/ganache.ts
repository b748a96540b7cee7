// ganache 7 (devDependency): a second, independent EVM node implementation for the test suite (issue 16).
// Its newest EVM is Shanghai. Spawned as its own process (its CLI), so it neither shares the test's event loop
// nor outlives it: stop() sends SIGTERM, then SIGKILL.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { ANVIL_MNEMONIC, devAccounts, freePort, type DevAccount } from '../../hosts/chain/anvil.js';
import { until } from './until.js';

export interface Ganache {
  rpcUrl: string;
  chainId: number;
  /** The default development mnemonic's accounts (the same as anvil's), funded. */
  accounts: DevAccount[];
  stop(): Promise<void>;
}

/** Path of ganache's CLI, or undefined (then tests that need it skip, saying why). */
export function ganacheCli(): string | undefined {
  try {
    return createRequire(__filename).resolve('ganache/dist/node/cli.js');
  } catch {
    return undefined;
  }
}

/** `blockTime` 0 = automine (ganache's instamine: a block per transaction, none otherwise). */
export async function startGanache(opts: { blockTime: number; chainId?: number; accounts?: number }): Promise<Ganache> {
  const cli = ganacheCli();
  if (!cli) throw new Error('ganache is not installed (npm ci installs it as a devDependency)');
  const port = await freePort();
  const chainId = opts.chainId ?? 1337;
  const n = opts.accounts ?? 10;
  const child = spawn(process.execPath, [cli, '--server.host', '127.0.0.1', '--server.port', String(port), '--chain.chainId', String(chainId),
    '--wallet.mnemonic', ANVIL_MNEMONIC, '--wallet.totalAccounts', String(n), '--wallet.defaultBalance', '10000',
    '--miner.blockTime', String(opts.blockTime), '--logging.quiet'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
  };
  const rpcUrl = `http://127.0.0.1:${port}`;
  try {
    await until(`ganache on ${rpcUrl}`, async () => {
      if (child.exitCode !== null) throw new Error(`ganache exited: ${stderr.trim()}`);
      const r = await fetch(rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' });
      return Number(((await r.json()) as { result?: string }).result) === chainId;
    }, 60_000, 100);
  } catch (e) {
    await stop();
    throw e;
  }
  return { rpcUrl, chainId, accounts: devAccounts(n), stop };
}
