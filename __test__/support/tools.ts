/**
 * The commands every support module runs, kept apart so that the image
 * fixtures, the cache checks, the registry and the VM manifest share one
 * copy: `requireTools` (a missing tool fails the tests, never skips them),
 * `run` (a failing command's error carries its stderr), SHA-256 digests in
 * OCI form and temp directories.
 */
import { execFile, spawnSync } from 'child_process'
import { createHash } from 'crypto'
import * as fs from 'fs'
import * as fsp from 'fs/promises'
import * as os from 'os'
import * as path from 'path'
import { promisify } from 'util'

const execFileP = promisify(execFile)

/** Every external tool the fixtures and the checks use. */
export const TOOLS = ['umoci', 'skopeo', 'tar', 'gzip', 'zstd', 'python3', 'fsck.erofs', 'dump.erofs', 'qemu-img', 'setpriv'] as const

/** Throws a clear error naming every missing tool (tests then FAIL, never skip). */
export function requireTools(tools: readonly string[] = TOOLS): void {
  const missing = tools.filter((t) => spawnSync('sh', ['-c', `command -v "$0"`, t]).status !== 0)
  if (missing.length > 0) {
    throw new Error(`required tool(s) not installed or not on PATH: ${missing.join(', ')} — these tests need them and refuse to skip`)
  }
}

/** Runs a command; rejects with its stderr on failure. */
export async function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<{ stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, maxBuffer: 256 << 20, encoding: 'utf8' })
    return { stdout, stderr }
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; code?: number | string; message: string }
    throw new Error(`command failed: ${cmd} ${args.map((a) => JSON.stringify(a)).join(' ')}\nexit: ${err.code}\nstderr: ${err.stderr ?? ''}\nstdout: ${(err.stdout ?? '').slice(0, 2000)}\n${err.message}`)
  }
}

export function sha256(data: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex')
}

export async function sha256File(file: fs.PathLike): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer)
  return 'sha256:' + hash.digest('hex')
}

export function hexOf(digest: string): string {
  return digest.replace(/^sha256:/, '')
}

export async function makeTempDir(prefix = 'msb-img-'): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), prefix))
}
