/**
 * The one way into the engine: the package's public `Image` API, loaded on
 * first use (so `--help` and `--version` never load the addon). Also the
 * parts of the API this CLI is written against that the binding does not
 * have yet (issue 12), described here with the names the engine team is
 * adding, so the commands compile now and work once they land.
 */
import type { Image as ImageApi, ImageHandle } from '../../index'
import { CliError } from './errors'

export type {
  ImageCheckReport,
  ImageDetail,
  ImageDiskUsage,
  ImageHandle,
  ImagePruneReport,
  PullProgressEvent,
} from '../../index'

/** The options `Image.prune(opts)` takes. */
export type PruneOptions = NonNullable<Parameters<typeof ImageApi.prune>[0]>

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
export interface CliImageApi extends Omit<typeof ImageApi, 'load' | 'prototype'> {
  load(path: string, opts?: { tag?: string; platform?: string; onProgress?: (e: LoadProgressEvent) => void; signal?: AbortSignal }): Promise<ImageHandle[]>
  login?(registry: string, credentials: { username: string; password: string }): Promise<void>
  logout?(registry: string): Promise<boolean | void>
}

/**
 * Parts of the API that cannot be detected at run time because the
 * binding silently ignores arguments it does not know: `Image.load`
 * neither reports progress nor honours `signal` yet. Set each to true in
 * the change that lands it in the binding. (`Image.prune`'s options have
 * landed: the binding now refuses options it does not know.)
 */
export const LANDED = {
  loadProgress: false,
} as const

let cached: CliImageApi | undefined

/** The package's `Image` class, loaded on first use. */
export function api(): CliImageApi {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  cached ??= (require('../../index') as { Image: typeof ImageApi }).Image as unknown as CliImageApi
  return cached
}

type Pending = 'login' | 'logout'

/** `Image[method]`, or a clear failure when this build of the API does not have it yet. */
export function need<M extends Pending>(method: M, command: string): NonNullable<CliImageApi[M]> {
  const fn = api()[method]
  if (typeof fn !== 'function') {
    throw new CliError(`${command} needs Image.${method}(), which this version of the microsandbox package does not have yet`)
  }
  return (fn as (...args: never[]) => unknown).bind(api()) as NonNullable<CliImageApi[M]>
}
