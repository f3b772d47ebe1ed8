/**
 * `--filter KEY=VALUE` as Docker parses it, and the reference and label
 * matching `image ls` does itself (the API has no list filters): several
 * `reference=` filters match if any does, several `label=` filters must
 * all match, as in `docker images`.
 */
import { UsageError } from './errors'

/** Filter values by key, in the order given. */
export type Filters = Map<string, string[]>

/** Parses repeated `--filter` values, accepting only the keys the command knows. */
export function parseFilters(values: readonly string[], allowed: readonly string[]): Filters {
  const filters: Filters = new Map()
  for (const v of values) {
    const eq = v.indexOf('=')
    if (eq <= 0) throw new UsageError(`bad format of filter (expected name=value): ${v}`)
    const key = v.slice(0, eq).trim().toLowerCase()
    if (!allowed.includes(key)) throw new UsageError(`invalid filter '${key}' (supported: ${allowed.join(', ')})`)
    filters.set(key, [...(filters.get(key) ?? []), v.slice(eq + 1)])
  }
  return filters
}

/** Docker's short form of a normalized reference: `docker.io/library/python:3.12` → `python:3.12`. */
export function familiar(reference: string): string {
  return reference.replace(/^docker\.io\/library\/(?=[^/]+$|[^/]+[:@])/, '').replace(/^docker\.io\//, '')
}

/** A glob as path.Match reads it: `*` and `?` stop at `/`, `[...]` is a class. */
function globRegExp(glob: string): RegExp {
  let re = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]
    if (c === '*') re += '[^/]*'
    else if (c === '?') re += '[^/]'
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1)
      if (end < 0) throw new UsageError(`invalid reference pattern ${JSON.stringify(glob)}: unterminated [`)
      const body = glob.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\')
      re += `[${body}]`
      i = end
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&')
  }
  return new RegExp(`^${re}$`)
}

/**
 * Whether `reference` matches the glob, tried against the long and the
 * familiar form, with and without the tag (`python`, `python:*` and
 * `docker.io/library/python:3.12` all match `docker.io/library/python:3.12`).
 */
export function referenceMatches(reference: string, glob: string): boolean {
  const re = globRegExp(glob)
  const forms = new Set<string>()
  for (const r of [reference, familiar(reference)]) {
    forms.add(r)
    forms.add(r.replace(/@[^@]+$/, '').replace(/:[^:/]+$/, ''))
  }
  return [...forms].some((f) => re.test(f))
}

/** Whether config labels satisfy `KEY` (present) or `KEY=VALUE` (equal). */
export function labelMatches(labels: Record<string, unknown> | null | undefined, filter: string): boolean {
  const eq = filter.indexOf('=')
  const key = eq < 0 ? filter : filter.slice(0, eq)
  if (!labels || !Object.prototype.hasOwnProperty.call(labels, key)) return false
  return eq < 0 || String(labels[key]) === filter.slice(eq + 1)
}
