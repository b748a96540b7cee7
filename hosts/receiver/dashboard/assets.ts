// The dashboard's static files: index.html, and app.js + app.css bundled by esbuild from app.ts and style.css
// (uPlot included) the first time they are asked for, then held in memory. Built on the receiver itself, so the
// page needs nothing from the network (no CDN) and ships exactly the uPlot version package-lock.json pins.
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

export interface Asset {
  type: string;
  body: Buffer;
}

let bundled: Promise<Map<string, Asset>> | undefined;

async function bundleAll(): Promise<Map<string, Asset>> {
  const result = await build({
    entryPoints: { app: path.join(HERE, 'app.ts'), 'app-style': path.join(HERE, 'style.css') },
    bundle: true,
    write: false,
    outdir: '/dashboard',
    format: 'iife',
    platform: 'browser',
    target: 'es2020',
    minify: true,
    legalComments: 'none',
    logLevel: 'silent',
  });
  const files = new Map<string, Asset>();
  for (const f of result.outputFiles) {
    const name = path.basename(f.path);
    files.set(name, { type: name.endsWith('.css') ? 'text/css; charset=utf-8' : 'text/javascript; charset=utf-8', body: Buffer.from(f.contents) });
  }
  files.set('index.html', { type: 'text/html; charset=utf-8', body: readFileSync(path.join(HERE, 'index.html')) });
  return files;
}

/** The asset called `name` (index.html, app.js, app-style.css), or undefined. A failed build is retried next time. */
export async function asset(name: string): Promise<Asset | undefined> {
  bundled ??= bundleAll().catch((e) => {
    bundled = undefined;
    throw e;
  });
  return (await bundled).get(name);
}
