/**
 * The one way into the engine: the package's public `Image` API, loaded on
 * first use (so `--help` and `--version` never load the addon). Also the
 * parts of the API this CLI is written against that the binding does not
 * have yet (issue 12), described here with the names the engine team is
 * adding, so the commands compile now and work once they land.
 */
import type {
  Image as ImageApi,
  ImageHandle,
  ImagePruneReport,
} from '../../index'
import { CliError } from './errors'

export type { ImageDetail, ImageHandle, PullProgressEvent } from '../../index'

/** Options of `Image.prune(opts)` once it takes them (not in the binding yet). */
export interface PruneOptions {
  dryRun?: boolean
  /** Milliseconds since a sandbox last used the image (never used: since it was cached). */
  unusedFor?: number
  /** Milliseconds since the reference was cached. */
  olderThan?: number
  /** Reference globs: only matching images are candidates. */
  references?: string[]
  /** `KEY` or `KEY=VALUE`: only images whose config labels match are candidates. */
  labels?: string[]
  /** References never pruned. */
  keep?: string[]
  /** Prune least recently used images until the cache is at most this many bytes. */
  maxBytes?: number
}

/** The prune report with the fields the engine is adding (optional until then). */
export interface PruneReport extends ImagePruneReport {
  readonly references?: readonly string[]
  readonly dryRun?: boolean
  readonly budgetBytes?: number | null
  readonly remainingBytes?: number | null
  readonly budgetMet?: boolean | null
}

/** One problem `Image.check` found. */
export interface CheckProblem {
  kind: string
  reference?: string
  digest?: string
  path?: string
  message: string
  repaired: boolean
}

/** What `Image.check({ full, repair })` resolves to. */
export interface CheckReport {
  ok: boolean
  problems: CheckProblem[]
  checkedFiles: number
  checkedBytes: number
}

/** One row of `Image.diskUsage()` (shape proposed by this CLI; to be aligned with the engine's). */
export interface DiskUsageEntry {
  /** `images`, `layers`, `root disks`, … */
  kind: string
  count: number
  active: number
  sizeBytes: number
  reclaimableBytes: number
}

/** What `Image.diskUsage()` resolves to (shape proposed by this CLI; to be aligned with the engine's). */
export interface DiskUsage {
  totalBytes: number
  reclaimableBytes: number
  entries: DiskUsageEntry[]
  /** Per image, for `system df -v`. */
  images?: Array<{ reference: string; manifestDigest: string | null; sizeBytes: number; uniqueBytes: number; sharedBytes: number; inUse: boolean }>
}

/** A load progress event: `type` names the step; byte progress over the archive carries `total` and `read`. */
export interface LoadProgressEvent {
  type: string
  read?: number
  total?: number
  reference?: string
  digest?: string
  [field: string]: unknown
}

/** The API as this CLI uses it: today's methods plus those still to come. */
export interface CliImageApi extends Omit<typeof ImageApi, 'prune' | 'load' | 'prototype'> {
  prune(opts?: PruneOptions): Promise<PruneReport>
  load(path: string, opts?: { tag?: string; platform?: string; onProgress?: (e: LoadProgressEvent) => void; signal?: AbortSignal }): Promise<ImageHandle[]>
  tag?(source: string, target: string): Promise<ImageHandle>
  diskUsage?(): Promise<DiskUsage>
  check?(opts?: { full?: boolean; repair?: boolean }): Promise<CheckReport>
  login?(registry: string, credentials: { username: string; password: string }): Promise<void>
  logout?(registry: string): Promise<boolean | void>
}

/**
 * Parts of the API that cannot be detected at run time because today's
 * binding silently ignores arguments it does not know: `Image.prune(opts)`
 * would prune everything whatever filter it is given, and `Image.load`
 * would neither report progress nor honour `signal`. Set each to true in
 * the change that lands it in the binding.
 */
export const LANDED = {
  pruneOptions: false,
  loadProgress: false,
} as const

let cached: CliImageApi | undefined

/** The package's `Image` class, loaded on first use. */
export function api(): CliImageApi {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  cached ??= (require('../../index') as { Image: typeof ImageApi }).Image as unknown as CliImageApi
  return cached
}

type Pending = 'tag' | 'diskUsage' | 'check' | 'login' | 'logout'

/** `Image[method]`, or a clear failure when this build of the API does not have it yet. */
export function need<M extends Pending>(method: M, command: string): NonNullable<CliImageApi[M]> {
  const fn = api()[method]
  if (typeof fn !== 'function') {
    throw new CliError(`${command} needs Image.${method}(), which this version of the microsandbox package does not have yet`)
  }
  return (fn as (...args: never[]) => unknown).bind(api()) as NonNullable<CliImageApi[M]>
}

/** A refusal for an option today's API would silently ignore. */
export function notLanded(what: string): CliError {
  return new CliError(`${what} needs a newer Image API than this version of the microsandbox package has; nothing was changed`)
}
