/**
 * `image prune`: the API's prune with Docker's flags. With no filter it is
 * `Image.prune()` (every image no sandbox or snapshot uses; `-a` means the
 * same). Filters, `--keep`, `--max-size` and `--dry-run` map one-to-one to
 * the prune options; `--filter reference=` matches as `image ls` does
 * (Docker's familiar names, with or without the tag), so the CLI picks the
 * matching references and hands them to the API by name.
 */
import { ImagePruneReport, PruneOptions, api } from '../api'
import { UsageError } from '../errors'
import { parseFilters, referenceMatches } from '../filters'
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

/** `label=K` (present) and `label=K=V` (equal), as the API's `labels`. */
function labelOptions(filters: string[]): Record<string, string | true> {
  const labels: Record<string, string | true> = {}
  for (const f of filters) {
    const eq = f.indexOf('=')
    if (eq === 0 || f === '') throw new UsageError(`invalid label filter ${JSON.stringify(f)}: expected KEY or KEY=VALUE`)
    if (eq < 0) labels[f] = true
    else labels[f.slice(0, eq)] = f.slice(eq + 1)
  }
  return labels
}

/** The prune options the flags ask for (empty: a plain prune). */
export async function pruneOptions(flags: PruneFlags): Promise<PruneOptions> {
  const filters = parseFilters(flags.filter, ['until', 'unused-for', 'label', 'reference'])
  const options: PruneOptions = {}
  const until = single(filters.get('until'), 'until')
  if (until !== undefined) options.olderThan = parseDuration(until)
  const unused = single(filters.get('unused-for'), 'unused-for')
  if (unused !== undefined) options.unusedFor = parseDuration(unused)
  if (filters.has('label')) options.labels = labelOptions(filters.get('label')!)
  const globs = filters.get('reference')
  if (globs) {
    const all = await api().list()
    options.references = all.map((h) => h.reference).filter((r) => globs.some((g) => referenceMatches(r, g)))
  }
  if (flags.keep.length > 0) options.keep = flags.keep
  if (flags.maxSize !== undefined) options.maxBytes = parseSize(flags.maxSize)
  if (flags.dryRun) options.dryRun = true
  return options
}

/** `image prune`: asks first on a terminal (unless `-f`), then prints what went and the space reclaimed. */
export async function prune(flags: PruneFlags): Promise<void> {
  const format = outputFormat(flags.format)
  const options = await pruneOptions(flags)
  const filtered = Object.keys(options).some((k) => k !== 'dryRun')
  if (!flags.force && !options.dryRun && interactive()) {
    const scope = filtered ? 'every image the filters select that no sandbox or snapshot uses' : 'every image no sandbox or snapshot uses'
    process.stderr.write(`WARNING! This will remove ${scope}.\n`)
    if (!(await confirm('Are you sure you want to continue?'))) return
  }
  const Image = api()
  const report: ImagePruneReport = Object.keys(options).length > 0 ? await Image.prune(options) : await Image.prune()
  if (format === 'json') return out(json(report))
  const dry = report.dryRun
  let text = ''
  if (report.references.length > 0) text += `${dry ? 'Would delete' : 'Deleted Images'}:\n${report.references.map((r) => `untagged: ${r}\n`).join('')}\n`
  text += `Total ${dry ? 'reclaimable' : 'reclaimed'} space: ${humanSize(report.bytesReclaimed ?? 0)}\n`
  if (report.budgetBytes !== null) {
    text += `Cache size: ${humanSize(report.remainingBytes)} of ${humanSize(report.budgetBytes)} (${report.budgetMet ? 'within budget' : 'over budget: what is left is in use or kept'})\n`
  }
  out(text)
}
