/**
 * `system df` (from `Image.diskUsage()`) and `image check` (from
 * `Image.check()`), printed as Docker and Podman print theirs.
 */
import { api } from '../api'
import { CliError, EXIT } from '../errors'
import { humanSize, json, shortDigest, table } from '../format'
import { out, styles } from '../output'
import { outputFormat } from './options'

/**
 * `system df [-v]`: Docker's TYPE / TOTAL / ACTIVE / SIZE / RECLAIMABLE
 * table (images: references, those in use, every artifact file and what
 * `prune` would free; then layer images, root disks and the index), per
 * image with `-v`.
 */
export async function df(opts: { verbose?: boolean; format?: string }): Promise<void> {
  const format = outputFormat(opts.format)
  const usage = await api().diskUsage()
  if (format === 'json') return out(json(usage))
  const bold = styles(process.stdout).bold
  const pct = (part: number, whole: number) => (whole > 0 ? ` (${Math.round((part / whole) * 100)}%)` : '')
  const artifacts = usage.layers.bytes + usage.fsmeta.bytes + usage.vmdk.bytes
  const rows = [
    ['Images', String(usage.images.length), String(usage.images.filter((i) => i.inUse).length), humanSize(artifacts), humanSize(usage.reclaimableBytes) + pct(usage.reclaimableBytes, artifacts)],
    ['Layer images', String(usage.layers.count), '-', humanSize(usage.layers.bytes), '-'],
    ['Root disks', String(usage.fsmeta.count + usage.vmdk.count), '-', humanSize(usage.fsmeta.bytes + usage.vmdk.bytes), '-'],
    ['Index', '1', '-', humanSize(usage.indexBytes), '-'],
  ]
  let text = table(['TYPE', 'TOTAL', 'ACTIVE', 'SIZE', 'RECLAIMABLE'], rows, bold)
  text += `\nTotal: ${humanSize(usage.totalBytes)}\n`
  if (opts.verbose) {
    text += '\nImages space usage:\n\n'
    text += table(
      ['REFERENCE', 'DIGEST', 'SIZE', 'SHARED SIZE', 'UNIQUE SIZE', 'IN USE'],
      usage.images.map((i) => [i.reference, shortDigest(i.manifestDigest), humanSize(i.sizeBytes), humanSize(i.sharedBytes), humanSize(i.uniqueBytes), i.inUse ? 'yes' : 'no']),
      bold,
    )
  }
  out(text)
}

/**
 * `image check [--full] [--repair]`: the cache's consistency, one line per
 * problem; exit 1 when problems remain (repaired ones do not count).
 */
export async function check(opts: { full?: boolean; repair?: boolean; format?: string }): Promise<void> {
  const format = outputFormat(opts.format)
  const report = await api().check({ full: opts.full === true, repair: opts.repair === true })
  const remaining = report.problems.filter((p) => !p.repaired)
  if (format === 'json') out(json(report))
  else {
    let text = ''
    for (const p of report.problems) {
      const what = p.reference ?? p.digest ?? p.path ?? ''
      text += `${p.repaired ? 'repaired' : 'problem'}: ${p.kind}${what ? ` ${what}` : ''}: ${p.message}\n`
    }
    text += `checked ${report.checkedFiles} files (${humanSize(report.checkedBytes)}): `
    text += remaining.length === 0 ? (report.problems.length ? `${report.problems.length} problems repaired\n` : 'no problems\n') : `${remaining.length} problems remain${opts.repair ? '' : ' (--repair fixes what it can)'}\n`
    out(text)
  }
  if (remaining.length > 0) throw new CliError(`image check: ${remaining.length} problems remain`, EXIT.general)
}
