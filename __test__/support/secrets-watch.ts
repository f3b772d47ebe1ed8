/**
 * Jest `setupFilesAfterEnv` file: watches every message the Image API gives
 * a test file for the secrets of support/secrets.ts, and fails the test (or,
 * outside tests, the file) that saw one. The addon's static methods are
 * non-writable, non-configurable properties, and a Proxy may not answer
 * anything but their own value for those; so `Image` of the loaded
 * index.js (a plain writable property) becomes a Proxy over a stand-in
 * function whose `get` trap hands out wrapping copies of the methods and
 * forwards everything else (`name`, `prototype`, `instanceof`, calls and
 * `new`) to the real class. The CLI's output is watched in support/cli.ts.
 */
import { inspect } from 'util'

import { observe, takeFindings } from './secrets'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const binding: { Image: Function } = require('../../index')

/** Where the real class is kept: the addon is loaded once per worker, so a later test file finds the Proxy of an earlier one. */
const REAL = Symbol.for('microsandbox.test.realImage')
const real: Function = (binding.Image as unknown as Record<symbol, Function>)[REAL] ?? binding.Image

const testName = (): string => expect.getState().currentTestName ?? 'outside a test'

function observeError(method: string, err: unknown): void {
  const where = `Image.${method} error in "${testName()}"`
  const e = err as { message?: unknown; stack?: unknown; code?: unknown }
  observe(`${where}: message`, String(e?.message))
  observe(`${where}: stack`, String(e?.stack))
  observe(`${where}: code`, String(e?.code))
  observe(`${where}: JSON`, JSON.stringify(err) ?? '')
  observe(`${where}: inspect`, inspect(err, { depth: 5 }))
}

/** The options with `onProgress` wrapped so every event is scanned (other options pass as they are). */
function watchedOptions(method: string, opts: unknown): unknown {
  if (typeof opts !== 'object' || opts === null || typeof (opts as { onProgress?: unknown }).onProgress !== 'function') return opts
  const onProgress = (opts as { onProgress: (e: unknown) => unknown }).onProgress
  return {
    ...opts,
    onProgress(event: unknown) {
      observe(`Image.${method} progress event in "${testName()}"`, JSON.stringify(event) ?? '')
      return onProgress(event)
    },
  }
}

const wrappers = new Map<PropertyKey, Function>()
function wrapper(name: string, method: Function): Function {
  let w = wrappers.get(name)
  if (!w) {
    w = function (this: unknown, ...args: unknown[]): unknown {
      const self = this === proxy ? real : this
      let result: unknown
      try {
        result = method.apply(self, args.map((a) => watchedOptions(name, a)))
      } catch (err) {
        observeError(name, err)
        throw err
      }
      // Not `instanceof`: the addon's promises belong to Node's main realm, not the test's.
      if (typeof (result as Promise<unknown> | undefined)?.then === 'function') {
        return (result as Promise<unknown>).then(undefined, (err: unknown) => {
          observeError(name, err)
          throw err
        })
      }
      return result
    }
    wrappers.set(name, w)
  }
  return w
}

const proxy: Function = new Proxy(function Image() {}, {
  get(_target, prop) {
    if (prop === REAL) return real
    const value = Reflect.get(real, prop)
    const own = Object.getOwnPropertyDescriptor(real, prop)
    return typeof prop === 'string' && own && typeof value === 'function' && prop !== 'constructor' ? wrapper(prop, value) : value
  },
  has: (_target, prop) => Reflect.has(real, prop),
  getPrototypeOf: () => Reflect.getPrototypeOf(real),
  apply: (_target, self, args) => Reflect.apply(real, self, args),
  construct: (_target, args, newTarget) => Reflect.construct(real, args, newTarget === proxy ? real : newTarget),
})
binding.Image = proxy

function assertNoFindings(): void {
  const found = takeFindings()
  if (found.length > 0) throw new Error(`a secret reached a message the tests saw:\n  ${found.join('\n  ')}`)
}
afterEach(assertNoFindings)
afterAll(assertNoFindings)
