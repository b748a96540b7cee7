// Jest runs the TypeScript sources directly: @swc/jest turns them (and the ESM-only
// packages such as @noble/*) into CommonJS, so no build step precedes `npm test`.
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.(t|j|mj)s$': ['@swc/jest', {
      jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
      module: { type: 'commonjs' },
    }],
  },
  // ESM-only dependencies must be transformed too.
  transformIgnorePatterns: ['/node_modules/(?!(@noble|micro-eth-signer|micro-packed|@scure|eciesjs|viem|ox|abitype|@adraffy)/)'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  testTimeout: 60000,
  // Safety net: a stray handle (a keep-alive socket, a child's pipe) must never hang CI.
  // Services a test starts are stopped by that test; this only covers what Node keeps open.
  forceExit: true,
};
