/**
 * The firmware on the real Moddable SDK (tools/moddable-setup.sh): bytecode size per target from xsl's module table
 * (mc.xs.c), and memory on Moddable's runtime measured with its own instrumentation (xsbug `<samples>` of a -d lin
 * build in mcsim: "Chunk used", "Slot used", "Stack used") at boot, through an exchange, and through N readings,
 * against each esp32 target's creation values. `npm run bench moddable`; skipped with a reason without the SDK.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from '../hosts/xs/bundle.js';
import { buildFirmware, findSdk, readLinked, ESP32_TARGETS, type Target } from '../hosts/moddable/build.js';
import { McsimDevice, stopXvfb } from '../hosts/moddable/mcsim.js';
import type { Sample } from '../hosts/moddable/xsbug.js';

const OURS = /^(main$|lib\/|devices\/|@noble\/|rlp$|iotkx\/)/;
/** Slot size: txSlot is a next pointer, 4 bytes of ID/flag/kind and an 8- or 16-byte value (xs/sources/xsAll.h). */
const SLOT_64 = 32;
const SLOT_32 = 16;

function cli(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [path.join(ROOT, 'tools/iotkx.js'), ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => { stdout += d; });
    c.stderr.on('data', (d) => { stderr += d; });
    c.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

const peak = (samples: Sample[], from: number, to = samples.length) => {
  const s = samples.slice(from, to);
  const max = (k: string) => Math.max(0, ...s.map((x) => x[k] ?? 0));
  return { chunk: max('Chunk used'), slotBytes: max('Slot used'), stack: max('Stack used') };
};

export async function moddableBench(readingsWanted = Number(process.env.IOTKX_BENCH_READINGS ?? 100)) {
  const sdk = findSdk();
  if ('missing' in sdk) return { header: ['what', 'measured'], rows: [['skipped', sdk.missing]], method: 'needs tools/moddable-setup.sh' };
  const rows: string[][] = [];
  const figures: Record<string, unknown> = {};

  // 1. Bytecode per target (xsl's module table).
  const creation: Record<string, { chunk: number; heap: number; stack: number }> = {};
  for (const t of [...ESP32_TARGETS, 'lin'] as Target[]) {
    const b = buildFirmware(sdk, t, t === 'lin' ? { debug: true } : {});
    const l = readLinked(b.mcXsC);
    const ours = l.modules.filter((m) => OURS.test(m.name));
    const bytes = ours.reduce((a, m) => a + m.codeSize, 0);
    creation[t] = { chunk: l.creation.chunk, heap: l.creation.heap, stack: l.creation.stack };
    rows.push([`${t}: bytecode of our modules (lib, devices, noble, rlp)`, `${(bytes / 1024).toFixed(1)} KiB in ${ours.length} modules (${ours.filter((m) => m.preloaded).length} preloaded)`, `creation: chunk ${l.creation.chunk} B, heap ${l.creation.heap} slots, stack ${l.creation.stack} slots`]);
    figures[`bytecode:${t}`] = bytes;
  }

  // 2. Memory on Moddable's runtime: boot, exchange, readings.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotkx-bench-moddable-'));
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('IOTKX_') && k !== 'MODDABLE') env[k] = v;
  const system = spawn(path.join(ROOT, 'node_modules/.bin/tsx'), ['hosts/start.ts', '--devices', '0', '--data-dir', path.join(dir, 'run')], { cwd: ROOT, env, stdio: 'ignore' });
  let device: McsimDevice | undefined;
  try {
    const built = buildFirmware(sdk, 'lin', { debug: true });
    fs.mkdirSync(path.join(dir, 'device'));
    device = await McsimDevice.start({ sdk, library: built.library!, dir: path.join(dir, 'device') });
    const url = await device.consoleUrl();
    const file = path.join(dir, 'run', 'system.json');
    for (let i = 0; i < 240 && !fs.existsSync(file); i++) await new Promise((r) => setTimeout(r, 500));
    env.IOTKX_SYSTEM = file;
    await new Promise((r) => setTimeout(r, 3000)); // a few boot samples
    const boot = peak(device.xsbug.samples, 0);
    const t0 = Date.now();
    const pair = await cli(['pair', '--port', url, '--yes', '--interval', '1', '--exchanges', '5', '--json'], dir, env);
    if (pair.code !== 0) throw new Error(`pair failed: ${pair.stderr}`);
    const pairMs = Date.now() - t0;
    const address = JSON.parse(pair.stdout).device;
    // pair reboots the device; samples restart with the new lifetime.
    await device.rebooting;
    const exchange = peak(device.xsbug.samples, 0);
    const afterExchange = device.xsbug.samples.length;
    let n = 0;
    const deadline = Date.now() + readingsWanted * 4000 + 60_000;
    while (Date.now() < deadline) {
      const r = await cli(['readings', address, '--json'], dir, env);
      n = r.stdout.trim().split('\n').filter(Boolean).length;
      if (n >= readingsWanted) break;
      await new Promise((res) => setTimeout(res, 3000));
    }
    const readings = peak(device.xsbug.samples, afterExchange);
    const all = peak(device.xsbug.samples, 0);
    figures.memory = { boot, exchange, readings, n, pairMs };
    const fmt = (p: { chunk: number; slotBytes: number; stack: number }) =>
      `chunk ${p.chunk} B, ${p.slotBytes / SLOT_64} slots (${p.slotBytes} B at ${SLOT_64} B/slot; ${(p.slotBytes / SLOT_64) * SLOT_32} B at ${SLOT_32} B), stack ${p.stack} B`;
    rows.push(['lin (64-bit) boot, peak', fmt(boot), '']);
    rows.push(['lin boot + exchange (after pair\'s reboot), peak', fmt(exchange), '']);
    rows.push([`lin through ${n} readings (1 s interval), peak`, fmt(readings), '']);
    const slots = all.slotBytes / SLOT_64;
    for (const t of ESP32_TARGETS) {
      const c = creation[t];
      const fitsSlots = slots <= c.heap;
      // Chunk bytes on 32-bit are at most the 64-bit figure (pointers and slot arrays halve; strings, BigInt and
      // bytecode do not): the lin figure is an upper bound, half of it a lower bound.
      const fitsChunk = all.chunk <= c.chunk ? 'fits' : all.chunk / 2 <= c.chunk ? 'may fit (between the bounds)' : 'does not fit';
      rows.push([`${t}: needs vs creation`, `slots ${slots} vs ${c.heap} (${fitsSlots ? 'fits' : 'DOES NOT FIT'}); chunk ${Math.round(all.chunk / 2)}..${all.chunk} B vs ${c.chunk} (${fitsChunk})`, '']);
    }
    rows.push(['pair → active (CLI wall time incl. chain blocks, 1 s block time)', `${(pairMs / 1000).toFixed(1)} s`, '']);
  } finally {
    await device?.kill();
    await stopXvfb();
    await new Promise<void>((r) => { if (system.exitCode !== null) r(); else { system.once('exit', () => r()); system.kill('SIGINT'); setTimeout(() => system.kill('SIGKILL'), 20_000).unref(); } });
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return {
    header: ['what', 'measured', 'creation / notes'],
    rows,
    figures,
    method: 'Moddable SDK 8.2.3 built by tools/moddable-setup.sh. Bytecode: the codeSize of each of our modules in xsl\'s gxScripts table (mc.xs.c) per target (preloaded modules carry no bytecode there: their code lives in the preloaded heap). Memory: the lin -d build in mcsim under Xvfb, instrument samples (once a second) over the xsbug protocol, peak of "Chunk used", "Slot used" and "Stack used". Slot counts are the same on a 32-bit ESP32 (16-byte slots instead of 32, xs/sources/xsAll.h txSlot: next pointer + 4 bytes of ID/flag/kind + value union of two pointers); chunk bytes on 64-bit overstate 32-bit: slot arrays and pointers halve, string, BigInt and ArrayBuffer bytes do not, so the 32-bit need lies between half the lin figure and the lin figure. Exchange timing on Moddable XS vs xsnap is not separated from the chain here (pair\'s wall time includes 1 s blocks).',
  };
}
