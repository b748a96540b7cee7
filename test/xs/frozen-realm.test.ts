import { XsWorker } from '../../hosts/xs/worker.js';
import { bundle } from '../../hosts/xs/bundle.js';

// The Moddable linker freezes the built-ins after preload (xs/tools/xsl.c fxFreezeBuiltIns); the XS simulator and
// the XS tests do the same (hosts/xs/freeze.ts), so code that writes to a built-in prototype fails here as on a board.
let w: XsWorker;
beforeAll(async () => {
  w = await XsWorker.start({ output: 'ignore' });
  const b = await bundle('test/xs/guests/frozen.ts');
  await w.evaluate(b.code);
  await w.freezeRealm();
});
afterAll(() => w?.close());

test('after freezeRealm the built-in prototypes are frozen, as on the device', async () => {
  const r = await w.call('probe');
  expect(r.frozen).toEqual({ Error: true, Object: true, Array: true, Uint8Array: true, TypedArray: true, Math: true, Function: true, Promise: true });
  // The bug class: an Error subclass that assigns `this.name` throws after the freeze.
  expect(r.assignName).toMatch(/read.only|not writable|TypeError/i);
});

test('lib errors survive a frozen realm: IotkxError and RpcError keep their name and code', async () => {
  const r = await w.call('libErrors');
  expect(r).toEqual({
    iotkx: { name: 'IotkxError', code: 'some-code', message: 'msg', isError: true },
    rpc: { name: 'RpcError', code: 'rpc-error', rpcCode: -32000, isIotkx: true },
  });
});
