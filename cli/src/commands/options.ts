/**
 * Option values several commands share, checked once: `--format` (table
 * or json) and `--platform`.
 */
import { UsageError } from '../errors'

/** `--format table|json` (table when absent). */
export function outputFormat(value: string | undefined): 'table' | 'json' {
  if (value === undefined || value === 'table') return 'table'
  if (value === 'json') return 'json'
  throw new UsageError(`unsupported --format ${JSON.stringify(value)}: expected table or json`)
}

/** Collects a repeatable option (`--filter a --filter b`). */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value]
}
