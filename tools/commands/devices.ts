/**
 * `iotkx devices`: serial ports (the `serialport` package; USB-serial adapters of ESP32 boards show their
 * vendor id) and simulator consoles (the registry `iotkx sim` writes, or `consoles` in the join file).
 * TCP consoles are asked for their identity (cheap); serial ports only with --probe, since opening
 * a port can reset a board.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { getAddress } from 'viem';
import { ConsoleClient, readIdentity } from '../console-client.js';
import { Out, resolveSettings, type GlobalOpts } from '../context.js';
import { DEFAULT_SIM_DIR, REGISTRY } from './sim.js';

/** USB vendor ids of the USB-serial bridges found on ESP32 boards (and Espressif's own USB-JTAG/serial). */
const KNOWN_VENDORS: Record<string, string> = { '10c4': 'Silicon Labs CP210x', '1a86': 'WCH CH34x', '0403': 'FTDI', '303a': 'Espressif USB' };

interface Entry {
  port: string;
  kind: 'serial' | 'sim';
  description?: string;
  address?: string;
  state?: string;
  firmware?: string;
  error?: string;
}

async function listSerial(): Promise<{ entries: Entry[]; note?: string }> {
  try {
    const { SerialPort } = await import('serialport');
    const ports = await SerialPort.list();
    return {
      entries: ports.map((p) => {
        const vid = p.vendorId?.toLowerCase();
        const desc = [vid ? KNOWN_VENDORS[vid] ?? `USB ${vid}:${p.productId ?? '?'}` : undefined, p.manufacturer, p.serialNumber ? `s/n ${p.serialNumber}` : undefined].filter(Boolean).join(', ');
        return { port: p.path, kind: 'serial' as const, description: desc || undefined };
      }),
    };
  } catch (e) {
    return { entries: [], note: `serial ports unavailable (serialport did not load: ${(e as Error).message})` };
  }
}

function simEntries(simDir: string, fromSystem: { name?: string; port: string }[] | undefined): Entry[] {
  const out: Entry[] = [];
  const reg = join(simDir, REGISTRY);
  if (existsSync(reg)) {
    try {
      const r = JSON.parse(readFileSync(reg, 'utf8')) as { consoles?: { name?: string; port: string }[] };
      for (const c of r.consoles ?? []) out.push({ port: c.port, kind: 'sim', description: c.name });
    } catch { /* a registry being rewritten: skip */ }
  }
  for (const c of fromSystem ?? []) if (!out.some((e) => e.port === c.port)) out.push({ port: c.port, kind: 'sim', description: c.name });
  return out;
}

export function registerDevices(program: Command): void {
  program.command('devices')
    .summary('list serial ports and simulator consoles')
    .description('Lists serial ports (USB-serial bridges of ESP32 boards are named) and simulator consoles (from `iotkx sim`\'s registry or the join file). Simulator consoles are asked for their identity.')
    .option('--sim-dir <dir>', 'directory of `iotkx sim`\'s registry', DEFAULT_SIM_DIR)
    .option('--probe', 'also ask serial ports for their identity (opening a port may reset a board)')
    .option('--console-timeout <ms>', 'identity deadline per console', (v) => Number(v), 1500)
    .action(async (o: { simDir: string; probe?: boolean; consoleTimeout: number }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOpts;
      const out = new Out(!!g.json);
      const s = resolveSettings(g);
      const serial = await listSerial();
      const entries = [...serial.entries, ...simEntries(o.simDir, s.consoles)];
      await Promise.all(entries.map(async (e) => {
        if (e.kind === 'serial' && !o.probe) return;
        let c: ConsoleClient | undefined;
        try {
          c = await ConsoleClient.open(e.port, { timeoutMs: o.consoleTimeout, retries: 0, connectTimeoutMs: o.consoleTimeout });
          const id = await readIdentity(c);
          Object.assign(e, { address: getAddress(id.address), state: id.state, firmware: id.firmware });
        } catch (err) {
          e.error = (err as Error).message;
        } finally {
          c?.close();
        }
      }));
      out.result({ devices: entries, ...(serial.note ? { note: serial.note } : {}) }, () => {
        if (serial.note) out.note(serial.note);
        if (!entries.length) out.line('no serial ports and no simulator consoles (start some with `iotkx sim`)');
        for (const e of entries) {
          const who = e.address ? `  ${e.address} ${e.state} (${e.firmware})` : e.error ? `  (${e.error})` : '';
          out.line(`${e.kind.padEnd(6)} ${e.port}${e.description ? `  ${e.description}` : ''}${who}`);
        }
      });
    });
}
