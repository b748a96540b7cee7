/**
 * `iotkx status [device]`: the device's channel on chain (§4 channel()), the receiver's view (§9
 * /v1/devices) and, with --port, the device's own console status (§6). Without a device: the chain and
 * every device the receiver knows. Each part reports its own error; the exit code is the first failure's.
 */
import type { Command } from 'commander';
import { getAddress, isAddress, type Address } from 'viem';
import { checkContract, connectChain, eth, readChannel, receiverKeyVersion } from '../chain.js';
import { eip55Deep, keyValueLines, Out, resolveSettings, type GlobalOpts } from '../context.js';
import { CliError, EXIT, usageError } from '../errors.js';
import { listDevices } from '../receiver-api.js';
import { ConsoleSession } from '../session.js';

export function parseDevice(v: string): Address {
  if (!isAddress(v, { strict: false })) throw usageError(`${JSON.stringify(v)} is not a device address (0x + 40 hex digits)`);
  return getAddress(v);
}

export function registerStatus(program: Command): void {
  program.command('status')
    .argument('[device]', 'device address (default: the one on --port, or every device the receiver knows)')
    .summary('on-chain channel, receiver view and console status of a device')
    .description('Shows a device\'s channel on chain (enrolled, epoch, state), the receiver\'s view (state, readings, gaps) and, with --port, what the device itself reports. Without a device and --port: the chain and all devices the receiver knows.')
    .option('-p, --port <port>', 'also ask the device\'s console (serial port or tcp://host:port)')
    .action(async (deviceArg: string | undefined, o: { port?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOpts;
      const out = new Out(!!g.json);
      const s = resolveSettings(g);
      let device = deviceArg ? parseDevice(deviceArg) : undefined;
      const errors: CliError[] = [];
      const fail = (e: unknown) => {
        const ce = e instanceof CliError ? e : new CliError(EXIT.failure, 'error', (e as Error).message);
        errors.push(ce);
        return { error: ce.code, message: ce.message };
      };
      const result: Record<string, unknown> = {};

      if (o.port) {
        const dev = new ConsoleSession(o.port, { timeoutMs: 3000 });
        try {
          const id = await dev.identity();
          if (device && id.address !== device.toLowerCase()) throw new CliError(EXIT.usage, 'other-device', `the device on ${o.port} is ${getAddress(id.address)}, not ${device}`);
          device ??= getAddress(id.address);
          const st = await dev.request('status');
          delete st.id;
          delete st.ok;
          result.console = { port: o.port, firmware: id.firmware, ...st };
        } catch (e) {
          result.console = fail(e);
        } finally {
          dev.close();
        }
      }
      if (device) result.device = device;

      if (s.rpcUrl && s.contract) {
        try {
          const c = await connectChain(s.rpcUrl, s.chainId);
          const ttl = await checkContract(c, s.contract);
          const chain: Record<string, unknown> = { rpcUrl: s.rpcUrl, chainId: c.chainId, contract: s.contract, offerTtlBlocks: ttl, block: (await c.pc.getBlockNumber()).toString() };
          if (s.receiverAddress) {
            chain.receiver = s.receiverAddress;
            chain.receiverKeyVersion = (await receiverKeyVersion(c, s.contract, s.receiverAddress)).version;
            if (device) {
              const ch = await readChannel(c, s.contract, device, s.receiverAddress);
              chain.channel = { ...ch, epoch: ch.epoch.toString(), offeredAt: ch.offeredAt.toString(), acceptedAt: ch.acceptedAt.toString() };
            }
          }
          if (device) chain.deviceBalance = (await c.pc.getBalance({ address: device })).toString();
          result.chain = chain;
        } catch (e) {
          result.chain = fail(e);
        }
      } else result.chain = { note: 'no chain configured (--rpc-url and --contract, or a join file)' };

      if (s.receiverUrl) {
        try {
          const all = await listDevices(s.receiverUrl);
          result.receiver = device ? (all.find((d) => d.device.toLowerCase() === device!.toLowerCase()) ?? { state: 'unknown', note: 'the receiver has never seen this device enrolled' }) : all;
        } catch (e) {
          result.receiver = fail(e);
        }
      }

      const shown = eip55Deep(result);
      out.result(shown, () => {
        // Channel times are block numbers; the balance is wei.
        const fmt = (k: string, x: unknown) => {
          if (k === 'deviceBalance' && typeof x === 'string') return eth(BigInt(x));
          if ((k === 'offeredAt' || k === 'acceptedAt') && typeof x === 'string') return x === '0' ? '-' : `block ${x}`;
          return undefined;
        };
        const show = (title: string, v: unknown) => {
          if (v === undefined) return;
          out.line(`${title}:`);
          if (Array.isArray(v)) {
            if (!v.length) out.line('  (no devices)');
            for (const d of v) out.line(`  ${d.device}  ${String(d.state).padEnd(8)} epoch ${d.epoch ?? '-'}  readings ${d.readings}  gaps ${d.gaps}`);
            return;
          }
          for (const l of keyValueLines(v as Record<string, unknown>, '  ', fmt)) out.line(l);
        };
        if (device) out.line(`device ${device}`);
        show('chain', shown.chain);
        show('receiver', shown.receiver);
        show('console', shown.console);
      });
      if (errors.length) {
        const e = errors[0];
        throw new CliError(e.exit, e.code, `status incomplete: ${e.message}`, e.hint);
      }
    });
}
