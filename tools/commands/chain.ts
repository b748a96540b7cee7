/**
 * `iotkx chain up|deploy|status`: an embedded anvil in the foreground (hosts/chain/anvil.ts; Ctrl-C stops
 * it) or any existing node; the KeyExchange deployment and its record (hosts/chain/deploy.ts).
 */
import { spawn } from 'node:child_process';
import type { Command } from 'commander';
import { formatGwei, getAddress, isAddress, parseEther, type Hex } from 'viem';
import { anvilBinary, devAccounts, freePort, ANVIL_MNEMONIC } from '../../hosts/chain/anvil.js';
import { connect, deployKeyExchange, EVM_TARGET, writeDeployment } from '../../hosts/chain/deploy.js';
import { checkEndpoint } from '../../hosts/chain/endpoint.js';
import { checkContract, connectChain, eth, isOperator, reason, receiverKeyVersion, sendValue, signer } from '../chain.js';
import { DEFAULT_DEPLOYMENT_FILE, need, Out, readKeyHex, resolveSettings, type GlobalOpts } from '../context.js';
import { chainError, CliError, EXIT, usageError } from '../errors.js';
import { intArg } from './pair.js';

async function deployerKey(o: { dev?: boolean; deployerKeyFile?: string }, chainId: number): Promise<Hex> {
  if (o.dev) {
    if (chainId !== 31337) throw usageError(`--dev uses anvil's public development account: refused on chain ${chainId} (only 31337)`);
    return devAccounts(1)[0].privateKey;
  }
  return readKeyHex('IOTKX_DEPLOYER_KEY', o.deployerKeyFile, 'deployer');
}

async function doDeploy(out: Out, rpcUrl: string, key: Hex, ttl: number, recordPath: string) {
  const c = await connectChain(rpcUrl);
  const session = await connect(rpcUrl, key, c.chainId);
  const balance = await c.pc.getBalance({ address: session.account.address });
  if (balance === 0n) throw chainError('insufficient-funds', `deployer ${session.account.address} has no funds on chain ${c.chainId}`);
  const rec = await out.step(`deploying KeyExchange (offer TTL ${ttl} blocks)`, () =>
    deployKeyExchange(session, ttl).catch((e) => { throw chainError('deploy-failed', `deployment failed: ${reason(e)}`); }));
  writeDeployment(rec, recordPath);
  return { ...rec, record: recordPath, deployer: session.account.address };
}

export function registerChain(program: Command): void {
  const ch = program.command('chain').summary('embedded anvil, KeyExchange deployment, chain status');

  ch.command('up')
    .summary('run an embedded anvil in the foreground (Ctrl-C stops it)')
    .description(`Starts anvil (the @foundry-rs/anvil package) on 127.0.0.1 with its public development accounts
(mnemonic "${ANVIL_MNEMONIC}": for local use only); chain id from --chain-id (default 31337). --deploy also deploys KeyExchange with account 0 and writes
the deployment record, which the other commands then read.`)
    .option('--port <port>', 'RPC port (default: a free one)', intArg(1, 65535))
    .option('--block-time <seconds>', 'seconds per block (0 = one block per transaction)', intArg(0, 3600), 1)
    .option('--deploy', 'deploy KeyExchange and write the deployment record')
    .option('--offer-ttl <blocks>', 'offerTtlBlocks of the deployment', intArg(1), 60)
    .action(async (o: { port?: number; blockTime: number; deploy?: boolean; offerTtl: number }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOpts;
      const out = new Out(!!g.json);
      const chainId = g.chainId ? Number(g.chainId) : 31337;
      if (!Number.isSafeInteger(chainId) || chainId < 1) throw usageError('--chain-id must be a positive integer');
      const port = o.port ?? (await freePort());
      const args = ['--host', '127.0.0.1', '--port', String(port), '--chain-id', String(chainId), '--mnemonic', ANVIL_MNEMONIC, '--silent'];
      if (o.blockTime > 0) args.push('--block-time', String(o.blockTime));
      const child = spawn(anvilBinary(), args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-2000); });
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      const rpcUrl = `http://127.0.0.1:${port}`;
      const stop = async () => {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(t);
      };
      try {
        await out.step(`starting anvil on ${rpcUrl}`, async () => {
          const end = Date.now() + 15_000;
          for (;;) {
            if (child.exitCode !== null) throw chainError('anvil-exited', `anvil exited: ${stderr.trim() || 'no output'}`);
            const ok = await fetch(rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}', signal: AbortSignal.timeout(1000) }).then((r) => r.ok, () => false);
            if (ok) return;
            if (Date.now() > end) throw chainError('anvil-timeout', `anvil did not answer on ${rpcUrl}: ${stderr.trim()}`);
            await new Promise((r) => setTimeout(r, 100));
          }
        });
        const accounts = devAccounts(2).map((a) => a.address);
        const info: Record<string, unknown> = { rpcUrl, chainId: chainId, pid: child.pid, devAccounts: accounts };
        if (o.deploy) info.deployment = await doDeploy(out, rpcUrl, devAccounts(1)[0].privateKey, o.offerTtl, g.deployment ?? DEFAULT_DEPLOYMENT_FILE);
        out.result(info, () => {
          out.line(`anvil running: ${rpcUrl} (chain id ${chainId}${o.blockTime ? `, ${o.blockTime}s blocks` : ', a block per transaction'})`);
          out.line(`dev accounts (10,000 ETH each; keys from the public mnemonic): ${accounts.join(', ')}`);
          if (info.deployment) out.line(`KeyExchange at ${(info.deployment as any).address}, record ${(info.deployment as any).record}`);
          out.line('Ctrl-C stops it.');
        });
      } catch (e) {
        await stop();
        throw e;
      }
      const signalled = new Promise<void>((r) => { process.once('SIGINT', r); process.once('SIGTERM', r); });
      const why = await Promise.race([signalled.then(() => 'signal' as const), exited.then(() => 'exited' as const)]);
      if (why === 'exited') throw new CliError(EXIT.chain, 'anvil-exited', `anvil exited unexpectedly: ${stderr.trim() || 'no output'}`);
      out.note('stopping anvil…');
      await stop();
    });

  ch.command('deploy')
    .summary('deploy KeyExchange and write the deployment record')
    .description(`Deploys KeyExchange(offerTtlBlocks) on the configured node (--rpc-url / IOTKX_RPC_URL) with the deployer key
from IOTKX_DEPLOYER_KEY or --deployer-key-file (--dev: anvil's development account 0, chain 31337 only), and writes
the record (--deployment, default ${DEFAULT_DEPLOYMENT_FILE}).`)
    .option('--offer-ttl <blocks>', 'offerTtlBlocks (§4: how long an offer may wait for acceptance)', intArg(1), 60)
    .option('--deployer-key-file <file>', 'file holding the deployer private key')
    .option('--dev', 'use anvil\'s public development account 0 (chain 31337 only)')
    .action(async (o: { offerTtl: number; deployerKeyFile?: string; dev?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOpts;
      const out = new Out(!!g.json);
      const s = resolveSettings({ ...g, deployment: undefined, contract: undefined });
      const rpcUrl = need(s, 'rpcUrl');
      const c = await connectChain(rpcUrl, s.chainId);
      const key = await deployerKey(o, c.chainId);
      const rec = await doDeploy(out, rpcUrl, key, o.offerTtl, g.deployment ?? DEFAULT_DEPLOYMENT_FILE);
      out.result(rec, () => out.line(`KeyExchange at ${rec.address} on chain ${rec.chainId} (block ${rec.block}); record ${rec.record}`));
    });

  ch.command('fund')
    .argument('<address>', 'account to fund (a receiver, an operator)')
    .argument('<eth>', 'amount in ETH, e.g. 0.5')
    .summary('send ETH from the deployer account (development chains, first setup)')
    .option('--deployer-key-file <file>', 'file holding the deployer private key (else IOTKX_DEPLOYER_KEY)')
    .option('--dev', 'use anvil\'s public development account 0 (chain 31337 only)')
    .action(async (to: string, amount: string, o: { deployerKeyFile?: string; dev?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOpts;
      const out = new Out(!!g.json);
      if (!isAddress(to, { strict: false })) throw usageError(`${to} is not an address`);
      if (!/^[0-9]+(\.[0-9]+)?$/.test(amount)) throw usageError(`${amount} is not an amount of ETH`);
      const s = resolveSettings(g);
      const c = await connectChain(need(s, 'rpcUrl'), s.chainId);
      const from = signer(c, await deployerKey(o, c.chainId));
      const tx = await out.step(`sending ${amount} ETH to ${to}`, () => sendValue(c, from, getAddress(to), parseEther(amount)));
      out.result({ from: from.account.address, to: getAddress(to), value: parseEther(amount).toString(), tx }, () => out.line(`sent ${amount} ETH to ${getAddress(to)} (${tx})`));
    });

  ch.command('status')
    .summary('is the chain reachable and fit for iotkx, is the contract there, is the receiver\'s key record published')
    .description(`Checks what a node must offer (README "Using another node"): an EVM at London or later (base fee;
KeyExchange is compiled for London), blocks that keep coming, and every method the relay forwards to devices;
then, with a contract, that the node runs its code (every view hosts read). Exit 4 when the node is unfit.`)
    .action(async (_o, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOpts;
      const out = new Out(!!g.json);
      const s = resolveSettings(g);
      const c = await connectChain(need(s, 'rpcUrl'), s.chainId);
      const block = await c.pc.getBlock({ blockTag: 'latest' });
      const endpoint = await checkEndpoint(c.pc);
      const result: Record<string, unknown> = { rpcUrl: c.rpcUrl, chainId: c.chainId, block: block.number.toString(), baseFeePerGas: block.baseFeePerGas?.toString() ?? null, endpoint };
      if (s.contract) {
        result.contract = s.contract;
        result.offerTtlBlocks = await checkContract(c, s.contract);
        if (s.receiverAddress) {
          result.receiver = s.receiverAddress;
          result.receiverKeyVersion = (await receiverKeyVersion(c, s.contract, s.receiverAddress)).version;
          if (s.operatorKeyFile || process.env.IOTKX_OPERATOR_KEY) {
            const op = signer(c, readKeyHex('IOTKX_OPERATOR_KEY', s.operatorKeyFile, 'operator')).account.address;
            result.operator = { address: op, authorised: await isOperator(c, s.contract, s.receiverAddress, op), balance: (await c.pc.getBalance({ address: op })).toString() };
          }
        }
      }
      out.result(result, () => {
        out.line(`chain ${c.chainId} at ${c.rpcUrl}: block ${result.block}${block.baseFeePerGas !== undefined && block.baseFeePerGas !== null ? `, base fee ${formatGwei(block.baseFeePerGas)} gwei` : ''}`);
        out.line(`EVM: ${endpoint.evm} (PUSH0 ${endpoint.push0 ?? '?'}, MCOPY ${endpoint.mcopy ?? '?'}; KeyExchange is compiled for ${EVM_TARGET}); head block ${endpoint.headAgeSec} s old; ` +
          (endpoint.missingMethods.length ? `missing methods: ${endpoint.missingMethods.join(', ')}` : 'every method the relay forwards answers'));
        for (const p of endpoint.problems) out.line(`problem: ${p}`);
        for (const n of endpoint.notes) out.line(`note: ${n}`);
        if (result.contract) out.line(`KeyExchange ${result.contract} (offer TTL ${result.offerTtlBlocks} blocks)`);
        else out.line('no contract configured (`iotkx chain deploy`, or --contract)');
        if (result.receiver) out.line(`receiver ${result.receiver}: key record v${result.receiverKeyVersion}`);
        const op = result.operator as any;
        if (op) out.line(`operator ${op.address}: ${op.authorised ? 'authorised' : 'not authorised'}, ${eth(BigInt(op.balance))}`);
      });
      if (endpoint.problems.length) throw chainError('endpoint-unfit', `the node at ${c.rpcUrl} cannot run iotkx: ${endpoint.problems.join('; ')}`);
    });
}
