/**
 * `image prune`: the API's prune with Docker's flags. With no filter it is
 * `Image.prune()` (every image no sandbox or snapshot uses; `-a` means the
 * same). Filters, `--keep`, `--max-size` and `--dry-run` map one-to-one to
 * the prune options the engine is adding, and are refused until they land:
 * today's binding would ignore them and prune everything.
 */
import { LANDED, PruneOptions, PruneReport, api, notLanded } from '../api'
import { UsageError } from '../errors'
import { parseFilters } from '../filters'
import { humanSize, json, parseDuration, parseSize } from '../format'
import { out } from '../output'
import { confirm, interactive } from '../prompt'
import { outputFormat } from './options'

/** The flags of `image prune`, as commander parsed them. */
export interface PruneFlags {
  all?: boolean
  filter: string[]
  keep: string[]
  maxSize?: string
  dryRun?: boolean
  force?: boolean
  format?: string
}

function single(values: string[] | undefined, key: string): string | undefined {
  if (values && values.length > 1) throw new UsageError(`--filter ${key}= given more than once`)
  return values?.[0]
}

/** The prune options the flags ask for (empty: a plain prune). */
export function pruneOptions(flags: PruneFlags): PruneOptions {
  const filters = parseFilters(flags.filter, ['until', 'unused-for', 'label', 'reference'])
  const options: PruneOptions = {}
  const until = single(filters.get('until'), 'until')
  if (until !== undefined) options.olderThan = parseDuration(until)
  const unused = single(filters.get('unused-for'), 'unused-for')
  if (unused !== undefined) options.unusedFor = parseDuration(unused)
  if (filters.has('label')) options.labels = filters.get('label')
  if (filters.has('reference')) options.references = filters.get('reference')
  if (flags.keep.length > 0) options.keep = flags.keep
  if (flags.maxSize !== undefined) options.maxBytes = parseSize(flags.maxSize)
  if (flags.dryRun) options.dryRun = true
  return options
}

/** `image prune`: asks first on a terminal (unless `-f`), then prints what went and the space reclaimed. */
export async function prune(flags: PruneFlags): Promise<void> {
  const format = outputFormat(flags.format)
  const options = pruneOptions(flags)
  const filtered = Object.keys(options).length > 0
  if (filtered && !LANDED.pruneOptions) {
    throw notLanded(`image prune with ${describe(flags)}`)
  }
  if (!flags.force && !options.dryRun && interactive()) {
    const scope = filtered ? 'every image the filters select that no sandbox or snapshot uses' : 'every image no sandbox or snapshot uses'
    process.stderr.write(`WARNING! This will remove ${scope}.\n`)
    if (!(await confirm('Are you sure you want to continue?'))) return
  }
  const Image = api()
  // Until the report names the references it removed, the difference of two listings does.
  const before = LANDED.pruneOptions ? undefined : await Image.list()
  const report: PruneReport = filtered ? await Image.prune(options) : await Image.prune()
  let references = report.references
  if (!references && before) {
    const after = new Set((await Image.list()).map((h) => h.reference))
    references = before.map((h) => h.reference).filter((r) => !after.has(r))
  }
  if (format === 'json') return out(json({ ...report, references }))
  const dry = report.dryRun === true
  let text = ''
  if (references && references.length > 0) text += `${dry ? 'Would delete' : 'Deleted Images'}:\n${references.map((r) => `untagged: ${r}\n`).join('')}\n`
  text += `Total ${dry ? 'reclaimable' : 'reclaimed'} space: ${humanSize(report.bytesReclaimed ?? 0)}\n`
  if (report.budgetBytes !== undefined && report.budgetBytes !== null) {
    text += `Cache size: ${humanSize(report.remainingBytes)} of ${humanSize(report.budgetBytes)} (${report.budgetMet ? 'within budget' : 'over budget: what is left is in use or kept'})\n`
  }
  out(text)
}

function describe(flags: PruneFlags): string {
  const parts = [...flags.filter.map((f) => `--filter ${f.split('=')[0]}`)]
  if (flags.keep.length > 0) parts.push('--keep')
  if (flags.maxSize !== undefined) parts.push('--max-size')
  if (flags.dryRun) parts.push('--dry-run')
  return parts.join(', ')
}
