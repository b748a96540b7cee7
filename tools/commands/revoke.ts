/**
 * `iotkx revoke <device>` (§5.6, operator or receiver key) and `iotkx factory-reset --port …` (§6: the
 * device's address must be typed, or given with --confirm).
 */
import type { Command } from 'commander';
import { getAddress } from 'viem';
import { parseAbiItem, type Address } from 'viem';
import { connectChain, checkContract, readChannel, sendContract, signer, type Chainish } from '../chain.js';
import { confirm, need, Out, readKeyHex, resolveSettings, type GlobalOpts } from '../context.js';
import { chainError, CliError, refused, usageError } from '../errors.js';
import { ConsoleSession } from '../session.js';
import { parseDevice } from './status.js';

/**
 * The revocation in force for (receiver, device): the latest DeviceRevoked if no DeviceEnrolled followed it
 * (channel() has no revoked flag; the events do). undefined: never revoked, or enrolled again since.
 */
async function lastRevocation(c: Chainish, contract: Address, receiver: Address, device: Address, fromBlock?: number): Promise<{ block: bigint; tx: string } | undefined> {
  const from = BigInt(fromBlock ?? 0);
  const args = { receiver, device };
  const [revoked, enrolled] = await Promise.all([
    c.pc.getLogs({ address: contract, event: parseAbiItem('event DeviceRevoked(address indexed receiver, address indexed device, address by)'), args, fromBlock: from }),
    c.pc.getLogs({ address: contract, event: parseAbiItem('event DeviceEnrolled(address indexed receiver, address indexed device, address by)'), args, fromBlock: from }),
  ]).catch(() => [[], []] as const);
  const order = (l: { blockNumber: bigint | null; logIndex: number | null }) => (l.blockNumber ?? 0n) * 1_000_000n + BigInt(l.logIndex ?? 0);
  const r = revoked.at(-1);
  const e = enrolled.at(-1);
  if (!r || (e && order(e) > order(r))) return undefined;
  return { block: r.blockNumber ?? 0n, tx: r.transactionHash ?? '?' };
}

export function registerRevoke(program: Command): void {
  program.command('revoke')
    .argument('<device>', 'device address')
    .summary('revoke a device on chain (it stops being able to exchange keys; the receiver refuses its readings)')
    .description('Sends revoke(receiver, device) (PROTOCOL.md §5.6) with the operator key (or the receiver\'s, --as-receiver). Only the receiver can enroll a revoked device again. A device already revoked is refused with "already revoked" (exit 5, error already-revoked), one never enrolled with not-enrolled (exit 5); nothing is sent.')
    .option('-y, --yes', 'do not ask for confirmation')
    .option('--as-receiver', 'sign with the receiver\'s key file instead of the operator key')
    .action(async (deviceArg: string, o: { yes?: boolean; asReceiver?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOpts;
      const out = new Out(!!g.json);
      const device = parseDevice(deviceArg);
      const s = resolveSettings(g);
      const rpcUrl = need(s, 'rpcUrl');
      const contract = need(s, 'contract');
      const receiver = need(s, 'receiverAddress');
      let key;
      if (o.asReceiver) {
        const { readKeyFile } = await import('../../hosts/receiver/keys.js');
        const { toHex } = await import('../../lib/bytes.js');
        key = toHex(readKeyFile(need(s, 'receiverKeyFile')).accountKey);
      } else key = readKeyHex('IOTKX_OPERATOR_KEY', s.operatorKeyFile, 'operator');
      const c = await connectChain(rpcUrl, s.chainId);
      await checkContract(c, contract);
      const notEnrolled = async (): Promise<never> => {
        const last = await lastRevocation(c, contract, receiver, device, s.deploymentBlock);
        if (last) {
          throw refused('already-revoked', `device ${device} is already revoked from receiver ${receiver} (block ${last.block}, tx ${last.tx}): nothing sent`,
            'a revoked device stays revoked; only the receiver itself (not an operator) can enroll it again (PROTOCOL.md §5.6)');
        }
        throw refused('not-enrolled', `device ${device} is not enrolled to receiver ${receiver}: nothing to revoke`);
      };
      const ch = await readChannel(c, contract, device, receiver);
      if (!ch.enrolled) await notEnrolled();
      await confirm(`Revoke device ${device} (receiver ${receiver})? [y/N]`, { yes: o.yes });
      const tx = await out.step('revoking on chain', () => sendContract(c, signer(c, key), contract, 'revoke', [receiver, device]).catch(async (e) => {
        // Revoked by someone else since the check above (another technician, the receiver).
        if (e instanceof CliError && /NotEnrolled/.test(e.message)) await notEnrolled();
        if (e instanceof CliError && /NotAuthorized/.test(e.message)) {
          throw chainError('not-authorised', `${signer(c, key).account.address} may not revoke for receiver ${receiver}: it is neither the receiver nor one of its operators`, 'use the operator key the receiver authorised, or --as-receiver');
        }
        throw e;
      }));
      out.result({ device, receiver, revoked: true, tx }, () => out.line(`revoked ${device} in ${tx}`));
    });

  program.command('factory-reset')
    .summary('wipe a device over its console (new identity at next boot)')
    .description(`Asks the device (§6 factory-reset) to wipe its key, configuration and queued readings; its next boot
makes a new identity. The device's address must be typed, or passed with --confirm. Its old address should be revoked
(\`iotkx revoke <old address>\`); its balance is lost.`)
    .requiredOption('-p, --port <port>', 'console: serial port or tcp://host:port')
    .option('--confirm <address>', 'the device\'s address, as confirmation (instead of typing it)')
    .action(async (o: { port: string; confirm?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOpts;
      const out = new Out(!!g.json);
      const dev = new ConsoleSession(o.port, { timeoutMs: 5000 });
      try {
        const id = await dev.identity();
        const shown = getAddress(id.address);
        if (o.confirm !== undefined) {
          if (!/^0x[0-9a-fA-F]{40}$/.test(o.confirm)) throw usageError(`--confirm ${o.confirm} is not an address`);
          if (o.confirm.toLowerCase() !== id.address) throw refused('bad-confirmation', `--confirm ${o.confirm} is not the address of the device on ${o.port} (${shown}): nothing wiped`);
        } else {
          out.note(`device on ${o.port}: ${shown} (state ${id.state})`);
          await confirm(`This erases the device's key, configuration and queued readings. Type its address to confirm:`, { expect: id.address });
        }
        await out.step('factory reset', () => dev.request('factory-reset', { confirm: id.address }));
        out.result({ device: shown, wiped: true, previousState: id.state }, () => {
          out.line(`wiped ${shown}; it makes a new identity at its next boot.`);
          if (id.state !== 'unprovisioned') out.line(`revoke the old address if it was enrolled: iotkx revoke ${shown}`);
        });
      } finally {
        dev.close();
      }
    });
}
