// PROTOCOL.md §5.3: a device "signs at most maxTxPerDay transactions a day". The wall clock is not a
// measure of that day: SNTP answers (relayed, unauthenticated) and RTC glitches move it anywhere. The
// budget runs on measured time (the platform's monotonic clock, accumulated across reboots and
// persisted), so a clock that jumps or races changes nothing (docs/DECISIONS.md).
import '../helpers/node-random.js';
import { nodeRandom } from '../helpers/node-random.js';
import { DeviceEngine } from '../../lib/device/engine.js';
import { rig, type Rig } from './harness.js';

const DAY = 86_400_000;

/** The relay says every landed epoch was rejected: the device offers again as soon as spacing allows. */
function alwaysRejected(r: Rig): void {
  r.chain.receiver.policy = 'ignore';
  r.chain.tamper = (m, p, res) => {
    if (m === 'eth_call' && String(p[0].data).startsWith('0x2b10eefa')) {
      const b = Buffer.from(res.slice(2), 'hex');
      if (b.readBigUInt64BE(56) > 0n) b[95] = 3;
      return `0x${b.toString('hex')}`;
    }
    return undefined;
  };
}
const signatures = (r: Rig) => new Set(r.chain.broadcasts).size;

/**
 * The budget's windows (DECISIONS.md): a window opens at the first signature after the previous window
 * closed and lasts 24 h of measured time; it holds at most `max` signatures. Replayed over the
 * signature times (measured), so any 24 h span holds at most 2 × max (the end of one window, the start of the next).
 */
function assertWindows(signedAt: number[], max: number): void {
  let start = -Infinity, n = 0;
  for (const a of signedAt) {
    if (a - start >= DAY) { start = a; n = 0; }
    n++;
    expect({ window: start, n: Math.min(n, max + 1) }).toEqual({ window: start, n: Math.min(n, max) });
  }
  for (const a of signedAt) expect(signedAt.filter((b) => b >= a && b < a + DAY).length).toBeLessThanOrEqual(2 * max);
}

test('one forward jump of the wall clock (to 2100, then corrected) does not cap the budget for years', async () => {
  const r = await rig({ maxTxPerDay: 3, backoffMaxSec: 60 });
  alwaysRejected(r);
  const trueStart = r.clock.now();
  const t0 = r.clock.mono;
  r.clock.t = Date.UTC(2100, 0, 1);
  const signedAt: number[] = [];
  for (let i = 0; i < 20 && signatures(r) < 1; i++) {
    const s = await r.dev.step();
    if (signatures(r) === 1) signedAt.push(r.clock.mono - t0);
    r.clock.advance(Math.max(s.waitMs, 1000));
  }
  expect(signatures(r)).toBe(1);
  r.clock.t = trueStart + 60_000; // corrected
  let seen = signatures(r);
  while (r.clock.mono - t0 < 5 * DAY) {
    const s = await r.dev.step();
    for (const n = signatures(r); seen < n; seen++) signedAt.push(r.clock.mono - t0);
    r.sleep(Math.max(s.waitMs, 1000));
  }
  // The budget comes back every 24 h (before this change: 2 signatures in 10 days), 3 per window.
  expect(signedAt.length).toBeGreaterThanOrEqual(12);
  assertWindows(signedAt, 3);
});

test('a wall clock that races forward (a day per real minute) gets no more than maxTxPerDay signatures per real day', async () => {
  const r = await rig({ maxTxPerDay: 3, backoffMaxSec: 60 });
  alwaysRejected(r);
  const signedAt: number[] = [];
  let seen = 0;
  while (r.clock.mono < 2 * DAY) {
    const s = await r.dev.step();
    for (const n = signatures(r); seen < n; seen++) signedAt.push(r.clock.mono);
    if (signedAt.length > 12) break; // already far over: fail fast
    const w = Math.max(1000, Math.min(s.waitMs, 60_000)); // the host steps at least every real minute
    r.clock.mono += w;
    r.chain.advanceBlocks(BigInt(Math.floor(w / 2000)));
    r.clock.t += w * 1440;
  }
  // At most 3 signatures per window of 24 h of real (measured) time, and the budget comes back.
  assertWindows(signedAt, 3);
  expect(signedAt.filter((a) => a < 3_600_000).length).toBeLessThanOrEqual(3);
  expect(signedAt.filter((a) => a >= DAY).length).toBeGreaterThan(0);
});

test('the budget window survives reboots: measured time is persisted, the monotonic clock restarts at each boot', async () => {
  const r = await rig({ maxTxPerDay: 2, backoffMaxSec: 60 });
  alwaysRejected(r);
  // A platform whose monotonic clock restarts at 0 on every boot, and a wall clock that is wrong by years.
  let bootAt = 0;
  const clock = { now: () => r.clock.t, monotonic: () => r.clock.mono - bootAt };
  const boot = () => { bootAt = r.clock.mono; r.clock.t += 400 * DAY; return (r.dev = new DeviceEngine({ storage: r.storage, random: nodeRandom, clock, transport: r.chain.transport() })); };
  let dev = boot();
  const signedAt: number[] = [];
  let seen = 0;
  while (r.clock.mono < 3 * DAY) {
    const s = await dev.step();
    for (const n = signatures(r); seen < n; seen++) signedAt.push(r.clock.mono);
    r.sleep(Math.max(1000, Math.min(s.waitMs, 3_600_000)));
    if (r.clock.mono - bootAt > 2 * 3_600_000) dev = boot(); // reboot every two hours
  }
  assertWindows(signedAt, 2);
  expect(signedAt.length).toBeGreaterThanOrEqual(4); // and the budget does come back
});

test('without a monotonic clock (platform fallback) a forward jump still does not cap the budget for years', async () => {
  const r = await rig({ maxTxPerDay: 3, backoffMaxSec: 60 });
  alwaysRejected(r);
  const clock = { now: () => r.clock.t };
  const dev = (r.dev = new DeviceEngine({ storage: r.storage, random: nodeRandom, clock, transport: r.chain.transport() }));
  const trueStart = r.clock.now();
  r.clock.t = Date.UTC(2100, 0, 1);
  for (let i = 0; i < 20 && signatures(r) < 1; i++) { const s = await dev.step(); r.clock.advance(Math.max(s.waitMs, 1000)); }
  r.clock.t = trueStart + 60_000;
  const before = signatures(r);
  const t0 = r.clock.mono;
  while (r.clock.mono - t0 < 3 * DAY) { const s = await dev.step(); r.sleep(Math.max(s.waitMs, 1000)); }
  expect(signatures(r) - before).toBeGreaterThanOrEqual(6);
  expect(signatures(r) - before).toBeLessThanOrEqual(12);
});
