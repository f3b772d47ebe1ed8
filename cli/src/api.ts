/**
 * The one way into the engine: the package's public `Image` API, loaded on
 * first use (so `--help` and `--version` never load the addon).
 */
import type { Image as ImageApi } from '../../index'

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

let cached: typeof ImageApi | undefined

/** The package's `Image` class, loaded on first use. */
export function api(): typeof ImageApi {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  cached ??= (require('../../index') as { Image: typeof ImageApi }).Image
  return cached
}
