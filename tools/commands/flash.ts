/**
 * `iotkx flash`: builds and flashes the firmware with the Moddable SDK's `mcconfig -d -m -p <platform>
 * <manifest>` (debug build, make, deploy), the serial port passed as UPLOAD_PORT. Without the SDK it says
 * exactly what to install and exits 8; a failed build exits 1 with mcconfig's exit code. Never silent.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Command } from 'commander';
import { Out, type GlobalOpts } from '../context.js';
import { CliError, EXIT, usageError } from '../errors.js';

export const INSTALL_HELP = `To flash a board you need:
  1. the Moddable SDK 8.x: https://github.com/Moddable-OpenSource/moddable (Documentation/Moddable SDK - Getting Started.md),
     built for your host, with  export MODDABLE=<path to moddable>  and  export PATH=$MODDABLE/build/bin/<lin|mac|win>/release:$PATH
  2. ESP-IDF v6.0: https://docs.espressif.com/projects/esp-idf/ (Get Started), installed with its install.sh,
     then in the same shell:  source $IDF_PATH/export.sh
  3. then:  iotkx flash --port /dev/ttyUSB0 --platform esp32 --release   (esp32/<board> for a specific board, e.g. esp32/nodemcu;
     --release: a debug build gives the serial port to xsbug, and \`iotkx pair\` needs it for the console)`;

function onPath(exe: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    for (const name of process.platform === 'win32' ? [`${exe}.exe`, `${exe}.cmd`] : [exe]) {
      const p = join(dir, name);
      try {
        accessSync(p, constants.X_OK);
        return p;
      } catch { /* not here */ }
    }
  }
  return undefined;
}

/** The firmware manifest: --manifest, else manifests/sensor.json, else the only manifests/*.json. */
function findManifest(given?: string): string {
  if (given) {
    if (!existsSync(given)) throw usageError(`manifest ${given} does not exist`);
    return given;
  }
  if (existsSync('manifests/sensor.json')) return 'manifests/sensor.json';
  const inDir = existsSync('manifests') ? readdirSync('manifests').filter((f) => f.endsWith('.json')).map((f) => join('manifests', f)) : [];
  if (inDir.length === 1) return inDir[0];
  if (existsSync('devices/sensor/manifest.json')) return 'devices/sensor/manifest.json';
  if (inDir.length > 1) throw usageError(`several manifests (${inDir.join(', ')}): choose one with --manifest`);
  throw usageError('no firmware manifest found (manifests/*.json or devices/sensor/manifest.json): run from the repository root or pass --manifest');
}

export function registerFlash(program: Command): void {
  program.command('flash')
    .summary('build and flash the firmware with the Moddable SDK (mcconfig)')
    .description(`Runs \`mcconfig -d -m -p <platform> <manifest>\` with UPLOAD_PORT=<port>. Needs the Moddable SDK (MODDABLE set, mcconfig on PATH) and, for ESP32, ESP-IDF (IDF_PATH set by \`source $IDF_PATH/export.sh\`).\n\n${INSTALL_HELP}`)
    .requiredOption('-p, --port <port>', 'serial port of the board (e.g. /dev/ttyUSB0)')
    .option('--platform <platform>', 'Moddable platform (esp32, esp32/<board>, esp32/esp32c3, …)', 'esp32')
    .option('--manifest <file>', 'firmware manifest (default: manifests/sensor.json)')
    .option('--release', 'release build (no -d debug, no xsbug connection)')
    .option('--dry-run', 'print the command without running it, and check prerequisites (exit 0 ready, 8 something missing)')
    .action(async (o: { port: string; platform: string; manifest?: string; release?: boolean; dryRun?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOpts;
      const out = new Out(!!g.json);
      if (o.port.startsWith('tcp://')) throw usageError('a simulator console cannot be flashed: --port must be the board\'s serial port');
      const missing: string[] = [];
      if (!process.env.MODDABLE) missing.push('MODDABLE is not set (the Moddable SDK is not installed or not exported)');
      const mcconfig = onPath('mcconfig');
      if (!mcconfig) missing.push('mcconfig is not on PATH');
      if (o.platform.startsWith('esp32') && !process.env.IDF_PATH) missing.push('IDF_PATH is not set (ESP-IDF not installed, or `source $IDF_PATH/export.sh` not run in this shell)');
      const missingError = () => new CliError(EXIT.missingTool, 'missing-sdk', `cannot flash: ${missing.join('; ')}`, INSTALL_HELP);
      if (missing.length && !o.dryRun) throw missingError();
      const manifest = findManifest(o.manifest);
      const args = [...(o.release ? [] : ['-d']), '-m', '-p', o.platform, manifest];
      const env = { ...process.env, UPLOAD_PORT: o.port };
      const shown = `UPLOAD_PORT=${o.port} ${mcconfig ?? 'mcconfig'} ${args.join(' ')}`;
      if (!o.release) out.note('note: a debug build (no --release) gives the serial port to xsbug: `iotkx pair` needs --release to reach the console');
      if (o.dryRun) {
        // The command is printed whatever is missing; the exit code says whether it could run (0) or not (8).
        out.result({ command: [mcconfig ?? 'mcconfig', ...args], uploadPort: o.port, ran: false, ready: !missing.length, missing }, () => {
          out.line(shown);
          out.line(missing.length ? '(dry run: not run; it could not run yet, see below)' : '(dry run: not run; prerequisites present)');
        });
        if (missing.length) throw missingError();
        return;
      }
      out.note(shown);
      const code = await new Promise<number | null>((resolve, reject) => {
        // mcconfig's own output is the progress; with --json it goes to stderr so stdout stays one JSON line.
        const child = spawn(mcconfig!, args, { env, stdio: ['inherit', g.json ? process.stderr : 'inherit', 'inherit'] });
        child.once('error', reject);
        child.once('exit', (c, sig) => resolve(sig ? 128 : c));
      });
      if (code !== 0) throw new CliError(EXIT.failure, 'flash-failed', `mcconfig failed (exit code ${code}): see its output above`, 'a board that does not enter download mode: hold BOOT while flashing starts');
      out.result({ command: [mcconfig, ...args], uploadPort: o.port, ran: true }, () => out.line(`flashed ${manifest} to ${o.port} (${o.platform}); pair it with: iotkx pair --port ${o.port}`));
    });
}
