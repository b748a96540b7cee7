/**
 * `iotkx sim`: simulated devices with provisioning consoles on loopback TCP ports (PROTOCOL.md §9,
 * "Simulator"). Runs in the foreground until Ctrl-C. Writes a registry (`<dir>/consoles.json`) that
 * `iotkx devices` reads. Devices keep their identity across runs (storage files in <dir>).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { Out, type GlobalOpts } from '../context.js';
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
    .action(async (o: { devices: number; dir: string; fresh?: boolean; basePort?: number }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOpts;
      const out = new Out(!!g.json);
      const dir = resolve(o.dir);
      if (o.fresh) rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      const consoles: SimConsole[] = [];
      const stopAll = async () => { for (const c of consoles) await c.stop().catch(() => undefined); };
      try {
        for (let i = 0; i < o.devices; i++) {
          consoles.push(await startSimConsole({ dir, name: `sim${i}`, seed: i + 1, port: o.basePort ? o.basePort + i : undefined }));
        }
      } catch (e) {
        await stopAll();
        throw e;
      }
      const registry: SimRegistry = { pid: process.pid, engine: 'node', consoles: consoles.map((c) => ({ name: c.name, port: c.url, address: c.address() })) };
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
