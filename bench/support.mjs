// Lets the long-running harnesses here use the very helpers the jest specs
// use (__test__/support/*.ts), instead of copies of them: TypeScript files
// are transpiled on require with the project's own compiler (a dev
// dependency), type-stripping only, as ts-jest does with isolatedModules.
// Node 20 has no type stripping of its own.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = dirname(dirname(fileURLToPath(import.meta.url)))
const require = createRequire(import.meta.url)
const Module = require('node:module')
const ts = require('typescript')

if (!Module._extensions['.ts']) {
  Module._extensions['.ts'] = (module, filename) => {
    const { outputText } = ts.transpileModule(readFileSync(filename, 'utf8'), {
      fileName: filename,
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, sourceMap: false },
    })
    module._compile(outputText, filename)
  }
}

/** `__test__/support/<name>.ts`, as a CommonJS module. */
export function support(name) {
  return require(join(ROOT, '__test__', 'support', `${name}.ts`))
}

/** `--seed N` or a fresh one (printed by the caller), as a 31-bit integer. */
export function seedFrom(value) {
  return value === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(value) >>> 0
}
