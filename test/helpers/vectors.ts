import fs from 'node:fs';
import path from 'node:path';

/** Wycheproof vectors (C2SP/wycheproof testvectors_v1, Apache-2.0), copied into test/vectors. */
export function wycheproof(name: string): any {
  return JSON.parse(fs.readFileSync(path.join(__dirname, '../vectors/wycheproof', name), 'utf8'));
}
