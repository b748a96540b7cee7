/**
 * `iotkx sim`: simulated devices with provisioning consoles on loopback TCP ports (PROTOCOL.md §9,
 * "Simulator"). Runs in the foreground until Ctrl-C. Writes a registry (`<dir>/consoles.json`) that
 * `iotkx devices` reads. Devices keep their identity across runs (storage files in <dir>).
 * Engines: `xs` (default) runs the sensor firmware (devices/sensor) in an XS worker per device, through
 * hosts/sim; `node` runs lib/device directly on Node (tools/sim-console.ts), lighter and quicker to start.
 */
import { createHash, randomInt } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { getAddress } from 'viem';
import { ConsoleClient, readIdentity } from '../console-client.js';
import { Out, type GlobalOpts } from '../context.js';
import { CliError, EXIT } from '../errors.js';
import { startSimConsole, type SimConsole } from '../sim-console.js';
import { intArg } from './pair.js';

export const DEFAULT_SIM_DIR = '.iotkx/sim';
export const REGISTRY = 'consoles.json';

export interface SimRegistry {
  pid: number;
  engine: string;
  /** state: the device's §6 state at start; pair: the command that pairs it. */
  consoles: { name: string; port: string; address: string; state?: string; pair?: string }[];
}

export function registerSim(program: Command): void {
  program.command('sim')
    .summary('start simulated devices, each with a console on a loopback TCP port')
    .description(`Starts N simulated devices (lib/device on Node, storage files in --dir) and serves each one's
provisioning console (§6) on 127.0.0.1. Prints the console ports, writes <dir>/${REGISTRY} for \`iotkx devices\`,
and runs until Ctrl-C, printing for each device the exact \`iotkx pair --port tcp://127.0.0.1:<port>\` that pairs it.
Identities persist in --dir across runs: after restarting \`npm start\` (a new chain and receiver), start with --fresh.`)
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
      mkdirSync(dir, { recursive: true });
      const other = runningSim(dir);
      if (other) throw new CliError(EXIT.refused, 'sim-running', `another \`iotkx sim\` (pid ${other}) is using ${dir}; stop it first, or pass --dir`);
      if (o.fresh) {
        // Only the simulator's own files: --dir . --fresh must not wipe a repository.
        const wiped = readdirSync(dir).filter((f) => SIM_FILE.test(f));
        for (const f of wiped) rmSync(join(dir, f), { force: true });
        if (wiped.length) out.note(`--fresh: removed ${wiped.length} device storage file(s) from ${dir}: new identities`);
      }
      // Ctrl-C at any time stops the devices cleanly: during start-up, or as soon as a caller read the ports.
      const stopped = new Promise<void>((resolveStop) => {
        const stop = () => resolveStop();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      const consoles: SimConsole[] = [];
      const stopAll = async () => { for (const c of consoles) await c.stop().catch(() => undefined); };
      try {
        await out.step(`starting ${o.devices} simulated device(s) (${o.engine})`, async (update) => {
          for (let i = 0; i < o.devices; i++) {
            const port = o.basePort ? o.basePort + i : undefined;
            // Sensors are seeded per identity (xs: from the address, hosts/sim; node: from the stored identity, or at random for a new one).
            consoles.push(o.engine === 'xs'
              ? await startXsConsole({ dir, name: `sim${i}`, port, maxSleepMs: o.maxSleep })
              : await startSimConsole({ dir, name: `sim${i}`, seed: storedSeed(join(dir, `sim${i}.json`)), port, maxSleepMs: o.maxSleep }));
            update(`${i + 1} of ${o.devices}`);
          }
        });
      } catch (e) {
        await stopAll();
        throw e;
      }
      // Identities persist in --dir: a device an earlier run provisioned (for a system since restarted) is not
      // pairable again; say so now rather than at `pair`.
      const states = await Promise.all(consoles.map(async (c) => {
        const client = await ConsoleClient.open(c.url, { timeoutMs: 3000, retries: 1 }).catch(() => undefined);
        try {
          return client ? (await readIdentity(client)).state : 'unknown';
        } catch {
          return 'unknown';
        } finally {
          client?.close();
        }
      }));
      const registry: SimRegistry = { pid: process.pid, engine: o.engine, consoles: consoles.map((c, i) => ({ name: c.name, port: c.url, address: getAddress(c.address()), state: states[i], pair: `iotkx pair --port ${c.url}` })) };
      const regFile = join(dir, REGISTRY);
      writeFileSync(regFile, `${JSON.stringify(registry, null, 2)}\n`);
      out.result({ ...registry, registry: regFile }, () => {
        out.line(`${consoles.length} simulated device(s) (registry ${regFile}):`);
        for (const c of registry.consoles) {
          out.line(`  ${c.name}  ${c.address}  ${c.state}`);
          out.line(`    pair it:  ${c.state === 'unprovisioned' ? '' : '(already provisioned) '}iotkx pair --port ${c.port}`);
        }
        const kept = registry.consoles.filter((c) => c.state !== 'unprovisioned' && c.state !== 'unknown');
        if (kept.length) {
          out.line(`${kept.map((c) => c.name).join(', ')}: provisioned by an earlier run (identities persist in ${dir}). If \`npm start\` was restarted`);
          out.line(`  since (without --keep), they belong to the old system: stop this and run \`iotkx sim --fresh\` for new identities.`);
        }
        out.line('Ctrl-C stops them.');
      });
      await stopped;
      out.note('stopping simulated devices…');
      await stopAll();
      rmSync(regFile, { force: true });
    });
}

/** The simulator's files in its directory: device storage (XS: <name>.nvs.json, node: <name>.json, and temporaries) and the registry. */
const SIM_FILE = /^(sim[0-9]+\.(nvs\.)?json(\..+)?|consoles\.json)$/;

/**
 * The node engine's sensor seed, per identity: a domain-separated hash of the stored identity record (the
 * series reveals nothing of the key), random for a device that has none yet.
 */
function storedSeed(file: string): number {
  try {
    const id = (JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>).id;
    if (typeof id === 'string' && id) return createHash('sha256').update('iotkx-sim-sensor-seed').update(id).digest().readUInt32BE(0);
  } catch { /* a new device */ }
  return randomInt(2 ** 32);
}

/** The pid of a live `iotkx sim` whose registry is in dir, else undefined. */
function runningSim(dir: string): number | undefined {
  try {
    const pid = Number(JSON.parse(readFileSync(join(dir, REGISTRY), 'utf8')).pid);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return undefined;
    try {
      process.kill(pid, 0);
      return pid;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
    }
  } catch {
    return undefined;
  }
}

/** A device of helper code's XS simulator (hosts/sim): the firmware itself, its console on a TCP port. */
async function startXsConsole(o: { dir: string; name: string; port?: number; maxSleepMs: number }): Promise<SimConsole> {
  let mod: typeof import('../../hosts/sim/device.js');
  try {
    mod = await import('../../hosts/sim/device.js');
  } catch (e) {
    throw new CliError(EXIT.failure, 'no-xs-sim', `the XS simulator (hosts/sim) did not load: ${(e as Error).message}`, 'use --engine node');
  }
  const d = await mod.SimDevice.start({ dir: o.dir, name: o.name, consolePort: o.port ?? 0, maxSleepMs: o.maxSleepMs });
  if (d.bootError) {
    await d.stop();
    throw new CliError(EXIT.device, d.bootError.code, `simulated device ${o.name} refused to boot: ${d.bootError.message}`, `remove ${o.dir} (or --fresh) to start over`);
  }
  return { name: o.name, port: d.consolePort, url: `tcp://127.0.0.1:${d.consolePort}`, address: () => d.address, stop: () => d.stop() };
}
