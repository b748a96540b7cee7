/**
 * What the sensor firmware needs from the board, beyond lib/platform.ts: one small
 * interface that each adapter (Moddable on the ESP32, the XS simulator) supplies.
 * App logic (app.ts, console.ts) sees only this and lib/.
 */
import type { Sensor } from '../../../lib/device/sensor.js';
import type { Clock, Random, Storage, Transport } from '../../../lib/platform.js';

/** The provisioning console's byte stream (§6): serial on the board, loopback TCP in the simulator. */
export interface ConsolePort {
  /** Deliver each received line (without its newline) to `onLine`. */
  listen(onLine: (line: string) => void): void;
  /** Send one line; the port adds the newline. */
  write(line: string): void;
}

export interface Network {
  /** Join the provisioned network (or keep the one the build joined); resolves once the relay is reachable in principle. */
  connect(credentials: { ssid: string; password: string } | undefined): Promise<void>;
}

export interface FirmwarePlatform {
  /** Firmware name and version reported by `identity` (§6). */
  firmware: string;
  /** RAW NVS: `set` erases the key before it writes (MODDABLE.md §3); the app wraps it in SafeStorage. */
  storage: Storage;
  /** The hardware RNG (ESP32: esp_fill_random), or undefined when the platform has none: then the app refuses to run. */
  random: Random | undefined;
  clock: Clock;
  /** Set the clock from network time (Moddable: SNTP) once the network is up; rejects when no server answers. */
  syncClock?(): Promise<void>;
  transport: Transport;
  sensor: Sensor;
  console: ConsolePort;
  network: Network;
  /** One-shot timer. */
  setTimer(callback: () => void | Promise<void>, ms: number): void;
  /** Reboot the device (after the current console reply went out). */
  restart(): void;
  /** Diagnostics (trace / xsbug / the simulator's log). Never given secrets. */
  log(line: string): void;
}
