/**
 * What the commands print and parse, with Docker's conventions: sizes in
 * powers of 1000 with three significant digits (go-units HumanSize, as
 * `docker images` prints them), ages as go-units HumanDuration, shortened
 * digests, tables padded like Docker's tabwriter, and the size and duration
 * syntax of its flags (`20GB`, `512MiB`, `24h`, `7d`).
 */
import { UsageError } from './errors'

const DECIMAL = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB']

/** Bytes as Docker prints them: `1.2 GB`, `72.8 MB`, `512 B` (powers of 1000). */
export function humanSize(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return '-'
  let size = bytes
  let unit = 0
  while (size >= 1000 && unit < DECIMAL.length - 1) {
    size /= 1000
    unit++
  }
  let rounded = Number(size.toPrecision(3))
  // 999.7 kB rounds to 1000 kB: that is 1 MB.
  if (rounded >= 1000 && unit < DECIMAL.length - 1) {
    rounded = Number((rounded / 1000).toPrecision(3))
    unit++
  }
  return `${rounded} ${DECIMAL[unit]}`
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  p: 1e15,
  pb: 1e15,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
  pib: 2 ** 50,
}

/** A size flag (`20GB` = 20·10^9, `20GiB` = 20·2^30, `1.5 TB`, `4096`) in bytes. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text)
  const factor = m ? SIZE_UNITS[m[2].toLowerCase() || 'b'] : undefined
  if (!m || factor === undefined) throw new UsageError(`invalid size ${JSON.stringify(text)}: expected a number with an optional unit (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)`)
  return Math.round(Number(m[1]) * factor)
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 }

/**
 * A duration flag in milliseconds: Go's syntax (`24h`, `1h30m`, `90s`) plus
 * days and weeks (`7d`, `2w`), which Docker's filters lack but people type.
 */
export function parseDuration(text: string): number {
  const parts = /^\s*((?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+)\s*$/.exec(text)
  if (!parts) throw new UsageError(`invalid duration ${JSON.stringify(text)}: expected e.g. 90s, 30m, 24h, 7d or 1h30m`)
  let ms = 0
  for (const [, n, unit] of parts[1].matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)) ms += Number(n) * DURATION_UNITS[unit]
  return Math.round(ms)
}

/** go-units HumanDuration: `Less than a second`, `About a minute`, `3 days`, `2 weeks`. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000)
  if (seconds < 1) return 'Less than a second'
  if (seconds === 1) return '1 second'
  if (seconds < 60) return `${seconds} seconds`
  const minutes = Math.floor(seconds / 60)
  if (minutes === 1) return 'About a minute'
  if (minutes < 60) return `${minutes} minutes`
  const hours = Math.floor(ms / 3600e3 + 0.5)
  if (hours === 1) return 'About an hour'
  if (hours < 48) return `${hours} hours`
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`
  return `${Math.floor(ms / 3600e3 / 24 / 365)} years`
}

/** `3 days ago` for a date, `never` for none (an image no sandbox used yet). */
export function ago(date: Date | null | undefined, now = Date.now()): string {
  if (!date) return 'never'
  return `${humanDuration(Math.max(0, now - date.getTime()))} ago`
}

/** A digest as Docker shows image IDs: 12 hex digits, or in full with `noTrunc`. */
export function shortDigest(digest: string | null | undefined, noTrunc = false): string {
  if (!digest) return '<none>'
  if (noTrunc) return digest
  return digest.replace(/^[a-z0-9]+:/, '').slice(0, 12)
}

/** `linux/amd64` from a handle's os and architecture. */
export function platformOf(h: { os: string | null; architecture: string | null }): string {
  if (!h.os && !h.architecture) return '-'
  return `${h.os ?? '?'}/${h.architecture ?? '?'}`
}

/**
 * Rows as aligned columns, three spaces apart (Docker's tabwriter
 * padding); the header may be styled (bold) without shifting the columns.
 */
export function table(header: string[], rows: string[][], style: (s: string) => string = (s) => s): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] + 3)))
      .join('')
      .trimEnd()
  return [style(line(header)), ...rows.map(line)].join('\n') + '\n'
}

/** JSON for the `--format json` outputs: two-space indented, as `docker inspect` prints. */
export function json(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n'
}
