/**
 * lin/mac/win board parts (the SDK's mcsim desktop build): no UART and no Wi-Fi
 * (the host is online), console replies through trace, no sensor chip. The hardware
 * RNG is the OS's (native getrandom/arc4random/BCryptGenRandom, devices/sensor/native):
 * the SDK's own c_rand is unseeded on desktops and never used for keys (MODDABLE.md §3).
 */
import config from 'mc/config';
import HardwareRandom from 'iotkx/hwrandom';
import restart from 'iotkx/restart';
import { IotkxError } from '../../../lib/errors.js';
import type { Random } from '../../../lib/platform.js';
import type { ConsolePort } from './types.js';

const cfg = config as { firmware?: string };

const random: Random = {
  bytes(n) {
    const b = new ArrayBuffer(n);
    HardwareRandom.fill(b, false);
    return new Uint8Array(b);
  },
};

const console: ConsolePort = {
  listen() { /* no input port on the desktop build: provision through the XS simulator (npm start) instead */ },
  write(line) { trace(`${line}\n`); },
};

export const board = {
  firmware: cfg.firmware ?? 'iotkx-sensor/desktop',
  random: random as Random | undefined,
  console,
  network: { connect: async () => undefined },
  sensor: { read(): Record<string, number> { throw new IotkxError('no-sensor', 'the desktop build has no sensor'); } },
  restart: () => { restart(); },
};
