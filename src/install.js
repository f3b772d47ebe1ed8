// What the addon adds to its exports at load time, in JavaScript because
// napi classes cannot extend Error: the error classes (the generated
// index.js re-exports them), and a readable console.log for ImageHandle.
// Evaluated once per JavaScript environment with the class table (name,
// code) the build script makes of the engine's error taxonomy; returns the
// factory the Rust side calls to build a rejection of the right class.
(function install(exports, table) {
  'use strict'
  const inspect = Symbol.for('nodejs.util.inspect.custom')
  exports.ImageHandle.prototype[inspect] = function (depth, options, nodeInspect) {
    return `ImageHandle ${nodeInspect(this.toJSON(), options)}`
  }
  class MicrosandboxError extends Error {
    constructor(message, options) {
      super(message, options && options.cause !== undefined ? { cause: options.cause } : undefined)
      this.code = 'internal'
    }
  }
  const classes = { MicrosandboxError }
  const byCode = {}
  const define = (name, code) => {
    const cls = {
      [name]: class extends MicrosandboxError {
        constructor(message, options) {
          super(message, options)
          this.code = code
        }
      },
    }[name]
    classes[name] = cls
    byCode[code] = cls
  }
  for (const [name, code] of table) define(name, code)
  for (const [name, cls] of Object.entries(classes)) {
    Object.defineProperty(cls.prototype, 'name', { value: name, writable: true, configurable: true })
    exports[name] = cls
  }
  return function createError(code, message, details) {
    const cls = byCode[code] || MicrosandboxError
    const error = new cls(message)
    error.code = code
    if (details) Object.assign(error, details)
    return error
  }
})
