/**
 * Bundles device-side code for XS with esbuild. One place owns the settings every
 * XS bundle needs, so tests, benchmarks and the simulator run the same bytes.
 */
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface BundleOptions {
  minify?: boolean;
  /** Extra esbuild `define`s, e.g. build-time configuration. */
  define?: Record<string, string>;
  /** Keep the entry's exports reachable as this global (size measurements of a library entry). */
  globalName?: string;
}

export interface Bundle {
  code: string;
  bytes: number;
}

export async function bundle(entry: string, opts: BundleOptions = {}): Promise<Bundle> {
  const result = await build({
    entryPoints: [path.resolve(ROOT, entry)],
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'neutral',
    target: 'es2022',
    // XS 13.3 (xsnap) mis-initialises a static field that instantiates its own class
    // (noble's Point.BASE); lowering static fields avoids it (XS-NOTES.md).
    supported: { 'class-static-field': false },
    mainFields: ['module', 'main'],
    conditions: ['browser', 'import', 'default'],
    minify: opts.minify ?? false,
    legalComments: 'none',
    define: opts.define,
    globalName: opts.globalName,
    logLevel: 'silent',
  });
  const code = result.outputFiles[0].text;
  return { code, bytes: result.outputFiles[0].contents.length };
}
