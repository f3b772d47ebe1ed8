/** Jest runs the TypeScript tests in __test__ against the built addon. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/__test__'],
  testMatch: ['**/*.spec.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
  // Fails any test that sees a registered secret in a message (support/secrets.ts).
  setupFilesAfterEnv: ['<rootDir>/__test__/support/secrets-watch.ts'],
  testTimeout: 120000,
  maxWorkers: 2,
}
