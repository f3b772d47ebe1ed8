/**
 * The CLI's formatting and parsing rules against the values Docker's own
 * helpers (go-units HumanSizeWithPrecision(·, 3), HumanDuration) print, and
 * the flag syntax: sizes in powers of 1000 (`GB`) or 1024 (`GiB`),
 * durations, reference globs and label filters.
 */
import { ago, humanDuration, humanSize, parseDuration, parseSize, shortDigest, table } from '../cli/src/format'
import { familiar, labelMatches, parseFilters, referenceMatches } from '../cli/src/filters'
import { EXIT, UsageError, exitCodeOf, formatError } from '../cli/src/errors'

test.each([
  [0, '0 B'],
  [999, '999 B'],
  [1000, '1 kB'],
  [1234, '1.23 kB'],
  [72_800_000, '72.8 MB'],
  [999_700, '1 MB'],
  [1_200_000_000, '1.2 GB'],
  [5 * 2 ** 30, '5.37 GB'],
  [null, '-'],
])('humanSize(%p) = %p', (bytes, text) => expect(humanSize(bytes)).toBe(text))

test.each([
  ['20GB', 20e9],
  ['20 gb', 20e9],
  ['20G', 20e9],
  ['1.5TB', 1.5e12],
  ['512MiB', 512 * 2 ** 20],
  ['2GiB', 2 * 2 ** 30],
  ['4096', 4096],
  ['10kB', 10_000],
])('parseSize(%p) = %p', (text, bytes) => expect(parseSize(text)).toBe(bytes))

test.each(['', 'GB', '-1GB', '12 parsecs', '1e9'])('parseSize(%p) is a usage error', (text) => {
  expect(() => parseSize(text)).toThrow(UsageError)
})

test.each([
  ['90s', 90_000],
  ['30m', 1_800_000],
  ['24h', 86_400_000],
  ['1h30m', 5_400_000],
  ['7d', 604_800_000],
  ['2w', 1_209_600_000],
  ['1.5h', 5_400_000],
  ['250ms', 250],
])('parseDuration(%p) = %p ms', (text, ms) => expect(parseDuration(text)).toBe(ms))

test.each(['', '24', 'soon', '1y', 'h24'])('parseDuration(%p) is a usage error', (text) => {
  expect(() => parseDuration(text)).toThrow(UsageError)
})

test.each([
  [500, 'Less than a second'],
  [1000, '1 second'],
  [59_000, '59 seconds'],
  [60_000, 'About a minute'],
  [59 * 60_000, '59 minutes'],
  [3_600_000, 'About an hour'],
  [47 * 3_600_000, '47 hours'],
  [3 * 86_400_000, '3 days'],
  [20 * 86_400_000, '2 weeks'],
  [90 * 86_400_000, '3 months'],
  [800 * 86_400_000, '2 years'],
])('humanDuration(%p) = %p', (ms, text) => expect(humanDuration(ms)).toBe(text))

test('ages, digests and tables', () => {
  expect(ago(new Date(0), 3 * 86_400_000)).toBe('3 days ago')
  expect(ago(null)).toBe('never')
  expect(shortDigest('sha256:0123456789abcdef0123')).toBe('0123456789ab')
  expect(shortDigest('sha256:0123456789abcdef0123', true)).toBe('sha256:0123456789abcdef0123')
  expect(table(['A', 'BB'], [['long value', 'x']])).toBe('A            BB\nlong value   x\n')
})

test('references: familiar forms, globs with and without tags', () => {
  expect(familiar('docker.io/library/python:3.12')).toBe('python:3.12')
  expect(familiar('docker.io/acme/tool:1')).toBe('acme/tool:1')
  expect(familiar('ghcr.io/acme/tool:1')).toBe('ghcr.io/acme/tool:1')
  const py = 'docker.io/library/python:3.12'
  for (const glob of ['python', 'python:*', 'py*', 'python:3.1?', 'docker.io/library/python:3.12', 'docker.io/*/python', 'python:3.1[0-9]']) expect([glob, referenceMatches(py, glob)]).toEqual([glob, true])
  for (const glob of ['*/python', 'pyth', 'python:2*', 'docker.io/*', 'python:3.1[!2]']) expect([glob, referenceMatches(py, glob)]).toEqual([glob, false])
  expect(referenceMatches('localhost:5000/team/app@sha256:abcd', 'localhost:5000/team/app')).toBe(true)
})

test('labels and filter parsing', () => {
  const labels = { tier: 'web', 'org.example.team': 'core=main' }
  expect(labelMatches(labels, 'tier')).toBe(true)
  expect(labelMatches(labels, 'tier=web')).toBe(true)
  expect(labelMatches(labels, 'tier=db')).toBe(false)
  expect(labelMatches(labels, 'org.example.team=core=main')).toBe(true)
  expect(labelMatches(null, 'tier')).toBe(false)
  expect(parseFilters(['reference=a', 'Label=x=y', 'reference=b'], ['reference', 'label'])).toEqual(
    new Map([
      ['reference', ['a', 'b']],
      ['label', ['x=y']],
    ]),
  )
  expect(() => parseFilters(['until=1h'], ['reference'])).toThrow(UsageError)
  expect(() => parseFilters(['=1h'], ['reference'])).toThrow(UsageError)
})

test('exit codes and error lines', () => {
  expect(exitCodeOf(new UsageError('x'))).toBe(EXIT.usage)
  expect(exitCodeOf(Object.assign(new Error('x'), { code: 'aborted' }))).toBe(130)
  for (const code of ['cache', 'cache_index', 'internal']) expect(exitCodeOf(Object.assign(new Error('x'), { code }))).toBe(125)
  for (const code of ['image_not_found', 'registry', 'unsupported', 'invalid_reference']) expect(exitCodeOf(Object.assign(new Error('x'), { code }))).toBe(1)
  expect(formatError(new Error('two\n  lines'), false)).toBe('microsandbox: two lines\n')
  expect(formatError(Object.assign(new Error('boom'), { code: 'cache' }), true)).toMatch(/^microsandbox: boom \[code: cache\]\nError: boom\n\s+at /)
})
