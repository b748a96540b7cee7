/**
 * Builds the sensor firmware (manifests/sensor.json) with the real Moddable SDK (tools/moddable-setup.sh) for the
 * tests and the benchmark. One build per (target, flavour, sources): the output folder build/moddable/<target>-<flavour>
 * holds a `key` file (a hash of every input), so a second test file, or a second run with unchanged sources, reuses
 * it; a build whose key differs starts from an empty folder (a failed tsc step leaves outputs that the next make
 * would take as built: MODDABLE.md §2). Builds are serialised by a lock directory, as jest runs files in parallel.
 *
 * - `lin` builds fully (mc.so for mcsim); always with `-t build` (a bare `-d` kills processes by name and starts xsbug).
 * - esp32 targets stop before ESP-IDF: mcconfig writes the makefile and then refuses ($IDF_PATH not set); we run that
 *   makefile's XS stages only (tsc, xsc, xsl → mc.xs.c) with the ESP-IDF variables it checks at parse time
 *   overridden (nothing of ESP-IDF is read for those targets).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from '../xs/bundle.js';

export type Target = 'lin' | 'esp32' | 'esp32/nodemcu' | 'esp32/esp32c3' | 'esp32/esp32s3';
export const ESP32_TARGETS: Target[] = ['esp32', 'esp32/nodemcu', 'esp32/esp32c3', 'esp32/esp32s3'];

export interface Sdk {
  moddable: string;
  bin: string;
  /** PATH with the SDK's tools and TypeScript ≥ 6 (node_modules/.bin) first. */
  env: NodeJS.ProcessEnv;
  tscVersion: string;
}

export interface BuildOptions {
  /** `-d`: debug build (xsbug protocol, instrumentation). */
  debug?: boolean;
  /** `-i`: instrumented release build. */
  instrument?: boolean;
  /** Extra key=value config overrides for mcconfig. */
  config?: Record<string, string>;
}

export interface Built {
  target: Target;
  /** Folder of generated files (makefile, mc.xs.c, modules/). */
  tmp: string;
  /** lin: the mc.so for mcsim. */
  library?: string;
  mcXsC: string;
  makefile: string;
  /** mcconfig and make output (for a failure message). */
  log: string;
}

/** The built SDK, or why there is none (tests skip with this reason). */
export function findSdk(): Sdk | { missing: string } {
  const r = spawnSync(path.join(ROOT, 'tools/moddable-setup.sh'), ['--check'], { encoding: 'utf8' });
  if (r.status !== 0) return { missing: `Moddable SDK tools not built: run tools/moddable-setup.sh (${(r.stderr || r.error?.message || '').trim()})` };
  const moddable = r.stdout.trim();
  const bin = path.join(moddable, 'build/bin/lin/release');
  const nodeBin = path.join(ROOT, 'node_modules/.bin');
  const env = { ...process.env, MODDABLE: moddable, PATH: `${nodeBin}:${bin}:${process.env.PATH ?? ''}` };
  let tscVersion = '';
  try {
    tscVersion = execFileSync(path.join(nodeBin, 'tsc'), ['--version'], { encoding: 'utf8', env }).trim();
  } catch (e) {
    return { missing: `no tsc in node_modules/.bin: ${(e as Error).message}` };
  }
  const major = Number(/([0-9]+)\./.exec(tscVersion)?.[1] ?? 0);
  if (major < 6) return { missing: `mcconfig needs TypeScript >= 6 first on PATH, found ${tscVersion}` };
  return { moddable, bin, env, tscVersion };
}

/** Every input of a firmware build: the manifests, devices/sensor, lib, and the package files lib.json names. */
function inputFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(p);
    }
  };
  for (const d of ['manifests', 'devices/sensor', 'lib']) walk(path.join(ROOT, d));
  const lib = JSON.parse(fs.readFileSync(path.join(ROOT, 'manifests/lib.json'), 'utf8'));
  for (const v of Object.values<string>(lib.modules)) {
    if (!v.startsWith('../node_modules/')) continue;
    const base = path.resolve(ROOT, 'manifests', v);
    for (const ext of ['.js', '.ts']) if (fs.existsSync(base + ext)) out.push(base + ext);
  }
  return out.sort();
}

function buildKey(sdk: Sdk, target: Target, opts: BuildOptions): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({ moddable: sdk.moddable, tsc: sdk.tscVersion, target, opts }));
  for (const f of inputFiles()) {
    h.update(path.relative(ROOT, f));
    h.update(fs.readFileSync(f));
  }
  return h.digest('hex');
}

function flavour(opts: BuildOptions): string {
  return opts.debug ? 'debug' : opts.instrument ? 'instrument' : 'release';
}

export function outDir(target: Target, opts: BuildOptions = {}): string {
  return path.join(ROOT, 'build/moddable', `${target.replace('/', '-')}-${flavour(opts)}`);
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function withLock<T>(fn: () => T): T {
  const lock = path.join(ROOT, 'build/moddable/.lock');
  fs.mkdirSync(path.dirname(lock), { recursive: true });
  const deadline = Date.now() + 20 * 60_000;
  for (;;) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch {
      // A lock older than 15 min belongs to a build that died.
      try {
        if (Date.now() - fs.statSync(lock).mtimeMs > 15 * 60_000) fs.rmSync(lock, { recursive: true, force: true });
      } catch { /* gone meanwhile */ }
      if (Date.now() > deadline) throw new Error('timed out waiting for another Moddable build');
      sleep(500);
    }
  }
  try {
    return fn();
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

function tmpFolder(out: string, target: Target, opts: BuildOptions): string {
  const [platform, sub] = target.split('/');
  const fl = opts.debug ? 'debug' : opts.instrument ? 'instrument' : 'release';
  return platform === 'lin'
    ? path.join(out, 'tmp/lin/mc', fl, 'manifests')
    : path.join(out, 'tmp/esp32', ...(sub ? [sub] : []), fl, 'manifests');
}

/** Build (or reuse) the firmware for one target. Throws with mcconfig's output when the build fails. */
export function buildFirmware(sdk: Sdk, target: Target, opts: BuildOptions = {}): Built {
  const out = outDir(target, opts);
  const key = buildKey(sdk, target, opts);
  return withLock(() => {
    const tmp = tmpFolder(out, target, opts);
    const result = (log: string): Built => ({
      target, tmp, log, mcXsC: path.join(tmp, 'mc.xs.c'), makefile: path.join(tmp, 'makefile'),
      library: target === 'lin' ? path.join(out, 'bin/lin/mc', flavour(opts), 'manifests/mc.so') : undefined,
    });
    const keyFile = path.join(out, 'key');
    if (fs.existsSync(keyFile) && fs.readFileSync(keyFile, 'utf8') === key) return result(fs.readFileSync(path.join(out, 'log'), 'utf8'));
    fs.rmSync(out, { recursive: true, force: true });
    fs.mkdirSync(out, { recursive: true });
    const args = ['-m', '-p', target, '-t', 'build', '-o', out];
    if (opts.debug) args.unshift('-d');
    if (opts.instrument) args.unshift('-i');
    for (const [k, v] of Object.entries(opts.config ?? {})) args.push(`${k}=${v}`);
    args.push('./sensor.json');
    const env = { ...sdk.env };
    delete env.IDF_PATH;
    const mc = spawnSync(path.join(sdk.bin, 'mcconfig'), args, { cwd: path.join(ROOT, 'manifests'), env, encoding: 'utf8', maxBuffer: 64 << 20 });
    let log = `$ mcconfig ${args.join(' ')}\n${mc.stdout}${mc.stderr}`;
    if (target === 'lin') {
      if (mc.status !== 0 || !fs.existsSync(result('').library!)) throw new Error(`mcconfig ${target} failed:\n${log.slice(-6000)}`);
    } else {
      // Expected stop: mcconfig wrote the makefile, then wants ESP-IDF. Run its XS stages only.
      if (!/IDF_PATH not set/.test(log) || !fs.existsSync(path.join(tmp, 'makefile'))) throw new Error(`mcconfig ${target} failed before ESP-IDF:\n${log.slice(-6000)}`);
      const mk = ['-f', 'makefile', 'IDF_PATH=/nonexistent/esp-idf', 'IDF_VERSION=none', 'SDKCONFIG_H=', path.join(tmp, 'mc.xs.c')];
      const m = spawnSync('make', mk, { cwd: tmp, env, encoding: 'utf8', maxBuffer: 64 << 20 });
      log += `$ make ${mk.join(' ')}\n${m.stdout}${m.stderr}`;
      if (m.status !== 0 || !fs.existsSync(path.join(tmp, 'mc.xs.c'))) throw new Error(`XS stages of ${target} failed:\n${log.slice(-6000)}`);
    }
    fs.writeFileSync(path.join(out, 'log'), log);
    fs.writeFileSync(keyFile, key);
    return result(log);
  });
}

/** What xsl put in mc.xs.c: every module (name, bytecode size, 0 when preloaded into the heap) and the creation values. */
export interface Linked {
  modules: Array<{ name: string; codeSize: number; preloaded: boolean; native: boolean }>;
  creation: { chunk: number; chunkIncrement: number; heap: number; heapIncrement: number; stack: number };
  /** Slots and bytes of the preloaded heap xsl wrote to flash. */
  romSlots: number;
}

export function readLinked(mcXsC: string): Linked {
  const c = fs.readFileSync(mcXsC, 'utf8');
  const scripts = /static const txScript gxScripts\[mxScriptsCount\] = \{([\s\S]*?)\n\};/.exec(c);
  if (!scripts) throw new Error(`${mcXsC}: no gxScripts table`);
  // { callback, symbols, symbolsSize, code, codeSize, hosts, hostsSize, path, version }: a preloaded module has no code
  // left (it lives in the heap xsl wrote to flash); a host module has a C callback.
  const modules = [...scripts[1].matchAll(/\{ (NULL|xsHostModule[0-9]+), NULL, 0, (NULL|\(txS1\*\)gxCode[0-9]+), ([0-9]+), NULL, 0, "([^"]*)"/g)]
    .map((m) => ({ name: m[4], codeSize: Number(m[3]), preloaded: m[2] === 'NULL', native: m[1] !== 'NULL' }));
  const prep = /static const txPreparation gxPreparation = \{[\s\S]*?\n\t\{ ([0-9]+), ([0-9]+), ([0-9]+), ([0-9]+), ([0-9]+),/.exec(c);
  if (!prep) throw new Error(`${mcXsC}: no creation values`);
  const [chunk, chunkIncrement, heap, heapIncrement, stack] = prep.slice(1, 6).map(Number);
  const heapCount = /#define mxHeapCount ([0-9]+)/.exec(c);
  return { modules, creation: { chunk, chunkIncrement, heap, heapIncrement, stack }, romSlots: heapCount ? Number(heapCount[1]) : 0 };
}

/** The file the generated makefile compiles a module name from (which board file a target took). */
export function moduleSource(makefile: string, name: string): string | undefined {
  const mk = fs.readFileSync(makefile, 'utf8');
  const re = new RegExp(`^\\$\\(MODULES_DIR\\)/${name.replace(/[/.]/g, (ch) => `\\${ch}`)}\\.xsb: (\\S+)`, 'm');
  return re.exec(mk)?.[1];
}
