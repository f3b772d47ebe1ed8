/**
 * The commands that move images in or out of the cache: `image pull`
 * (registry), `image load` and `image save` (archives). Ctrl-C aborts a
 * pull through its `AbortSignal` (exit 130, cache unchanged).
 */
import { api } from '../api'
import { UsageError } from '../errors'
import { readStdin } from '../prompt'
import { out } from '../output'
import { withInterrupt } from '../interrupt'
import { archiveProgress, pullProgress } from '../progress'

const POLICIES = ['if-missing', 'always', 'never'] as const
type Policy = (typeof POLICIES)[number]

/** The flags of `image pull`, as commander parsed them. */
export interface PullOptions {
  platform?: string
  policy?: string
  insecure?: boolean
  quiet?: boolean
  username?: string
  passwordStdin?: boolean
}

/** `--username` with `--password-stdin` (as `docker login` takes them), or none: the API then reads Docker's config. */
export async function credentials(opts: { username?: string; passwordStdin?: boolean }, command: string): Promise<{ username: string; password: string } | undefined> {
  if (opts.passwordStdin && !opts.username) throw new UsageError(`${command}: --password-stdin needs --username`)
  if (!opts.username) return undefined
  if (!opts.passwordStdin) throw new UsageError(`${command}: --username needs --password-stdin (the password is never taken on the command line)`)
  return { username: opts.username, password: await readStdin('--password-stdin') }
}

/**
 * `image pull`: live per-layer progress on a TTY, plain lines otherwise,
 * then Docker's summary (`Digest:`, `Status:`, the reference).
 */
export async function pull(reference: string, opts: PullOptions): Promise<void> {
  const policy = (opts.policy ?? 'if-missing') as Policy
  if (!POLICIES.includes(policy)) throw new UsageError(`invalid --policy ${JSON.stringify(opts.policy)}: expected ${POLICIES.join(', ')}`)
  const auth = await credentials(opts, 'image pull')
  const Image = api()
  // What the cache held before, for the summary's "up to date".
  const before = opts.quiet ? undefined : await Image.get(reference).catch(() => undefined)
  const progress = opts.quiet ? undefined : pullProgress(reference, process.stdout.isTTY === true)
  let handle
  try {
    handle = await withInterrupt(
      (signal) =>
        Image.pull(reference, {
          platform: opts.platform,
          pullPolicy: policy,
          insecure: opts.insecure === true,
          auth,
          onProgress: progress ? (e) => progress.event(e) : undefined,
          signal,
        }),
      () => progress?.interrupt(),
    )
  } finally {
    progress?.stop()
  }
  if (!progress) return out(`${handle.reference}\n`)
  const upToDate = before?.manifestDigest === handle.manifestDigest && !progress.transferred
  out(`Digest: ${handle.manifestDigest}\nStatus: ${upToDate ? 'Image is up to date for' : 'Downloaded newer image for'} ${handle.reference}\n${handle.reference}\n`)
}

/**
 * `image load`: imports an archive and prints `Loaded image: REF` per
 * image, with a bar over the archive's bytes on a TTY; Ctrl-C aborts and
 * leaves the cache as it was.
 */
export async function load(opts: { input: string; tag?: string; platform?: string; quiet?: boolean }): Promise<void> {
  const Image = api()
  const progress = opts.quiet || !process.stdout.isTTY ? undefined : archiveProgress(opts.input)
  let handles
  try {
    handles = await withInterrupt(
      (signal) => Image.load(opts.input, { tag: opts.tag, platform: opts.platform, onProgress: progress ? (e) => progress.event(e) : undefined, signal }),
      () => progress?.stop(),
    )
  } finally {
    progress?.stop()
  }
  out(handles.map((h) => `Loaded image: ${h.reference}\n`).join(''))
}

/** `image save`: writes the images to an archive (`docker` or `oci` format). */
export async function save(references: string[], opts: { output: string; format?: string }): Promise<void> {
  const format = opts.format ?? 'docker'
  if (format !== 'docker' && format !== 'oci') throw new UsageError(`unsupported --format ${JSON.stringify(format)}: expected docker or oci`)
  if (opts.output === '-') throw new UsageError('image save writes to a file, not to stdout: give -o FILE')
  await api().save(references, { outputPath: opts.output, format })
}
