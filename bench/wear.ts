/**
 * Flash wear (issue 18): NVS entries written per reading in steady state, and the projected
 * life of the 24 KiB NVS partition at 5, 10 and 60 s reading intervals.
 *
 * A. The sensor firmware (devices/sensor/app.ts, the code the simulator runs in XS and the
 *    board runs on Moddable) on Node, over the simulator's NVS (hosts/sim/nvs.ts: erase-then-
 *    write, a hook at every durable step), against a real anvil + KeyExchange + relay +
 *    receiver (hosts/system.ts) over real HTTP. The exchange runs in real time; then the
 *    device clock is advanced by the bench, timer by timer, so hours of readings at each
 *    interval take seconds. Counted from the third reading on (steady state), relay up; and
 *    a second count with the device's readings POSTs failing (relay unreachable).
 * B. The same firmware in the XS simulator (hosts/sim/device.ts), 20 readings at 1 s in steady
 *    state, against the same system: the figure issue 18 quoted before the change (41 writes,
 *    41 erases, 61 deletes, ~8 entries a reading).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseEther, type Address, type Hex } from 'viem';
import { keyExchangeAbi } from '../contracts/build/KeyExchange.js';
import { boot, type Firmware } from '../devices/sensor/app.js';
import type { FirmwarePlatform } from '../devices/sensor/platform/types.js';
import { connect } from '../hosts/chain/deploy.js';
import { NVS_ENTRIES, nvsEntries } from '../hosts/device-node/storage.js';
import { nodeTransport } from '../hosts/device-node/transport.js';
import { SimDevice } from '../hosts/sim/device.js';
import { SimNvs } from '../hosts/sim/nvs.js';
import { startSystem, type RunningSystem } from '../hosts/system.js';
import { IotkxError } from '../lib/errors.js';

/** Erase cycles a flash sector is rated for (ESP32 datasheets: 100,000). */
const ERASE_CYCLES = 100_000;
const YEAR_S = 365.25 * 86_400;

interface Count { writes: number; erases: number; deletes: number; entries: number }
const zero = (): Count => ({ writes: 0, erases: 0, deletes: 0, entries: 0 });

async function pair(sys: RunningSystem, address: string): Promise<void> {
  const key = fs.readFileSync(sys.info.operatorKeyFile, 'utf8').trim() as Hex;
  const op = await connect(sys.info.rpcUrl, key, sys.info.chainId);
  for (const h of [
    await op.walletClient.writeContract({ address: sys.info.contract, abi: keyExchangeAbi, functionName: 'enroll', args: [sys.info.receiverAddress, address as Address] } as any),
    await op.walletClient.sendTransaction({ to: address as Address, value: parseEther('0.1') } as any),
  ]) {
    const r = await op.publicClient.waitForTransactionReceipt({ hash: h });
    if (r.status !== 'success') throw new Error(`bench: pairing transaction ${h} failed`);
  }
}

function config(sys: RunningSystem, intervalSec: number) {
  return {
    relayUrl: sys.info.relayRpcUrl, chainId: String(sys.info.chainId), contract: sys.info.contract, receiver: sys.info.receiverAddress,
    intervalSec, maxFeePerGas: '100000000000', maxPriorityFeePerGas: '2000000000', offerGas: '150000', maxTxPerDay: 24,
    blockTime: 1, backoffMaxSec: 3600, rotation: { maxReadings: 0, maxAgeSec: 0 },
  };
}

/** The firmware on Node over SimNvs, its timers run by the bench (real time, or a device clock the bench advances). */
class NodeBoard {
  readonly nvs: SimNvs;
  count = zero();
  offline = false;
  rateLimited = 0;
  private offset = 0;
  private fast = false;
  private timers: Array<{ cb: () => void | Promise<void>; at: number }> = [];
  private onLine: ((l: string) => void) | undefined;
  private out: string[] = [];
  readonly fw: Firmware;
  readonly clock = { now: () => Date.now() + this.offset };

  constructor(file: string) {
    this.nvs = new SimNvs(file);
    this.nvs.hook = (key, step) => {
      if (step === 'written') { this.count.writes++; this.count.entries += nvsEntries(this.nvs.map.get(key)!.length); }
      else if (step === 'erased') this.count.erases++;
      else this.count.deletes++;
    };
    const inner = nodeTransport();
    const p: FirmwarePlatform = {
      firmware: 'bench', random: { bytes: (n) => new Uint8Array(randomBytes(n)) }, clock: this.clock, storage: this.nvs,
      transport: {
        request: async (method, url, body, ct) => {
          if (this.offline && url.endsWith('/v1/readings')) throw new IotkxError('transport-error', 'relay unreachable (bench)');
          // The relay's rate limit runs on real time while the device clock is fast-forwarded: wait it out
          // here (the device would have had the time), so the counts are those of a relay that keeps up.
          for (;;) {
            const r = await inner.request(method, url, body, ct);
            if (r.status !== 429) return r;
            this.rateLimited++;
            await new Promise((ok) => setTimeout(ok, 250));
          }
        },
      },
      sensor: { read: () => ({ temp: Math.round(2100 + Math.random() * 50) / 100, rh: Math.round(4500 + Math.random() * 100) / 100 }) },
      console: { listen: (cb) => { this.onLine = cb; }, write: (l) => { this.out.push(l); } },
      network: { connect: async () => undefined },
      setTimer: (cb, ms) => { this.timers.push({ cb, at: this.clock.now() + ms }); },
      restart: () => undefined,
      log: () => undefined,
    };
    this.fw = boot(p);
  }

  command(req: Record<string, unknown>): any {
    this.out = [];
    this.onLine!(JSON.stringify({ id: 1, ...req }));
    return JSON.parse(this.out.find((l) => JSON.parse(l).id === 1)!);
  }

  /** From now on the device clock jumps to each timer instead of waiting for it. */
  fastForward(): void { this.fast = true; }

  /** Run timers in due order until `done`. */
  async run(done: () => boolean, maxTimers = 1_000_000): Promise<void> {
    for (let i = 0; i < maxTimers && !done(); i++) {
      this.timers.sort((a, b) => a.at - b.at);
      const t = this.timers.shift();
      if (!t) { await new Promise((r) => setTimeout(r, 10)); continue; }
      const wait = t.at - this.clock.now();
      if (wait > 0) {
        if (this.fast) this.offset += wait;
        else await new Promise((r) => setTimeout(r, wait));
      }
      await t.cb();
    }
  }
}

async function nodeRun(sys: RunningSystem, dir: string, intervalSec: number, readings: number) {
  const b = new NodeBoard(path.join(dir, `wear-${intervalSec}.nvs.json`));
  const address = b.command({ cmd: 'identity' }).address as string;
  await pair(sys, address);
  if (!b.command({ cmd: 'provision', config: config(sys, intervalSec) }).ok) throw new Error('bench: provision failed');
  const st = () => b.fw.device!.status();
  await b.run(() => st().state === 'active' && st().readings.sent >= 2);
  b.fastForward();
  b.count = zero();
  const from = Number(st().lastReading!.seq);
  await b.run(() => Number(st().lastReading!.seq) >= from + readings && st().readings.queued === 0);
  const up = b.count;
  const live = b.nvs.entriesUsed();
  const droppedUp = st().readings.dropped;
  // The relay unreachable for as many readings: the queue spills to NVS.
  b.offline = true;
  b.count = zero();
  const from2 = Number(st().lastReading!.seq);
  const outage = Math.min(readings, 60);
  await b.run(() => Number(st().lastReading!.seq) >= from2 + outage);
  const down = b.count;
  b.offline = false;
  await b.run(() => st().readings.queued === 0);
  return { up, down, live, readings, outage, sent: st().readings.sent, droppedUp, droppedOutage: st().readings.dropped - droppedUp };
}

async function simRun(sys: RunningSystem, dir: string): Promise<Count & { readings: number }> {
  let counting = false;
  const count = zero();
  let d!: SimDevice;
  d = await SimDevice.start({
    dir, name: 'wear-sim', maxSleepMs: 500, consolePort: null,
    cut: (ev) => {
      if (!counting) return false;
      if (ev.step === 'written') { count.writes++; count.entries += nvsEntries(d.nvs.map.get(ev.key)?.length ?? 0); }
      else if (ev.step === 'erased') count.erases++;
      else count.deletes++;
      return false;
    },
  });
  try {
    await pair(sys, d.address);
    if (!(await d.console({ cmd: 'provision', config: config(sys, 1) })).ok) throw new Error('bench: sim provision failed');
    const status = () => d.console({ cmd: 'status' });
    const wait = async (pred: (s: any) => boolean, what: string) => {
      const end = Date.now() + 180_000;
      for (;;) {
        const s = await status();
        if (pred(s)) return s;
        if (Date.now() > end) throw new Error(`bench: timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const s0 = await wait((s) => s.state === 'active' && s.readings.sent >= 2, 'the simulated device to send readings');
    counting = true;
    const seq0 = Number(s0.lastReading.seq);
    await wait((s) => Number(s.lastReading.seq) >= seq0 + 20 && s.readings.queued === 0, '20 readings');
    counting = false;
    return { ...count, readings: 20 };
  } finally {
    await d.stop();
  }
}

export async function wearBench(readings = Number(process.env.IOTKX_BENCH_WEAR_READINGS ?? 1000)): Promise<{ header: string[]; rows: string[][]; method: string; figures: Record<string, number> }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotkx-bench-wear-'));
  const sys = await startSystem({ dataDir: path.join(dir, 'sys'), devices: 0, intervalSec: 10, blockTime: 1, offerTtlBlocks: 60 });
  const rows: string[][] = [];
  const figures: Record<string, number> = {};
  const f2 = (x: number) => x.toFixed(x < 10 ? 3 : 1);
  try {
    for (const interval of [5, 10, 60]) {
      const r = await nodeRun(sys, dir, interval, readings);
      const perReading = r.up.entries / r.readings;
      const budget = (NVS_ENTRIES - r.live) * ERASE_CYCLES;
      const years = perReading > 0 ? (budget / perReading) * interval / YEAR_S : Infinity;
      const downPer = r.down.entries / r.outage;
      const downYears = (budget / downPer) * interval / YEAR_S;
      figures[`entriesPerReading${interval}`] = perReading;
      figures[`lifeYears${interval}`] = years;
      rows.push([`${interval} s, relay up: NVS entries written per reading (${r.readings} readings; ${r.up.writes} writes, ${r.up.erases} erases, ${r.up.deletes} deletes)`, f2(perReading), '']);
      rows.push([`${interval} s, relay up: projected partition life (${NVS_ENTRIES} − ${r.live} live entries) × ${ERASE_CYCLES.toLocaleString('en')} cycles`, `${years > 1000 ? '> 1000' : years.toFixed(0)} years`, interval === 10 ? '≥ 10 years' : '']);
      rows.push([`${interval} s, relay unreachable for ${r.outage} readings: entries per reading, and life if it never came back (${r.droppedOutage} dropped as the oldest)`, `${f2(downPer)} / ${downYears.toFixed(1)} years`, '']);
      if (r.droppedUp !== 0) throw new Error(`bench: ${r.droppedUp} readings dropped at ${interval} s with the relay up`);
    }
    const s = await simRun(sys, dir);
    figures.simEntriesPerReading = s.entries / s.readings;
    rows.push([`XS simulator, 1 s interval, 20 readings in steady state: writes / erases / deletes`, `${s.writes} / ${s.erases} / ${s.deletes}`, 'was 41 / 41 / 61']);
    rows.push(['XS simulator: NVS entries written per reading', f2(s.entries / s.readings), 'was ~8']);
  } finally {
    await sys.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return {
    header: ['what', 'measured', 'target'],
    rows,
    figures,
    method: 'Entries are ESP-IDF NVS 32-byte entries, counted at every `set` of the simulator\'s NVS (hosts/sim/nvs.ts) as 2 + ⌈bytes/32⌉ (index entry, chunk header, data) for the raw value written (SafeStorage slot with its 9-byte header and CRC); erases and deletes mark entries free and write none. '
      + 'Part A runs devices/sensor/app.ts on Node over that NVS against a real anvil + KeyExchange + relay + receiver over HTTP; after the exchange the bench advances the device clock timer by timer, so the counts cover hours of readings (and the engine\'s 10-minute idle checks) at each interval, from the third reading on. '
      + 'Projected life = (NVS working entries − live entries) × erase cycles / entries per reading × interval, with 630 working entries (6 pages of 126, one kept free by NVS) and 100,000 cycles: NVS writes entries round-robin through its pages and erases a page only once it is full, and each cycle of a page frees only its non-live entries. '
      + '"Relay unreachable" makes the device\'s readings POSTs fail: each failed drain spills the RAM queue (one slot write, appended to the newest slot while it fits), the rest waits in RAM for a batch of 8. The relay\'s rate limit runs on real time while the device clock is fast-forwarded, so a 429 is waited out in the bench\'s transport. '
      + 'Part B is the same firmware in the XS simulator, 20 readings at a 1-s interval, against the same system (the measurement issue 18 quoted before this change).',
  };
}
