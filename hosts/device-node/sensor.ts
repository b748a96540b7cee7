/**
 * A synthetic sensor with plausible drift: temperature around 21 °C and relative
 * humidity around 45 % as slow, mean-reverting random walks (seeded per device so
 * a fleet does not move in lockstep), rounded as an SHT3x reports them (0.01).
 */
import type { Sensor } from '../../lib/device/sensor.js';

/** mulberry32: a tiny seeded PRNG; fine for fake weather, never for keys. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function syntheticSensor(seed = Math.floor(Math.random() * 2 ** 32)): Sensor {
  const rnd = prng(seed);
  let temp = 21 + (rnd() - 0.5) * 2;
  let rh = 45 + (rnd() - 0.5) * 6;
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    read() {
      temp += (rnd() - 0.5) * 0.2 + (21 - temp) * 0.02;
      rh += (rnd() - 0.5) * 0.6 + (45 - rh) * 0.02;
      rh = Math.min(100, Math.max(0, rh));
      return { temp: round(temp), rh: round(rh) };
    },
  };
}
