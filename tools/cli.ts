/**
 * `iotkx` entry (tools/iotkx.js runs it; or `npx tsx tools/cli.ts`). Parses the command line, runs the
 * command, and turns every failure into one message on stderr (and, with --json, a JSON error object on
 * stdout) and an exit code from tools/errors.ts.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommanderError } from 'commander';
import { CliError, EXIT, printed } from './errors.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const json = process.argv.includes('--json');

function report(exit: number, code: string, message: string, hint?: string): never {
  process.stderr.write(`iotkx: ${message}\n${hint ? `  hint: ${hint}\n` : ''}`);
  if (json && !printed.result) process.stdout.write(`${JSON.stringify({ ok: false, error: code, message, ...(hint ? { hint } : {}), exit })}\n`);
  process.exit(exit);
}

// The contract bindings are generated (git-ignored): build them once on a fresh clone.
if (!existsSync(join(root, 'contracts/build/KeyExchange.ts'))) {
  process.stderr.write('iotkx: building the contract bindings (first run)…\n');
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'contracts/build.ts')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) report(EXIT.failure, 'build-failed', 'could not build contracts/build/KeyExchange.ts (run `npm run build:contracts`)');
}

const { buildProgram } = await import('./program.js');
try {
  await buildProgram().parseAsync(process.argv);
  process.exit(EXIT.ok);
} catch (e) {
  if (e instanceof CommanderError) {
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') process.exit(EXIT.ok);
    // commander already printed its message (unknown option, missing argument…).
    if (json) process.stdout.write(`${JSON.stringify({ ok: false, error: 'usage', message: e.message, exit: EXIT.usage })}\n`);
    process.exit(EXIT.usage);
  }
  if (e instanceof CliError) report(e.exit, e.code, e.message, e.hint);
  report(EXIT.failure, 'internal', (e as Error)?.stack ?? String(e));
}
