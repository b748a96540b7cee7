/**
 * `iotkx sim`: simulated devices with provisioning consoles on loopback TCP ports (PROTOCOL.md §9,
 * "Simulator"). Runs in the foreground until Ctrl-C. Writes a registry (`<dir>/consoles.json`) that
 * `iotkx devices` reads. Devices keep their identity across runs (storage files in <dir>).
 * Engines: `xs` (default) runs the sensor firmware (devices/sensor) in an XS worker per device, through
 * hosts/sim; `node` runs lib/device directly on Node (tools/sim-console.ts), lighter and quicker to start.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { Out, type GlobalOpts } from '../context.js';
import { CliError, EXIT } from '../errors.js';
import { startSimConsole, type SimConsole } from '../sim-console.js';
import { intArg } from './pair.js';

export const DEFAULT_SIM_DIR = '.iotkx/sim';
export const REGISTRY = 'consoles.json';

export interface SimRegistry {
  pid: number;
  engine: string;
  consoles: { name: string; port: string; address: string }[];
}

export function registerSim(program: Command): void {
  program.command('sim')
    .summary('start simulated devices, each with a console on a loopback TCP port')
    .description(`Starts N simulated devices (lib/device on Node, storage files in --dir) and serves each one's
provisioning console (§6) on 127.0.0.1. Prints the console ports, writes <dir>/${REGISTRY} for \`iotkx devices\`,
and runs until Ctrl-C. Pair one with \`iotkx pair --port tcp://127.0.0.1:<port>\`.`)
    .option('-n, --devices <n>', 'how many devices', intArg(1, 64), 1)
    .option('--dir <dir>', 'device storage and registry directory', DEFAULT_SIM_DIR)
    .option('--fresh', 'wipe the directory first (new identities)')
    .option('--base-port <port>', 'listen on consecutive ports from this one (default: any free port)', intArg(1, 65535))
    .addOption(new Option('--engine <engine>', 'xs: the firmware in XS workers (hosts/sim); node: lib/device on Node').choices(['xs', 'node']).default('xs'))
    .option('--max-sleep <ms>', 'longest sleep between device ticks', intArg(10), 2000)
    .action(async (o: { devices: number; dir: string; fresh?: boolean; basePort?: number; engine: 'xs' | 'node'; maxSleep: number }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOpts;
      const out = new Out(!!g.json);
      const dir = resolve(o.dir);
      if (o.fresh) rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      const consoles: SimConsole[] = [];
      const stopAll = async () => { for (const c of consoles) await c.stop().catch(() => undefined); };
      try {
        await out.step(`starting ${o.devices} simulated device(s) (${o.engine})`, async (update) => {
          for (let i = 0; i < o.devices; i++) {
            const port = o.basePort ? o.basePort + i : undefined;
            consoles.push(o.engine === 'xs'
              ? await startXsConsole({ dir, name: `sim${i}`, seed: i + 1, port, maxSleepMs: o.maxSleep })
              : await startSimConsole({ dir, name: `sim${i}`, seed: i + 1, port, maxSleepMs: o.maxSleep }));
            update(`${i + 1} of ${o.devices}`);
          }
        });
      } catch (e) {
        await stopAll();
        throw e;
      }
      const registry: SimRegistry = { pid: process.pid, engine: o.engine, consoles: consoles.map((c) => ({ name: c.name, port: c.url, address: c.address() })) };
      const regFile = join(dir, REGISTRY);
      writeFileSync(regFile, `${JSON.stringify(registry, null, 2)}\n`);
      out.result({ ...registry, registry: regFile }, () => {
        out.line(`${consoles.length} simulated device(s) (registry ${regFile}):`);
        for (const c of registry.consoles) out.line(`  ${c.name}  ${c.port}  ${c.address}`);
        out.line('pair one with: iotkx pair --port <tcp://…>     Ctrl-C stops them.');
      });
      await new Promise<void>((resolveStop) => {
        const stop = () => resolveStop();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      out.note('stopping simulated devices…');
      await stopAll();
      rmSync(regFile, { force: true });
    });
}

/** A device of helper code's XS simulator (hosts/sim): the firmware itself, its console on a TCP port. */
async function startXsConsole(o: { dir: string; name: string; seed: number; port?: number; maxSleepMs: number }): Promise<SimConsole> {
  let mod: typeof import('../../hosts/sim/device.js');
  try {
    mod = await import('../../hosts/sim/device.js');
  } catch (e) {
    throw new CliError(EXIT.failure, 'no-xs-sim', `the XS simulator (hosts/sim) did not load: ${(e as Error).message}`, 'use --engine node');
  }
  const d = await mod.SimDevice.start({ dir: o.dir, name: o.name, sensorSeed: o.seed, consolePort: o.port ?? 0, maxSleepMs: o.maxSleepMs });
  if (d.bootError) {
    await d.stop();
    throw new CliError(EXIT.device, d.bootError.code, `simulated device ${o.name} refused to boot: ${d.bootError.message}`, `remove ${o.dir} (or --fresh) to start over`);
  }
  return { name: o.name, port: d.consolePort, url: `tcp://127.0.0.1:${d.consolePort}`, address: () => d.address, stop: () => d.stop() };
}
