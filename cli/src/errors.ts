/**
 * Exit codes and the one-line error report, as docker and nerdctl do it:
 * 1 for a general failure, 2 for a usage error, 125 when the cache itself
 * failed (Docker's "the daemon failed"), 130 when interrupted (128 + SIGINT).
 */

export const EXIT = {
  ok: 0,
  general: 1,
  usage: 2,
  cache: 125,
  interrupted: 130,
} as const

/** Codes of the API errors that mean the cache (not the user's input) failed. */
const CACHE_CODES = new Set(['cache', 'cache_index', 'internal'])

/** A mistake on the command line: exit 2, no API call was made. */
export class UsageError extends Error {
  readonly code = 'usage'
}

/** The `code` of a CliError whose details were already printed: only its exit code is left to give. */
export const REPORTED = 'reported'

/** A failure the CLI itself detects (not the API): exit `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.general,
    readonly code = 'cli',
  ) {
    super(message)
  }
}

/** The exit code an error maps to, so scripts can tell usage, cache and interrupt failures apart. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof UsageError) return EXIT.usage
  if (err instanceof CliError) return err.exitCode
  const code = (err as { code?: unknown } | null)?.code
  if (code === 'aborted') return EXIT.interrupted
  if (typeof code === 'string' && CACHE_CODES.has(code)) return EXIT.cache
  return EXIT.general
}

/**
 * The message of `err` as one line (`microsandbox: <message>`); with
 * `debug`, its `code` and stack follow, so a bug report carries them.
 */
export function formatError(err: unknown, debug: boolean): string {
  const e = err as { message?: unknown; code?: unknown; stack?: unknown } | null
  const raw = e && typeof e.message === 'string' ? e.message : String(err)
  const message = raw.replace(/\s*\n\s*/g, ' ').trim()
  let out = `microsandbox: ${message}`
  if (debug) {
    if (e && e.code !== undefined) out += ` [code: ${String(e.code)}]`
    if (e && typeof e.stack === 'string') out += '\n' + e.stack
  }
  return out + '\n'
}
