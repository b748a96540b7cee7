/**
 * What the Moddable linker does after preload (xs/tools/xsl.c `fxFreezeBuiltIns`, SDK 8.2.3): `Object.freeze` on
 * the built-in namespaces and on every built-in prototype. On the device this always happens (manifest_base
 * preloads modules), so `this.name = ...` in an Error subclass throws "set name: not writable", and assigning any
 * property a frozen prototype already has (`o.toString = ...`) throws too. xsnap does not preload: the simulator
 * and the XS tests run this script after loading their bundle, so this class of bug fails there too.
 */
export const FREEZE_REALM = `(() => {
  const F = Object.freeze;
  const P = Object.getPrototypeOf;
  const g = globalThis;
  const protoOf = (name) => (typeof g[name] === 'function' ? g[name].prototype : undefined);
  const list = [g.Atomics, g.JSON, g.Math, g.Reflect];
  for (const n of ['AggregateError', 'ArrayBuffer', 'Array', 'BigInt', 'Boolean', 'Compartment', 'DataView', 'Date',
    'Error', 'EvalError', 'FinalizationRegistry', 'Function', 'Map', 'Number', 'Object', 'Promise', 'Proxy', 'RangeError',
    'ReferenceError', 'RegExp', 'Set', 'SharedArrayBuffer', 'String', 'Symbol', 'SyntaxError', 'TypeError', 'URIError',
    'WeakMap', 'WeakRef', 'WeakSet', 'SuppressedError', 'DisposableStack', 'AsyncDisposableStack', 'Iterator',
    'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array',
    'Float16Array', 'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array']) list.push(protoOf(n));
  list.push(P(Uint8Array.prototype)); // %TypedArray%.prototype
  list.push(Array.prototype[Symbol.unscopables]);
  list.push(P((function () { return arguments; })())); // arguments objects inherit Object.prototype here
  const arrayIterator = P([][Symbol.iterator]());
  list.push(arrayIterator, P(arrayIterator)); // %ArrayIteratorPrototype%, %IteratorPrototype%
  list.push(P(new Map()[Symbol.iterator]()), P(new Set()[Symbol.iterator]()), P(''[Symbol.iterator]()));
  list.push(P(/a/[Symbol.matchAll]('a')));
  const gen = function* () {};
  list.push(P(gen), P(gen).prototype, P(P(gen()))); // %GeneratorFunction.prototype%, %GeneratorPrototype%
  const agen = async function* () {};
  list.push(P(agen), P(agen).prototype, P(P(P(agen())))); // %AsyncGeneratorFunction.prototype%, ..., %AsyncIteratorPrototype%
  list.push(P(async function () {}));
  for (const o of list) if (o !== undefined && o !== null) F(o);
  return list.filter((o) => o).length;
})();`;
