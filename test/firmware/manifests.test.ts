import fs from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';

// The Moddable manifests: valid JSON with the keys mcconfig knows (MODDABLE.md §1,
// §5), every module file they name exists, module names mirror the source tree, and
// every source file the firmware imports (the esbuild closure of devices/sensor/main.ts)
// is listed under the name XS will look it up by.
const ROOT = path.resolve(__dirname, '../..');
const MANIFESTS = ['manifests/sensor.json', 'manifests/esp32.json', 'manifests/lib.json', 'devices/sensor/native/manifest.json'];
const TOP_KEYS = ['include', 'modules', 'preload', 'resources', 'data', 'config', 'defines', 'creation', 'strip', 'build', 'platforms', 'typescript', 'error'];
const CREATION_KEYS = ['static', 'chunk', 'heap', 'stack', 'keys', 'parser', 'main', 'nativeStack'];
const PLATFORM = /^(esp32|esp32\/[a-z0-9_*-]+|lin|mac|win|\.\.\.)$/;
/** Moddable modules the firmware takes from the SDK (its manifests include them). */
const SDK_MODULES = ['preference', 'timer', 'time', 'sntp', 'http', 'net', 'mc/config', 'embedded:io/serial', 'embedded:network/interface/wifi',
  'embedded:sensor/Humidity-Temperature/SHT3x', 'iotkx/hwrandom', 'iotkx/chiptemp', 'iotkx/restart'];
const EXTS = ['.ts', '.js', '.c', '.cpp', '.d.ts'];

const read = (rel: string) => JSON.parse(fs.readFileSync(path.join(ROOT, rel), 'utf8'));

/** Every (name, file) a manifest maps, platforms included, with paths resolved from the manifest's folder. */
function modules(rel: string): Array<{ name: string; file: string }> {
  const m = read(rel);
  const out: Array<{ name: string; file: string }> = [];
  const add = (mods: Record<string, string | string[]> | undefined) => {
    for (const [name, v] of Object.entries(mods ?? {})) {
      for (const p of Array.isArray(v) ? v : [v]) {
        if (p.startsWith('$(')) continue;
        out.push({ name, file: path.resolve(ROOT, path.dirname(rel), p) });
      }
    }
  };
  add(m.modules);
  for (const p of Object.values<any>(m.platforms ?? {})) add(p.modules);
  return out;
}

function exists(file: string): boolean {
  if (file.endsWith('*')) return fs.existsSync(path.dirname(file));
  if (path.extname(file) && fs.existsSync(file)) return true;
  return EXTS.some((e) => fs.existsSync(file + e));
}

test.each(MANIFESTS)('%s: JSON with SDK keys; includes and module files exist', (rel) => {
  const m = read(rel);
  for (const k of Object.keys(m)) expect(TOP_KEYS).toContain(k);
  for (const inc of m.include ?? []) if (!inc.startsWith('$(')) expect(fs.existsSync(path.resolve(ROOT, path.dirname(rel), inc))).toBe(true);
  for (const [name, p] of Object.entries<any>(m.platforms ?? {})) {
    expect(name).toMatch(PLATFORM);
    for (const k of Object.keys(p)) expect(TOP_KEYS).toContain(k);
    for (const inc of p.include ?? []) if (!inc.startsWith('$(')) expect(fs.existsSync(path.resolve(ROOT, path.dirname(rel), inc))).toBe(true);
  }
  for (const { name, file } of modules(rel)) {
    if (!exists(file)) throw new Error(`${rel}: module ${name} → ${file} does not exist`);
  }
  for (const p of m.preload ?? []) expect(modules(rel).map((x) => x.name)).toContain(p);
});

/** mcconfig's platform match (tools/mcmanifest.js matchPlatform, SDK 8.2.3): the FIRST key that matches wins, alone. */
function matchPlatform(platforms: Record<string, any>, name: string): string | undefined {
  const parts = name.split('/');
  while (parts.length) {
    const partial = parts.join('/');
    for (const n of Object.keys(platforms)) {
      if (n.endsWith('/*') ? partial.startsWith(n.slice(0, -1)) : n.startsWith('*/') ? partial.endsWith(n.slice(1)) : partial === n) return n;
    }
    parts.length -= 1;
  }
  return platforms['...'] ? '...' : undefined;
}

test('sensor.json: every esp32 target takes the shared esp32 manifest and its own sizes; desktops; an error for anything else', () => {
  const m = read('manifests/sensor.json');
  const check = (c: any) => {
    for (const k of Object.keys(c)) expect(CREATION_KEYS).toContain(k);
    expect(c.chunk.initial).toBeGreaterThan(0);
    expect(c.heap.initial).toBeGreaterThan(0);
    expect(c.stack).toBeGreaterThanOrEqual(384);
    return c.chunk.initial + c.heap.initial * 16; // ESP32: 16-byte slots
  };
  expect(check(m.creation)).toBeLessThanOrEqual(200 * 1024); // classic ESP32 without PSRAM: ~160 KiB for XS (MODDABLE.md §5)
  expect(m.creation.main).toBe('main');
  // Only the first matching key merges: each esp32 target must reach a key that includes manifests/esp32.json
  // (board module, serial console config, SHT3x, IO), and the subclasses their own creation.
  const expectKey = { esp32: 'esp32', 'esp32/nodemcu': 'esp32/*', 'esp32/esp32c3': 'esp32/esp32c3', 'esp32/esp32s3': 'esp32/esp32s3', 'esp32/moddable_two': 'esp32/*', lin: 'lin', mac: 'mac', win: 'win', zephyr: '...' };
  for (const [target, key] of Object.entries(expectKey)) {
    expect({ target, key: matchPlatform(m.platforms, target) }).toEqual({ target, key });
    if (target.startsWith('esp32')) expect(m.platforms[key].include).toContain('./esp32.json');
  }
  for (const p of ['esp32/*', 'esp32/esp32c3', 'esp32/esp32s3', 'lin']) check(m.platforms[p].creation);
  expect(typeof m.platforms['...'].error).toBe('string');
  // The board module is chosen per platform: board.ts through esp32.json, board-desktop.ts on the desktops.
  expect(read('manifests/esp32.json').modules['devices/sensor/platform/board']).toBe('../devices/sensor/platform/board');
  expect(read('manifests/esp32.json').config.console).toBeDefined();
  for (const p of ['lin', 'mac', 'win']) expect(m.platforms[p].modules['devices/sensor/platform/board']).toBe('../devices/sensor/platform/board-desktop');
  // Ambient declarations reach mcconfig's tsc only through typescript.tsconfig.compilerOptions.types.
  const types: string[] = m.typescript.tsconfig.compilerOptions.types;
  for (const t of types) expect(fs.existsSync(path.resolve(ROOT, 'manifests', `${t}.d.ts`))).toBe(true);
  expect(types.map((t) => path.basename(t))).toEqual(expect.arrayContaining(['iotkx-native', 'sht3x']));
});

test('module names mirror the source tree, and the firmware\'s whole import closure is listed', async () => {
  const all = MANIFESTS.flatMap(modules);
  for (const { name, file } of all) {
    const rel = path.relative(ROOT, file).replace(/\.(ts|js|c|d\.ts)$/, '');
    // The board module is the one name with a per-platform file (board.ts on esp32, board-desktop.ts on lin/mac/win).
    if (name.startsWith('lib/') || name.startsWith('devices/')) expect(rel.replace(/-desktop$/, '')).toBe(name);
    if (name.startsWith('@noble/')) expect(rel).toBe(`node_modules/${name}`);
  }
  const r = await build({
    entryPoints: [path.join(ROOT, 'devices/sensor/main.ts')], bundle: true, write: false, metafile: true, format: 'esm',
    platform: 'neutral', mainFields: ['module', 'main'], external: SDK_MODULES, logLevel: 'silent', absWorkingDir: ROOT, preserveSymlinks: true,
    // platform/moddable.ts imports its board by manifest name (board.ts here; board-desktop.ts on desktops, listed too).
    alias: { 'devices/sensor/platform/board': './devices/sensor/platform/board.ts' },
  });
  const listed = (file: string) => all.some(({ file: f }) => {
    if (f.endsWith('*')) return path.dirname(file) === path.dirname(f) && !file.endsWith('.d.ts');
    return file === f || EXTS.some((e) => file === f + e);
  });
  const inputs = Object.keys(r.metafile!.inputs).map((f) => path.resolve(ROOT, f));
  expect(inputs.length).toBeGreaterThan(20);
  // rlp's package entry is CommonJS, which XS cannot load: the manifest takes its ESM TypeScript source.
  const missing = inputs.filter((f) => !listed(f) && !f.endsWith('node_modules/rlp/dist/index.js'));
  expect(missing.map((f) => path.relative(ROOT, f))).toEqual([]);
  expect(all.find((x) => x.name === 'rlp')?.file).toBe(path.join(ROOT, 'node_modules/rlp/src/index'));
});
