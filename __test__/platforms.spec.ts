/**
 * Every configured target, as far as this machine can check it without
 * running it (package.spec.ts runs those it can):
 *  - every napi target has a binary package (npm/<platform>) the root
 *    package names, and it packs with its built binary;
 *  - the generated loader picks that package on that platform's official
 *    Node (support/loader-choice);
 *  - darwin-arm64 is a Mach-O arm64 dylib exporting napi_register_module_v1,
 *    linking only libSystem and system frameworks, resolving nothing but
 *    N-API from the host process, for the recorded minimum macOS version;
 *  - win32-x64-msvc is a PE32+ x86-64 DLL exporting napi_register_module_v1
 *    and importing only DLLs every Windows 10 has (no MinGW runtime DLLs,
 *    no libnode.dll).
 * A missing tool or binary fails the test; nothing is skipped.
 */
import * as fs from 'fs'
import * as fsp from 'fs/promises'
import * as path from 'path'

import { makeTempDir, requireTools, run } from './support/images'
import { PACKAGE_ROOT, spawnCollect } from './support/cache'
import { loaderChoice, shippedPackages, LoaderPlatform } from './support/loader-choice'
import { machO, peImports, MIN_MACOS } from './support/binaries'

const pkg = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8'))

/** napi target → binary package, and what that platform's official Node reports. */
const TARGETS: Array<{ target: string; name: string; node: LoaderPlatform }> = [
  { target: 'x86_64-unknown-linux-gnu', name: 'linux-x64-gnu', node: { platform: 'linux', arch: 'x64', shlibSuffix: 'so.115' } },
  { target: 'aarch64-unknown-linux-gnu', name: 'linux-arm64-gnu', node: { platform: 'linux', arch: 'arm64', shlibSuffix: 'so.115' } },
  { target: 'aarch64-apple-darwin', name: 'darwin-arm64', node: { platform: 'darwin', arch: 'arm64', shlibSuffix: 'dylib' } },
  { target: 'x86_64-pc-windows-msvc', name: 'win32-x64-msvc', node: { platform: 'win32', arch: 'x64', shlibSuffix: 'dll' } },
]

function addon(name: string): string {
  const file = path.join(PACKAGE_ROOT, `microsandbox.${name}.node`)
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: scripts/build-targets.sh builds every configured target`)
  return file
}

test('every configured target has a binary package, and nothing else is shipped', () => {
  expect([...pkg.napi.targets].sort()).toEqual(TARGETS.map((t) => t.target).sort())
  expect(shippedPackages()).toEqual(TARGETS.map((t) => t.name).sort())
  expect(Object.keys(pkg.optionalDependencies).sort()).toEqual(TARGETS.map((t) => `microsandbox-${t.name}`).sort())
})

describe.each(TARGETS)('$name', ({ name, node }) => {
  const dir = path.join(PACKAGE_ROOT, 'npm', name)
  const manifest = () => JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'))

  test("the generated loader picks this package on that platform's Node", async () => {
    const choice = await loaderChoice(node)
    expect(choice.chosen).toBe(`microsandbox-${name}`)
    // The file beside index.js is tried first, as in a development checkout.
    expect(choice.tried).toContain(`./microsandbox.${name}.node`)
  })

  test('its package.json matches the platform and the root package', () => {
    const m = manifest()
    expect(m).toMatchObject({ name: `microsandbox-${name}`, version: pkg.version, main: `microsandbox.${name}.node`, files: [`microsandbox.${name}.node`] })
    expect(m.os).toEqual([node.platform])
    expect(m.cpu).toEqual([node.arch])
    expect(m.engines).toEqual(pkg.engines)
  })

  test('it packs with its built binary', async () => {
    requireTools(['npm', 'tar'])
    const work = await makeTempDir('msb-platform-pack-')
    try {
      await fsp.cp(dir, path.join(work, name), { recursive: true })
      await fsp.copyFile(addon(name), path.join(work, name, `microsandbox.${name}.node`))
      const r = await spawnCollect('npm', ['pack', '--json', '--pack-destination', work], { cwd: path.join(work, name), env: { ...process.env, npm_config_update_notifier: 'false' } })
      expect(r.code).toBe(0)
      const [info] = JSON.parse(r.stdout) as Array<{ filename: string }>
      const listing = (await run('tar', ['-tzvf', path.join(work, info.filename)])).stdout
      const entry = listing.split('\n').find((l) => l.endsWith(`package/microsandbox.${name}.node`))
      expect(entry).toBeDefined()
      expect(Number(entry!.trim().split(/\s+/)[2])).toBe(fs.statSync(addon(name)).size)
    } finally {
      await fsp.rm(work, { recursive: true, force: true })
    }
  })
})

describe('darwin-arm64 binary', () => {
  test('is a Mach-O arm64 dylib for macOS, exporting the N-API entry point', async () => {
    const m = await machO(addon('darwin-arm64'))
    expect(m.fileType).toBe('DYLIB')
    expect(m.cpu).toBe('ARM64')
    expect(m.exports).toContain('_napi_register_module_v1')
    // LC_BUILD_VERSION: platform 1 is macOS; the minimum is what we promise.
    expect(m.buildVersion).toEqual({ platform: 'macos', minos: MIN_MACOS })
    // Its own install name is no path of this machine.
    expect(m.id).toBe('@rpath/microsandbox.darwin-arm64.node')
  })

  test('links only libSystem and system frameworks, and looks up nothing but N-API in the host', async () => {
    const m = await machO(addon('darwin-arm64'))
    expect(m.dylibs.length).toBeGreaterThan(0)
    for (const lib of m.dylibs) expect(lib).toMatch(/^(\/usr\/lib\/libSystem\.B\.dylib|\/System\/Library\/Frameworks\/[A-Za-z]+\.framework\/Versions\/[A-Z]\/[A-Za-z]+)$/)
    expect(m.dylibs).toContain('/usr/lib/libSystem.B.dylib')
    expect(m.flatLookups.length).toBeGreaterThan(0)
    for (const symbol of m.flatLookups) expect(symbol).toMatch(/^_(napi|node_api)_/)
    // Everything else binds to those libraries by name.
    expect(new Set(m.boundImports.map((i) => i.library))).toEqual(new Set(['libSystem', 'CoreFoundation']))
    expect(m.flatLookups).toContain('_napi_create_function')
  })
})

describe('win32-x64-msvc binary', () => {
  test('is a PE32+ x86-64 DLL exporting the N-API entry point and importing only system DLLs', async () => {
    const pe = await peImports(addon('win32-x64-msvc'))
    expect(pe.format).toBe('pei-x86-64')
    expect(pe.isDll).toBe(true)
    expect(pe.exports).toContain('napi_register_module_v1')
    const system = /^(kernel32|ntdll|msvcrt|ws2_32|advapi32|bcrypt|bcryptprimitives|userenv|secur32|crypt32|shell32|ole32|oleaut32|user32|api-ms-win-[a-z0-9-]+)\.dll$/i
    expect(pe.dlls.filter((dll) => !system.test(dll))).toEqual([])
  })
})
