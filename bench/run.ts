/**
 * `npm run bench`: runs every benchmark, prints the figures, and rewrites
 * bench/RESULTS.md with them and with how they were obtained.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { table } from './table.js';
import { xsLibBench } from './xs-lib.js';

const here = path.dirname(fileURLToPath(import.meta.url));

interface Section { title: string; header: string[]; rows: string[][]; method: string }

async function optional<T>(file: string, fn: (m: any) => Promise<T>): Promise<T | undefined> {
  if (!fs.existsSync(path.join(here, file))) return undefined;
  return fn(await import(`./${file}`));
}

const sections: Section[] = [];
const only = process.argv.slice(2);
const want = (name: string) => only.length === 0 || only.includes(name);

if (want('xs')) {
  const xs = await xsLibBench();
  sections.push({
    title: 'lib/ on the XS engine',
    header: ['what', 'measured', 'target'],
    rows: xs.rows,
    method:
      'XS figures are `meterUsage.compute` from xsnap-worker (@agoric/xsnap 0.15.0, XS 13.3, x86-64): a deterministic count of bytecodes and size-weighted built-in work, identical run to run, minus a no-op delivery. "Warm" is the second call. Retained heap is the growth of a heap snapshot (after `gc()`) from just after the bundle loaded to after the sequence; xsnap\'s 64-bit layout uses 32-byte slots, the ESP32 16-byte ones. Bundle sizes are esbuild minified IIFE (es2022), gzip level 6. micro-eth-signer and eciesjs run in the same engine, in the same run, with xsnap\'s TextEncoder kept for them.',
  });
}
if (want('gas')) {
  await optional('gas.ts', async (m) => {
    const rows = await m.gasBench();
    sections.push({ title: 'KeyExchange gas (anvil receipts)', header: Object.keys(rows[0]), rows: rows.map((r: any) => Object.values(r).map((v) => (v === undefined ? "" : String(v)))), method: `gasUsed from receipts on a fresh anvil (latest hardfork), contract compiled for evmVersion ${(await import('../contracts/build.js')).EVM_VERSION} (docs/DECISIONS.md "EVM target"; \`npx tsx bench/gas.ts --compare-evm\` sets it beside solc's newest target); floor = 21,000 + calldata (4 gas per zero byte, 16 per non-zero) + 20,000 per storage slot first written.` });
  });
}
if (want('relay')) {
  await optional('relay.ts', async (m) => {
    const r = await m.relayBench();
    sections.push({ title: 'Relay', header: r.header, rows: r.rows, method: r.method });
    if (r.posts) sections.push({ title: 'Relay: durable POST /v1/readings (group commit)', header: r.posts.header, rows: r.posts.rows, method: r.posts.method });
  });
}
if (want('readings')) {
  await optional('readings.ts', async (m) => {
    const r = await m.readingsBench();
    sections.push({ title: 'Readings: relay → receiver, and decrypt rate', header: r.header, rows: r.rows, method: r.method });
  });
}

if (want('exchange')) {
  await optional('exchange.ts', async (m) => {
    const r = await m.exchangeBench();
    sections.push({ title: 'Key exchange end to end (device on XS, receiver)', header: r.header, rows: r.rows, method: r.method });
  });
}
if (want('moddable')) {
  await optional('moddable.ts', async (m) => {
    const r = await m.moddableBench();
    sections.push({ title: 'Firmware on the Moddable SDK 8.2.3 (bytecode per target, memory on Moddable XS)', header: r.header, rows: r.rows, method: r.method });
  });
}
if (want('firmware')) {
  await optional('firmware.ts', async (m) => {
    const r = await m.firmwareBench();
    sections.push({ title: 'Sensor firmware (size, XS boot/exchange/reading, simulated fleet)', header: r.header, rows: r.rows, method: r.method });
  });
}

if (want('channel')) {
  await optional('channel.ts', async (m) => {
    const r = await m.channelBench();
    sections.push({ title: 'Relay channel check: cost per POST (enrolment index vs the former per-address getLogs)', header: r.header, rows: r.rows, method: r.method });
  });
}
if (want('wear')) {
  await optional('wear.ts', async (m) => {
    const r = await m.wearBench();
    sections.push({ title: 'Flash wear: NVS entries per reading and partition life', header: r.header, rows: r.rows, method: r.method });
  });
}

const body = sections.map((s) => `${table(s.title, s.header, s.rows)}\n${s.method}\n`).join('\n');
console.log(body);
if (only.length === 0) {
  const head = `# Benchmark results\n\nWritten by \`npm run bench\` (bench/run.ts) on ${new Date().toISOString().slice(0, 10)}: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}. Wall-clock figures on this shared machine are noisy; compute figures from the XS meter are exact.\n\n`;
  fs.writeFileSync(path.join(here, 'RESULTS.md'), head + body);
}
