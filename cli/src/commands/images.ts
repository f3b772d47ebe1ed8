/**
 * The commands that read or rename cache entries: `image ls`, `image
 * inspect`, `image rm` and `image tag`, each a thin shell over one
 * `Image` method, printing Docker's shapes.
 */
import { api, ImageHandle } from '../api'
import { CliError, REPORTED, exitCodeOf, formatError } from '../errors'
import { labelMatches, parseFilters, referenceMatches } from '../filters'
import { ago, humanSize, json, platformOf, shortDigest, table } from '../format'
import { out, styles } from '../output'
import { outputFormat } from './options'

/** The flags of `image ls`, as commander parsed them. */
export interface ListOptions {
  quiet?: boolean
  noTrunc?: boolean
  format?: string
  filter: string[]
}

/**
 * `image ls`: every cached image, filtered by reference globs and config
 * labels (which need `Image.inspect` per image: handles carry no labels).
 */
export async function list(opts: ListOptions): Promise<void> {
  const format = outputFormat(opts.format)
  const filters = parseFilters(opts.filter, ['reference', 'label'])
  const Image = api()
  let images = await Image.list()
  const globs = filters.get('reference')
  if (globs) images = images.filter((h) => globs.some((g) => referenceMatches(h.reference, g)))
  const labels = filters.get('label')
  if (labels) {
    const keep: ImageHandle[] = []
    for (const h of images) {
      const detail = await Image.inspect(h.reference)
      if (labels.every((l) => labelMatches(detail.config?.labels, l))) keep.push(h)
    }
    images = keep
  }
  if (format === 'json') return out(json(images.map((h) => h.toJSON())))
  if (opts.quiet) return out(images.map((h) => h.reference + '\n').join(''))
  const now = Date.now()
  const rows = images.map((h) => [h.reference, shortDigest(h.manifestDigest, opts.noTrunc), platformOf(h), String(h.layerCount), humanSize(h.sizeBytes), ago(h.createdAt, now), ago(h.lastUsedAt, now)])
  out(table(['REFERENCE', 'DIGEST', 'PLATFORM', 'LAYERS', 'SIZE', 'CREATED', 'LAST USED'], rows, styles(process.stdout).bold))
}

/** `image inspect`: one JSON array of the API's answers, printed only when every reference was found. */
export async function inspect(references: string[]): Promise<void> {
  const Image = api()
  const details = []
  for (const r of references) details.push(await Image.inspect(r))
  out(json(details))
}

/**
 * `image rm`: removes each reference in turn, as `docker rmi` does: one
 * `Untagged:` line per removal, one error line per failure, and the
 * failure's exit code at the end if any failed.
 */
export async function remove(references: string[], opts: { force?: boolean }): Promise<void> {
  const Image = api()
  let failure: unknown
  for (const r of references) {
    try {
      const handle = await Image.get(r)
      await Image.remove(r, { force: opts.force === true })
      out(`Untagged: ${handle.reference}\n`)
    } catch (e) {
      process.stderr.write(formatError(e, false))
      failure ??= e
    }
  }
  if (failure !== undefined) throw new CliError('', exitCodeOf(failure), REPORTED)
}

/** `image tag`: a second reference to the image `source` names; prints nothing, as `docker tag`. */
export async function tag(source: string, target: string): Promise<void> {
  await api().tag(source, target)
}
