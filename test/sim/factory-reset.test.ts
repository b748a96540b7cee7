// Issue 15 item 7: a factory reset must never brick the board. The firmware (devices/sensor/app.ts)
// runs here on Node over the simulator's NVS (hosts/sim/nvs.ts: erase-then-write, a hook at every
// durable step), a fake chain and manual timers, so the interleaving is exact: readings are running
// and a drain is in flight (its POST held) when the factory reset arrives; the POST completes after
// the wipe. Power is cut at every NVS step from the reset command through the next boots, then the
// board is powered on: it must boot (never `identity-missing`), either as it was (the reset never
// became durable) or as a new, unprovisioned identity with nothing else in its partition.
import '../helpers/node-random.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nodeRandom } from '../helpers/node-random.js';
import { boot, type Firmware } from '../../devices/sensor/app.js';
import type { FirmwarePlatform } from '../../devices/sensor/platform/types.js';
import { SimNvs } from '../../hosts/sim/nvs.js';
import type { HttpResponse } from '../../lib/platform.js';
import { FakeChain, FakeClock, deviceConfig } from '../device/fake-chain.js';

jest.setTimeout(180_000);

class Cut extends Error { constructor() { super('power cut'); } }
const flush = async () => { for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r)); };

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotkx-reset-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const chain = new FakeChain();
const clock = new FakeClock();

/** One power-on of the board: the firmware over the NVS file, until power is cut. */
class Board {
  readonly nvs: SimNvs;
  dead = false;
  restartAsked = false;
  holdPosts = false;
  readonly held: Array<(r: HttpResponse) => void> = [];
  posts = 0;
  private timers: Array<{ cb: () => void | Promise<void>; at: number }> = [];
  private onLine: ((l: string) => void) | undefined;
  private out: string[] = [];
  fw!: Firmware;

  /** `cutAt`: cut power after this many NVS steps from when armed (undefined: never). */
  constructor(file: string, private readonly cut: { at?: number; steps: number } = { steps: 0 }) {
    this.nvs = new SimNvs(file);
  }

  arm(): void {
    this.nvs.hook = () => {
      if (this.cut.at !== undefined && this.cut.steps++ === this.cut.at) { this.dead = true; throw new Cut(); }
    };
  }

  start(): Firmware {
    const live = <T>(fn: () => T): T => { if (this.dead) throw new Cut(); return fn(); };
    const p: FirmwarePlatform = {
      firmware: 'test', random: nodeRandom, clock,
      storage: {
        get: (k) => live(() => this.nvs.get(k)),
        set: (k, v) => live(() => this.nvs.set(k, v)),
        delete: (k) => live(() => this.nvs.delete(k)),
      },
      transport: {
        request: async (method, url, body, ct) => {
          if (this.dead) throw new Error('no power');
          if (!url.endsWith('/v1/readings')) return chain.transport().request(method, url, body, ct);
          this.posts++;
          if (this.holdPosts) return new Promise<HttpResponse>((resolve) => this.held.push(resolve));
          return { status: 202, body: new Uint8Array(0) };
        },
      },
      sensor: { read: () => ({ temp: 21.5, rh: 40 }) },
      console: { listen: (cb) => { this.onLine = cb; }, write: (l) => { this.out.push(l); } },
      network: { connect: async () => undefined },
      setTimer: (cb, ms) => { if (!this.dead) this.timers.push({ cb, at: clock.now() + ms }); },
      restart: () => { if (!this.dead) this.restartAsked = true; },
      log: () => undefined,
    };
    this.fw = boot(p, { maxSleepMs: 5_000 });
    return this.fw;
  }

  /** One console line; its reply (or undefined if power went out during it). */
  command(req: Record<string, unknown>): any {
    this.out = [];
    try {
      this.onLine!(JSON.stringify({ id: 7, ...req }));
    } catch (e) {
      if (!(e instanceof Cut)) throw e;
    }
    const line = this.out.find((l) => JSON.parse(l).id === 7);
    return line ? JSON.parse(line) : undefined;
  }

  /** Fire timers in due order (time and blocks pass) until `done`, power is cut, or `max` timers. */
  async run(done: () => boolean, max = 500): Promise<void> {
    for (let i = 0; i < max && !this.dead && !done(); i++) {
      await flush();
      if (done() || this.dead) break;
      this.timers.sort((a, b) => a.at - b.at);
      const t = this.timers.shift();
      if (!t) continue;
      if (t.at > clock.now()) {
        const dt = t.at - clock.now();
        clock.advance(dt);
        chain.advanceBlocks(BigInt(Math.max(1, Math.floor(dt / 2000))));
      }
      void Promise.resolve().then(t.cb).catch((e) => { if (!(e instanceof Cut)) throw e; });
    }
    await flush();
  }
}

let prepared = '';
let oldAddress = '';

beforeAll(async () => {
  await chain.publishReceiverKey();
  prepared = path.join(dir, 'prepared.nvs.json');
  const b = new Board(prepared);
  b.start();
  expect(b.fw.bootError).toBeNull();
  oldAddress = b.command({ cmd: 'identity' }).address;
  chain.enroll(oldAddress);
  expect(b.command({ cmd: 'provision', config: deviceConfig(chain.receiver.address, { intervalSec: 10 }) }).ok).toBe(true);
  await b.run(() => b.fw.device!.status().readings.sent >= 3);
  expect(b.fw.device!.status()).toMatchObject({ state: 'active' });
});

/** Power on from `file` with no cut: the board must boot; returns its identity and keys left in NVS. */
async function powerOn(file: string): Promise<{ address: string; state: string; keys: string[] }> {
  const b = new Board(file);
  b.start();
  expect(b.fw.bootError).toBeNull();
  const id = b.command({ cmd: 'identity' });
  expect(id.ok).toBe(true);
  return { address: id.address, state: id.state, keys: [...b.nvs.map.keys()].sort() };
}

test('a power cut at every NVS step of a factory reset, with a drain in flight: the board always boots, as before or as a new empty identity', async () => {
  const outcomes: string[] = [];
  for (let at = 0; ; at++) {
    const file = path.join(dir, `cut-${at}.nvs.json`);
    fs.copyFileSync(prepared, file);
    const cut = { at, steps: 0 };
    // Power-on A: readings running; the next drain's POST is held open.
    const a = new Board(file, cut);
    a.start();
    expect(a.fw.bootError).toBeNull();
    a.holdPosts = true;
    await a.run(() => a.held.length > 0);
    expect(a.held.length).toBe(1);
    a.arm();
    const reply = a.command({ cmd: 'factory-reset', confirm: oldAddress });
    if (!a.dead) expect(reply).toMatchObject({ ok: true, wiped: true });
    // The POST in flight completes after the wipe (202), and timers run until the reboot.
    a.held.shift()!({ status: 202, body: new Uint8Array(0) });
    await a.run(() => a.restartAsked, 50);
    if (!a.dead) expect(a.restartAsked).toBe(true);
    // Power-on B (the reboot the reset asked for, still cut-able), a few ticks.
    if (!a.dead) {
      const b = new Board(file, cut);
      b.arm();
      b.start();
      if (!b.dead) {
        expect(b.fw.bootError).toBeNull();
        await b.run(() => false, 5);
      }
    }
    const cutMade = cut.steps > at;
    // Power-on C without cuts, and D: a plain reboot keeps what C found.
    const c = await powerOn(file);
    const d = await powerOn(file);
    expect(d.address).toBe(c.address);
    if (c.address === oldAddress) {
      expect(c.state).toBe('active'); // the reset never became durable: the device is as it was
      outcomes.push(`${at}:kept`);
    } else {
      expect(c.state).toBe('unprovisioned');
      expect(c.keys.every((k) => /^id\.[01]$/.test(k))).toBe(true);
      outcomes.push(`${at}:new`);
    }
    if (!cutMade) break; // this run went through with no cut: every step has been cut once
  }
  expect(outcomes.length).toBeGreaterThan(10);
  expect(outcomes.filter((o) => o.endsWith(':new')).length).toBeGreaterThan(outcomes.length / 2);
  // eslint-disable-next-line no-console
  console.log(`factory reset, cut at each of ${outcomes.length - 1} NVS steps: ${outcomes.join(' ')}`);
});
