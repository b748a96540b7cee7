import { bundle } from '../../hosts/xs/bundle.js';
import { XsWorker } from '../../hosts/xs/worker.js';

// The harness itself: values cross the Node ⇄ XS boundary intact, errors keep
// their code, device-only globals are gone, and guest → host calls work.
let worker: XsWorker;
beforeAll(async () => {
  const b = await bundle('test/xs/guests/smoke.ts');
  worker = await XsWorker.start({ host: { echo: (x: unknown) => x } });
  await worker.evaluate(b.code);
});
afterAll(() => worker?.close());

test('bytes and bigints round-trip through the worker', async () => {
  expect(await worker.call('hex', new Uint8Array([1, 2, 255]))).toBe('0x0102ff');
  expect(await worker.call('u64', 258n)).toEqual(new Uint8Array([0, 0, 0, 0, 0, 0, 1, 2]));
  expect(await worker.call('echoHost', { a: 1n, b: new Uint8Array([9]) })).toEqual({ a: 1n, b: new Uint8Array([9]) });
});

test('UTF-8 encoding on XS matches Node', async () => {
  const s = 'hé€😀';
  expect(Buffer.from(await worker.call('utf8', s))).toEqual(Buffer.from(s, 'utf8'));
});

test('globals a Moddable device lacks are removed', async () => {
  expect(await worker.call('globals')).toEqual(['undefined', 'undefined']);
});

test('guest errors reach the host with their message', async () => {
  await expect(worker.call('fail')).rejects.toThrow('boom');
});

test('compute meter is deterministic', async () => {
  const sk = new Uint8Array(32).fill(7);
  await worker.call('pub', sk);
  const a = (await worker.callMetered('pub', sk)).meter.compute;
  const b = (await worker.callMetered('pub', sk)).meter.compute;
  expect(a).toBeGreaterThan(0);
  expect(a).toBe(b);
});
