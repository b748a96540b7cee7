/**
 * ESP32 board parts for the Moddable adapter: the §6 console on a UART
 * (`embedded:io/serial`), Wi-Fi (`embedded:network/interface/wifi`), an SHT3x on
 * the provider's default I2C bus with the chip's own temperature sensor as fallback,
 * the hardware RNG and restart (native, devices/sensor/native). Pins come from the
 * host provider (`device`) and `mc/config`, never from here (STYLE.md).
 */
import Serial from 'embedded:io/serial';
import WiFi from 'embedded:network/interface/wifi';
import SHT3x from 'embedded:sensor/Humidity-Temperature/SHT3x';
import config from 'mc/config';
import Net from 'net';
import HardwareRandom from 'iotkx/hwrandom';
import ChipTemperature from 'iotkx/chiptemp';
import restart from 'iotkx/restart';
import { IotkxError } from '../../../lib/errors.js';
import type { Random } from '../../../lib/platform.js';
import type { Sensor } from '../../../lib/device/sensor.js';
import { LineSplitter } from '../console.js';
import type { ConsolePort, Network } from './types.js';

const cfg = config as { firmware?: string; console?: { port?: number; receive?: number; transmit?: number; baud?: number } };

/**
 * esp_fill_random. The native side reads the RF state itself at each call (esp_wifi_get_mode): with Wi-Fi started
 * (a built-in SSID connects before main runs) the RF noise feeds the RNG; before that it brackets the fill with the
 * bootloader entropy source, which ESP-IDF forbids while Wi-Fi runs (devices/sensor/native/hwrandom.c).
 */
const random: Random = {
  bytes(n) {
    const b = new ArrayBuffer(n);
    HardwareRandom.fill(b, false);
    return new Uint8Array(b);
  },
};

function consolePort(): ConsolePort {
  let onLine: ((line: string) => void) | undefined;
  const split = new LineSplitter((line) => onLine?.(line));
  const c = cfg.console ?? {};
  // Release builds: UART0 (GPIO1/3) is free. Debug builds: it belongs to xsbug; configure another UART in the manifest.
  const serial = new Serial({
    port: c.port ?? 0, receive: c.receive ?? 3, transmit: c.transmit ?? 1, baud: c.baud ?? 115200, format: 'buffer',
    onReadable() {
      // format "buffer": read() gives an ArrayBuffer (the SDK types it number | ArrayBuffer for format "number").
      const b = this.read();
      if (b instanceof ArrayBuffer) split.pushBytes(new Uint8Array(b));
    },
  });
  return {
    listen(cb) { onLine = cb; },
    write(line) {
      const out: number[] = [];
      // JSON.stringify escapes nothing outside ASCII: encode UTF-8 by hand (no TextEncoder in manifest builds).
      for (const ch of `${line}\n`) {
        const cp = ch.codePointAt(0)!;
        if (cp < 0x80) out.push(cp);
        else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 63));
        else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63));
        else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 63), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63));
      }
      serial.write(Uint8Array.from(out));
    },
  };
}

const network: Network = {
  connect(credentials) {
    return new Promise((resolve, reject) => {
      // A build with ssid=/password= is connected before main runs (MODDABLE.md §1).
      if (Net.get('IP')) { resolve(); return; }
      if (!credentials) { reject(new IotkxError('no-network', 'no Wi-Fi credentials provisioned and none built in')); return; }
      // onChanged gets no `this` in the SDK's typings: read the instance itself.
      const wifi: WiFi = new WiFi({
        onChanged() {
          if (wifi.address) resolve();
        },
      });
      wifi.connect({ SSID: credentials.ssid, password: credentials.password });
    });
  },
};

/** SHT3x on the default I2C bus; without one (or plain -p esp32, which has no I2C.default), the die temperature. */
function sensor(): Sensor {
  let sht: SHT3x | undefined;
  try {
    const bus = device?.I2C?.default;
    if (bus) sht = new SHT3x({ sensor: bus });
  } catch {
    sht = undefined;
  }
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    read() {
      if (sht) {
        const s = sht.sample();
        const out: Record<string, number> = {};
        if (s.thermometer) out.temp = round(s.thermometer.temperature);
        if (s.hygrometer) out.rh = round(s.hygrometer.humidity);
        if (out.temp !== undefined || out.rh !== undefined) return out;
      }
      return { chipTemp: round(ChipTemperature.read()) };
    },
  };
}

export const board = {
  firmware: cfg.firmware ?? 'iotkx-sensor/esp32',
  random: random as Random | undefined,
  console: consolePort(),
  network,
  sensor: sensor(),
  restart: () => { restart(); },
};
