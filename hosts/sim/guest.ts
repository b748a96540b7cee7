/**
 * The simulator's XS bundle entry: the sensor firmware (devices/sensor/app.ts) over
 * the simulator platform, exposed to the Node host (hosts/sim/device.ts).
 */
import { serve } from '../xs/guest.js';
import { boot, type Firmware } from '../../devices/sensor/app.js';
import { consoleInput, fireTimer, simPlatform, takeOutput } from '../../devices/sensor/platform/sim.js';

let fw: Firmware | undefined;

serve({
  noop: () => null,
  boot: (opts: { hardwareRandom?: boolean; maxSleepMs?: number; queue?: Record<string, number> } = {}) => {
    fw = boot(simPlatform({ hardwareRandom: opts.hardwareRandom }), { maxSleepMs: opts.maxSleepMs, queue: opts.queue });
    return { bootError: fw.bootError, output: takeOutput() };
  },
  console: (line: string) => consoleInput(line),
  fire: async (id: number) => {
    await fireTimer(id);
    return takeOutput();
  },
});
