/**
 * What must hold of a cache after a crash (a SIGKILLed process, a power
 * cut replayed from a write log), and after a workload that did not crash.
 * Each check returns sentences (empty: nothing wrong), so a harness can
 * report every problem of a round instead of stopping at the first.
 *
 * After a crash, files no row reaches (published, or left in tmp/, before
 * the index transaction that would have named them) are legitimate: they
 * are the garbage `prune` reclaims. They are counted as debris, not as
 * problems; everything else consistencyProblems and fsckProblems find is a
 * problem. Once a prune has run, there may be no debris either.
 */
import * as fs from 'fs'
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image } from '../..'
import { artifactTree, consistencyProblems, freshHome, fsckProblems, readIndex, realEnv, setEnv } from './cache'

/** Problems a crash may legitimately leave: files no index row reaches. */
/**
 * What a kill may legitimately leave, all of it garbage the next prune
 * reclaims: files no row names (published, not yet recorded; or unlinked
 * late), and content rows (configs, documents, blob rows) of manifests a
 * killed prune had already dropped: prune drops the rows that name files
 * in one transaction and that content in a second, beside the unlinking.
 */
const DEBRIS = [
  /^unindexed artifact: /,
  /^file left in tmp\//,
  /^fsmeta \S+ belongs to no indexed manifest$/,
  /^(content of|blob row|config) sha256:[0-9a-f]{64} belongs to no manifest$/,
]

export interface Findings {
  problems: string[]
  /** Crash leftovers that prune must reclaim (counted, not problems). */
  debris: string[]
}

/** SQLite's own checks of the index file: `integrity_check` and `foreign_key_check`. */
export function sqliteProblems(home: string): string[] {
  const file = path.join(home, 'db', 'index.sqlite')
  if (!fs.existsSync(file)) return []
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Database = require('better-sqlite3')
  const db = new Database(file, { readonly: true, fileMustExist: true })
  try {
    const integrity = db.pragma('integrity_check') as Array<{ integrity_check: string }>
    const problems = integrity.filter((r) => r.integrity_check !== 'ok').map((r) => `sqlite integrity_check: ${r.integrity_check}`)
    for (const r of db.pragma('foreign_key_check') as Array<Record<string, unknown>>) problems.push(`sqlite foreign_key_check: ${JSON.stringify(r)}`)
    return problems
  } finally {
    db.close()
  }
}

/**
 * The files on disk and the index against each other, fsck.erofs over every
 * layer image and every fsmeta (with its layers as devices), and SQLite's
 * checks. With `afterCrash`, files no row reaches are debris.
 */
export async function diskFindings(home: string, afterCrash: boolean): Promise<Findings> {
  const all = [...(await consistencyProblems(home)), ...(await fsckProblems(home)), ...sqliteProblems(home)]
  const isDebris = (p: string) => afterCrash && DEBRIS.some((re) => re.test(p))
  return { problems: all.filter((p) => !isDebris(p)), debris: all.filter(isDebris) }
}

/**
 * The cache as a user finds it: `list()` works, every listed image
 * inspects (its layers as the index has them) and acquires, and every
 * path `acquire` returns exists. The check's sandbox is released after.
 * With `Image.check` present, it must find nothing but debris kinds.
 */
export async function apiProblems(home: string, sandbox: string, opts: { check?: boolean; afterCrash?: boolean } = {}): Promise<string[]> {
  const problems: string[] = []
  const fail = (what: string) => (e: unknown) => {
    problems.push(`${what}: ${(e as { code?: string }).code ?? ''} ${(e as Error).message}`)
  }
  const index = readIndex(home)
  const refs = await Image.list().catch((e) => {
    fail('list()')(e)
    return undefined
  })
  if (!refs) return problems
  const listed = refs.map((h) => h.reference)
  const indexed = index.refs.map((r) => r.reference)
  if (JSON.stringify(listed) !== JSON.stringify(indexed)) problems.push(`list() ${JSON.stringify(listed)} differs from the index ${JSON.stringify(indexed)}`)
  try {
    for (const ref of listed) {
      const detail = await Image.inspect(ref).catch(fail(`inspect(${ref})`))
      if (!detail) continue
      const rows = index.manifestLayers.filter((l) => l.manifest_digest === detail.handle.manifestDigest).map((l) => l.diff_id)
      if (JSON.stringify(detail.layers.map((l) => l.diffId)) !== JSON.stringify(rows)) problems.push(`inspect(${ref}) layers differ from the index`)
      const boot = await Image.acquire(ref, { sandbox }).catch(fail(`acquire(${ref})`))
      if (!boot) continue
      for (const p of [boot.vmdkPath, boot.fsmetaPath, ...boot.layers]) {
        if (!fs.existsSync(p)) problems.push(`acquire(${ref}) returned ${p}, which does not exist`)
      }
    }
  } finally {
    await Image.release(sandbox).catch(fail(`release(${sandbox})`))
  }
  if (opts.check) {
    const debrisKinds = opts.afterCrash ? ['orphan_file', 'temp_file'] : []
    const report = await (Image as unknown as { check(o?: object): Promise<{ problems: Array<{ kind: string; message: string }> }> }).check().catch(fail('check()'))
    for (const p of report?.problems ?? []) if (!debrisKinds.includes(p.kind)) problems.push(`check(): ${p.kind}: ${p.message}`)
  }
  return problems
}

/**
 * A killed `save` must leave nothing at its output path, or a complete
 * archive (when the kill came after the rename): one that `Image.load`
 * accepts, every digest and diff_id verified, in a scratch cache.
 * Returns the problems and the `.partial` files left beside it.
 */
export async function saveOutputProblems(outputPath: string): Promise<{ problems: string[]; partials: string[] }> {
  const dir = path.dirname(outputPath)
  const partials = (await fsp.readdir(dir)).filter((n) => n.startsWith(`.${path.basename(outputPath)}.`) && n.endsWith('.partial'))
  if (!fs.existsSync(outputPath)) return { problems: [], partials }
  const previous = realEnv('MSB_HOME')
  const scratch = await freshHome('msb-save-check-')
  try {
    await Image.load(outputPath)
    return { problems: [], partials }
  } catch (e) {
    return { problems: [`save left an archive at ${outputPath} that does not load: ${(e as Error).message}`], partials }
  } finally {
    await scratch.cleanup()
    setEnv('MSB_HOME', previous)
  }
}

/**
 * Removes everything a user can name (sandboxes released, snapshots
 * unpinned, every reference removed with force), prunes, and returns what
 * is still on disk or in the index: nothing may be.
 */
export async function drainProblems(home: string): Promise<string[]> {
  const before = readIndex(home)
  for (const s of before.sandboxes) await Image.release(s.name)
  for (const s of before.snapshots) await Image.unpinSnapshot(s.name)
  for (const h of await Image.list()) await Image.remove(h.reference, { force: true }).catch((e) => (e.code === 'image_not_found' ? undefined : Promise.reject(e)))
  await Image.prune()
  const problems = [...(await artifactTree(home)).keys()].map((p) => `left after removing everything and pruning: ${p}`)
  const after = readIndex(home)
  for (const [table, rows] of Object.entries(after)) if (rows.length > 0) problems.push(`index table ${table} still has ${rows.length} rows after removing everything and pruning`)
  return [...problems, ...sqliteProblems(home)]
}
