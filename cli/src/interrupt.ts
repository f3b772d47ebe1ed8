/**
 * Ctrl-C for long commands: the first SIGINT (or SIGTERM) aborts the API
 * call through its `AbortSignal`, so the engine takes back what it wrote
 * and the command exits 130 from the `AbortError`; a second one exits 130
 * at once, for a user who will not wait.
 */
import { EXIT } from './errors'

/** An `AbortSignal` tied to Ctrl-C for the lifetime of `run`; `onInterrupt` runs first (e.g. to stop a progress display). */
export async function withInterrupt<T>(run: (signal: AbortSignal) => Promise<T>, onInterrupt: () => void = () => {}): Promise<T> {
  const controller = new AbortController()
  let count = 0
  const handler = (): void => {
    count++
    if (count === 1) {
      onInterrupt()
      controller.abort()
    } else {
      process.exit(EXIT.interrupted)
    }
  }
  process.on('SIGINT', handler)
  process.on('SIGTERM', handler)
  try {
    return await run(controller.signal)
  } finally {
    process.off('SIGINT', handler)
    process.off('SIGTERM', handler)
  }
}
