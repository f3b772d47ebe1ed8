/**
 * The `microsandbox` command as users get it, for the CLI specs: `npm pack`
 * of the package root (its prepack compiles the CLI) and of the
 * linux-x64-gnu binary package with the built addon, installed offline into
 * an empty folder, then its `node_modules/.bin/microsandbox` spawned with a
 * private `MSB_HOME`. Also what the CLI's output is checked with: human
 * sizes read back, and control characters found.
 */
import { spawn } from 'child_process'
import * as fs from 'fs'
import * as fsp from 'fs/promises'
import * as path from 'path'

import { ChildResult, PACKAGE_ROOT, childEnv, spawnCollect } from './cache'
import { makeTempDir } from './images'
import { observe } from './secrets'

const PLATFORM = 'linux-x64-gnu'

export interface InstalledCli {
  /** The folder the package is installed in. */
  consumer: string
  /** `node_modules/.bin/microsandbox` there. */
  bin: string
  /** The packed root tarball. */
  tarball: string
  cleanup(): Promise<void>
}

async function npm(args: string[], cwd: string, cacheDir: string): Promise<string> {
  const r = await spawnCollect('npm', args, {
    cwd,
    env: childEnv({ npm_config_cache: cacheDir, npm_config_update_notifier: 'false', npm_config_loglevel: 'error' }),
    timeoutMs: 240_000,
  })
  if (r.code !== 0) throw new Error(`npm ${args.join(' ')} failed (${r.code}):\n${r.stderr}\n${r.stdout}`)
  return r.stdout
}

async function pack(dir: string, dest: string, cacheDir: string): Promise<string> {
  const out = await npm(['pack', '--json', '--pack-destination', dest], dir, cacheDir)
  const [info] = JSON.parse(out.slice(out.indexOf('['))) as Array<{ filename: string }>
  return path.join(dest, info.filename)
}

/** Packs and installs the package into a new empty folder (offline: it must carry its own dependencies). */
export async function installCli(): Promise<InstalledCli> {
  const addon = path.join(PACKAGE_ROOT, `microsandbox.${PLATFORM}.node`)
  if (!fs.existsSync(addon)) throw new Error(`${addon} is missing: build it first (npx napi build --platform --release)`)
  const work = await makeTempDir('msb-cli-install-')
  const cacheDir = path.join(work, 'npm-cache')
  const tarballs = path.join(work, 'tarballs')
  await fsp.mkdir(tarballs)
  const tarball = await pack(PACKAGE_ROOT, tarballs, cacheDir)
  const binaryCopy = path.join(work, PLATFORM)
  await fsp.cp(path.join(PACKAGE_ROOT, 'npm', PLATFORM), binaryCopy, { recursive: true })
  await fsp.copyFile(addon, path.join(binaryCopy, path.basename(addon)))
  const binaryTgz = await pack(binaryCopy, tarballs, cacheDir)
  const consumer = path.join(work, 'consumer')
  await fsp.mkdir(consumer)
  await fsp.writeFile(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }))
  await npm(['install', '--offline', '--no-audit', '--no-fund', tarball, binaryTgz], consumer, cacheDir)
  return { consumer, bin: path.join(consumer, 'node_modules', '.bin', 'microsandbox'), tarball, cleanup: () => fsp.rm(work, { recursive: true, force: true }) }
}

/**
 * The environment the installed CLI runs in: this process's, with `MSB_HOME`
 * set, no backend override, this Node first on PATH (the bin's `#!/usr/bin/env
 * node`), and the overrides (undefined deletes).
 */
export function cliEnv(home: string, overrides: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  return childEnv({
    MSB_HOME: home,
    MSB_BACKEND: undefined,
    NAPI_RS_NATIVE_LIBRARY_PATH: undefined,
    NO_COLOR: undefined,
    PATH: `${path.dirname(process.execPath)}:${process.env.PATH}`,
    ...overrides,
  })
}

/** Runs the installed CLI to completion with `input` on stdin (never rejects). */
export function runCli(cli: InstalledCli, args: string[], opts: { env: NodeJS.ProcessEnv; input?: string; timeoutMs?: number }): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cli.bin, args, { cwd: cli.consumer, env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.stdin.end(opts.input ?? '')
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      // Every line the CLI prints is watched for secrets (support/secrets-watch.ts fails the test).
      const where = `microsandbox ${args.join(' ')} in "${expect.getState().currentTestName}"`
      observe(`${where}: stdout`, stdout)
      observe(`${where}: stderr`, stderr)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

const UNITS: Record<string, number> = { B: 1, kB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12 }

/** Reads a printed size (`12.3 kB`) back into bytes, checking its syntax: three significant digits, powers of 1000. */
export function readSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?) (B|kB|MB|GB|TB)$/.exec(text)
  if (!m) throw new Error(`not a human size: ${JSON.stringify(text)}`)
  expect(m[1].replace('.', '').replace(/^0+/, '').length).toBeLessThanOrEqual(3)
  return Number(m[1]) * UNITS[m[2]]
}

/** Whether a printed size stands for `bytes` (rounded to three significant digits). */
export function sizeStandsFor(text: string, bytes: number): boolean {
  return Math.abs(readSize(text) - bytes) <= Math.max(0.5, bytes * 0.005)
}

/** Control characters other than newline (escape sequences, carriage returns). */
export function controlChars(text: string): string[] {
  return [...text.matchAll(/[\x00-\x09\x0b-\x1f\x7f]/g)].map((m) => JSON.stringify(m[0]))
}

/** Splits a table printed with padded columns into rows of cells (two or more spaces apart). */
export function tableRows(text: string): string[][] {
  return text
    .trimEnd()
    .split('\n')
    .map((l) => l.split(/ {2,}/))
}
