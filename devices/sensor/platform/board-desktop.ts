/**
 * lin/mac/win board parts (the SDK's mcsim desktop build): no UART and no Wi-Fi (the host is online), no sensor
 * chip. The console is a loopback TCP port (native iotkx/desktop: 127.0.0.1 only, $IOTKX_CONSOLE_PORT or one the OS
 * picks, announced by trace as `console: tcp://127.0.0.1:<port>`), so `iotkx pair --port tcp://…` provisions it like
 * the simulator. Readings carry the host's load average (`load`), a real measurement, in place of a sensor.
 * The hardware RNG is the OS's (native getrandom/arc4random/BCryptGenRandom, devices/sensor/native): the SDK's own
 * c_rand is unseeded on desktops and never used for keys (MODDABLE.md §3).
 */
import config from 'mc/config';
import Timer from 'timer';
import Desktop from 'iotkx/desktop';
import HardwareRandom from 'iotkx/hwrandom';
import restart from 'iotkx/restart';
import { utf8Encode } from '../../../lib/bytes.js';
import type { Random } from '../../../lib/platform.js';
import { LineSplitter } from '../console.js';
import type { ConsolePort } from './types.js';

const cfg = config as { firmware?: string };
/** How often the console socket is polled (ms). */
const POLL_MS = 20;

const random: Random = {
  bytes(n) {
    const b = new ArrayBuffer(n);
    HardwareRandom.fill(b, false);
    return new Uint8Array(b);
  },
};

function consolePort(): ConsolePort {
  let onLine: ((line: string) => void) | undefined;
  let listening = false;
  const split = new LineSplitter((line) => onLine?.(line));
  return {
    listen(cb) {
      onLine = cb;
      if (listening) return;
      listening = true;
      const port = Desktop.listen();
      trace(`console: tcp://127.0.0.1:${port}\n`);
      Timer.repeat(() => {
        for (let b = Desktop.poll(); b; b = Desktop.poll()) split.pushBytes(new Uint8Array(b));
      }, POLL_MS);
    },
    write(line) { Desktop.write(utf8Encode(`${line}\n`)); },
  };
}

export const board = {
  firmware: cfg.firmware ?? 'iotkx-sensor/desktop',
  random: random as Random | undefined,
  console: consolePort(),
  network: { connect: async () => undefined },
  sensor: { read(): Record<string, number> { return { load: Math.round(Desktop.loadavg() * 100) / 100 }; } },
  restart: () => { restart(); },
};
