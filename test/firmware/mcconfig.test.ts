import fs from 'node:fs';
import path from 'node:path';
import { buildFirmware, findSdk, moduleSource, readLinked, ESP32_TARGETS, type Built, type Target } from '../../hosts/moddable/build.js';

// The firmware built by the real Moddable SDK 8.2.3 (tools/moddable-setup.sh): lin fully, the esp32 targets up to
// xsl's mc.xs.c. Reads what xsl linked (module table, creation values) and checks each target got its board, its
// drivers and the sizes it is meant to have. mcconfig merges only the first matching `platforms` key: with the esp32
// content under "esp32" alone, -p esp32/nodemcu, esp32c3 and esp32s3 linked no board module and no drivers at all.
const sdk = findSdk();
const missing = 'missing' in sdk ? sdk.missing : undefined;
if (missing) console.warn(`SKIPPED test/firmware/mcconfig.test.ts: ${missing}`);
const run = missing ? describe.skip : describe;

/** The intended creation values per target (manifests/sensor.json; the memory figures are in bench/RESULTS.md). */
const CREATION: Record<Target, { chunk: number; heap: number; stack: number }> = {
  esp32: { chunk: 81920, heap: 5120, stack: 512 },
  'esp32/nodemcu': { chunk: 81920, heap: 5120, stack: 512 },
  'esp32/esp32c3': { chunk: 98304, heap: 6144, stack: 512 },
  'esp32/esp32s3': { chunk: 131072, heap: 8192, stack: 768 },
  lin: { chunk: 262144, heap: 16384, stack: 1024 },
};
/** Every esp32 build: the board module and the SDK drivers it imports, our native modules. */
const ESP32_MODULES = ['devices/sensor/platform/board', 'embedded:io/serial', 'embedded:io/i2c', 'embedded:sensor/Humidity-Temperature/SHT3x',
  'embedded:network/interface/wifi', 'iotkx/hwrandom', 'iotkx/chiptemp', 'iotkx/restart'];
const COMMON = ['main', 'devices/sensor/main', 'devices/sensor/app', 'devices/sensor/console', 'devices/sensor/platform/moddable',
  'lib/device/engine', 'lib/secp256k1', 'preference', 'timer', 'http', 'mc/config'];

run('mcconfig (Moddable SDK 8.2.3)', () => {
  const built = new Map<Target, Built>();
  beforeAll(() => {
    if ('missing' in sdk) return;
    built.set('lin', buildFirmware(sdk, 'lin', { debug: true }));
    for (const t of ESP32_TARGETS) built.set(t, buildFirmware(sdk, t));
  }, 15 * 60_000);

  test.each(ESP32_TARGETS)('%s: the board module, its drivers and the intended creation values', (t) => {
    const b = built.get(t)!;
    const linked = readLinked(b.mcXsC);
    const names = linked.modules.map((m) => m.name);
    for (const m of [...COMMON, ...ESP32_MODULES]) expect({ target: t, module: m, linked: names.includes(m) }).toEqual({ target: t, module: m, linked: true });
    expect(moduleSource(b.makefile, 'devices/sensor/platform/board')).toMatch(/\/devices\/sensor\/platform\/board\.js$/);
    expect(linked.creation).toEqual({ ...CREATION[t], chunkIncrement: 0, heapIncrement: 0 });
    // The classic ESP32 and the C3 have no PSRAM: XS's chunk and slot heaps (16 B slots on 32-bit) must leave SRAM
    // for Wi-Fi and lwIP (MODDABLE.md §5: about 160 KiB for XS on the classic part).
    if (t !== 'esp32/esp32s3') expect(linked.creation.chunk + linked.creation.heap * 16).toBeLessThanOrEqual(192 * 1024);
    // The console's UART comes from manifests/esp32.json's config (mc/config, generated as mc.config.js).
    const cfg = fs.readFileSync(path.join(b.tmp, 'mc.config.js'), 'utf8');
    expect(JSON.parse(/"console": (\{[^}]*\})/.exec(cfg)?.[1] ?? 'null')).toEqual({ port: 0, receive: 3, transmit: 1, baud: 115200 });
  });

  test('lin: desktop board, no esp32 drivers, desktop creation values', () => {
    const b = built.get('lin')!;
    const linked = readLinked(b.mcXsC);
    const names = linked.modules.map((m) => m.name);
    for (const m of [...COMMON, 'devices/sensor/platform/board', 'iotkx/hwrandom', 'iotkx/restart']) expect({ module: m, linked: names.includes(m) }).toEqual({ module: m, linked: true });
    expect(names).not.toContain('embedded:sensor/Humidity-Temperature/SHT3x');
    expect(moduleSource(b.makefile, 'devices/sensor/platform/board')).toMatch(/\/devices\/sensor\/platform\/board-desktop\.js$/);
    expect(linked.creation).toMatchObject(CREATION.lin);
  });
});
