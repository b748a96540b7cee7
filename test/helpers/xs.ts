import { randomBytes } from 'node:crypto';
import { bundle } from '../../hosts/xs/bundle.js';
import { XsWorker, type HostMethods } from '../../hosts/xs/worker.js';

/** Host services every test guest may call (see test/xs/guests/prelude.ts). */
export const testHost: HostMethods = {
  random: (n: number) => new Uint8Array(randomBytes(n)),
};

/** Bundle `entry` (a guest that calls serve()) and load it into a fresh XS engine. */
export async function startGuest(entry: string, host: HostMethods = {}): Promise<XsWorker> {
  const b = await bundle(entry);
  const worker = await XsWorker.start({ host: { ...testHost, ...host } });
  await worker.evaluate(b.code);
  // As on the device after preload (hosts/xs/freeze.ts).
  await worker.freezeRealm();
  return worker;
}
