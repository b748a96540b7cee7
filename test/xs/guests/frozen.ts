/** Guest for test/xs/frozen-realm.test.ts: probes the realm after hosts/xs/freeze.ts ran. */
import { serve } from '../../../hosts/xs/guest.js';
import { IotkxError } from '../../../lib/errors.js';
import { RpcError } from '../../../lib/rpc.js';

serve({
  probe: () => {
    const frozen = {
      Error: Object.isFrozen(Error.prototype), Object: Object.isFrozen(Object.prototype), Array: Object.isFrozen(Array.prototype),
      Uint8Array: Object.isFrozen(Uint8Array.prototype), TypedArray: Object.isFrozen(Object.getPrototypeOf(Uint8Array.prototype)),
      Math: Object.isFrozen(Math), Function: Object.isFrozen(Function.prototype), Promise: Object.isFrozen(Promise.prototype),
    };
    let assignName = 'no error';
    try {
      class Named extends Error { constructor() { super('x'); this.name = 'Named'; } }
      void new Named();
    } catch (e) {
      assignName = `${(e as Error).name}: ${(e as Error).message}`;
    }
    return { frozen, assignName };
  },
  libErrors: () => {
    const a = new IotkxError('some-code', 'msg');
    const b = new RpcError(-32000, 'nope', null);
    return {
      iotkx: { name: a.name, code: a.code, message: a.message, isError: a instanceof Error },
      rpc: { name: b.name, code: b.code, rpcCode: b.rpcCode, isIotkx: b instanceof IotkxError },
    };
  },
});
