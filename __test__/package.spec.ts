/**
 * The package as users install it: `npm pack` of the package root and of a
 * platform's binary package (npm/<platform> plus the built addon),
 * installed offline into an empty folder, then the API page's examples run
 * there as ES modules and as CommonJS — loading the addon from the
 * installed binary package, not from this checkout — and load, acquire,
 * pull and prune on a real archive and a real registry, in a cache the
 * installed addon alone wrote. Every runtime of support/runtimes: the
 * linux-x64-gnu binary in this machine's Node 20 and the official Node 22
 * and 24, linux-arm64-gnu in Debian's arm64 Node 18 under qemu-aarch64,
 * win32-x64-msvc (a MinGW DLL) in the official Node 20 for Windows under
 * Wine. The darwin-arm64 binary cannot run here: platforms.spec.ts checks it.
 */
import * as fs from 'fs'
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image } from '..'
import { buildImage, makeTempDir, requireTools, run, sampleLayers, toDockerArchive, BuiltImage } from './support/images'
import { PACKAGE_ROOT, artifactTree, childEnv, freshHomePerTest, removedBetween, spawnCollect } from './support/cache'
import { push, startRegistry, Registry } from './support/registry'
import { EXAMPLES } from './support/seed-examples'
import { RUNTIMES, Runtime } from './support/runtimes'

let work: string
let rootTgz: string
let python: BuiltImage
let pythonArchive: string
let registry: Registry

async function npm(args: string[], cwd: string): Promise<string> {
  const r = await spawnCollect('npm', args, {
    cwd,
    env: childEnv({ npm_config_cache: path.join(work, 'npm-cache'), npm_config_update_notifier: 'false', npm_config_loglevel: 'error' }),
    timeoutMs: 180_000,
  })
  if (r.code !== 0) throw new Error(`npm ${args.join(' ')} failed (${r.code}):\n${r.stderr}\n${r.stdout}`)
  return r.stdout
}

/** `npm pack` of `dir` into `dest`; returns the tarball's path. */
async function pack(dir: string, dest: string): Promise<string> {
  const out = await npm(['pack', '--json', '--pack-destination', dest], dir)
  const [info] = JSON.parse(out) as Array<{ filename: string }>
  return path.join(dest, info.filename)
}

beforeAll(async () => {
  requireTools(['umoci', 'skopeo', 'tar', 'npm', 'qemu-aarch64', 'wine'])
  work = await makeTempDir('msb-package-')
  await fsp.mkdir(path.join(work, 'tarballs'))
  rootTgz = await pack(PACKAGE_ROOT, path.join(work, 'tarballs'))
  python = await buildImage(path.join(work, 'python'), {
    layers: sampleLayers('py'),
    config: { workingDir: '/usr/src/app', cmd: ['python3'] },
    refs: ['localhost/fixture/python:build'],
  })
  pythonArchive = await toDockerArchive(python, path.join(work, 'python.tar'))
  registry = await startRegistry()
  await push(`oci:${python.layout}:localhost/fixture/python:build`, `${registry.host}/fixture/python:build`)
}, 300_000)

afterAll(async () => {
  if (registry) await registry.stop()
  if (work) await fsp.rm(work, { recursive: true, force: true })
})

const cache = freshHomePerTest()
beforeEach(async () => {
  await Image.load(pythonArchive, { tag: 'python:3.12' })
  await Image.load(pythonArchive, { tag: 'old:tag' })
})

describe.each(RUNTIMES)('$label', (platform: Runtime) => {
  const binaryDir = path.join(PACKAGE_ROOT, 'npm', platform.name)
  const addonName = `microsandbox.${platform.name}.node`
  let consumer: string
  let binaryTgz: string

  beforeAll(async () => {
    if (!fs.existsSync(path.join(binaryDir, 'package.json'))) {
      throw new Error(`${binaryDir}/package.json does not exist: the ${platform.name} binary package cannot be packed (this test fails rather than skips)`)
    }
    const addon = path.join(PACKAGE_ROOT, addonName)
    if (!fs.existsSync(addon)) throw new Error(`${addon} is missing: build it first (scripts/test.sh builds every tested platform)`)
    const missing = platform.requires.filter((file) => !fs.existsSync(file))
    if (missing.length > 0) throw new Error(`${platform.label} needs ${missing.join(', ')}: run ${platform.setup} (this test fails rather than skips)`)
    const binaryCopy = path.join(work, platform.label)
    await fsp.cp(binaryDir, binaryCopy, { recursive: true })
    await fsp.copyFile(addon, path.join(binaryCopy, addonName))
    binaryTgz = await pack(binaryCopy, path.join(work, 'tarballs'))
    consumer = path.join(work, `consumer-${platform.label}`)
    await fsp.mkdir(consumer)
    await fsp.writeFile(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }))
    await npm(['install', '--offline', '--no-audit', '--no-fund', ...(platform.foreign ? ['--force'] : []), rootTgz, binaryTgz], consumer)
  }, 300_000)

  async function runInConsumer(name: string, source: string, home?: string): Promise<string> {
    const file = path.join(consumer, name)
    await fsp.writeFile(file, source)
    const [command, ...args] = platform.node()
    const r = await spawnCollect(command, [...args, file], {
      cwd: consumer,
      env: childEnv({ MSB_HOME: home ?? cache.home, MSB_BACKEND: undefined, NAPI_RS_NATIVE_LIBRARY_PATH: undefined, ...platform.env }),
      timeoutMs: 180_000,
    })
    expect({ code: r.code, signal: r.signal, stderr: r.stderr }).toEqual({ code: 0, signal: null, stderr: '' })
    return r.stdout
  }

  test('the tarballs hold what the packages need', async () => {
    const root = (await run('tar', ['-tzf', rootTgz])).stdout.split('\n').filter(Boolean).sort()
    expect(root).toEqual(expect.arrayContaining(['package/index.d.ts', 'package/index.js', 'package/package.json']))
    expect(root.filter((f) => f.endsWith('.node'))).toEqual([])
    const binary = (await run('tar', ['-tzf', binaryTgz])).stdout.split('\n').filter(Boolean)
    expect(binary).toEqual(expect.arrayContaining([`package/${addonName}`, 'package/package.json']))
  })

  test('the installed package loads its addon from the installed binary package', async () => {
    const out = await runInConsumer(
      'where.cjs',
      `const m = require('microsandbox');
console.log(require.resolve('microsandbox'));
console.log(Object.keys(require.cache).find((k) => k.endsWith('.node')));
console.log(typeof m.Image.list, m.__napiBindingTarget);
console.log(process.platform, process.arch, process.version);
`,
    )
    const [resolved, addon, kinds, runtime] = out.trim().split('\n')
    const [os, arch, version] = runtime.split(' ')
    expect([os, arch]).toEqual([platform.os, platform.arch])
    expect(version.startsWith(`v${platform.nodeMajor}.`)).toBe(true)
    expect(resolved).toBe(platform.hostPath(path.join(consumer, 'node_modules', 'microsandbox', 'index.js')))
    expect(addon).toBe(platform.hostPath(path.join(consumer, 'node_modules', `microsandbox-${platform.name}`, addonName)))
    expect(kinds).toBe('function native')
    expect(fs.lstatSync(path.join(consumer, 'node_modules', 'microsandbox')).isSymbolicLink()).toBe(false)
  })

  test('the Typical flow example runs as an ES module', async () => {
    const before = await artifactTree(cache.home)
    const out = await runInConsumer('typical.mjs', EXAMPLES.typicalFlow)
    const reclaimed = removedBetween(before, await artifactTree(cache.home)).bytes
    const n = python.layers.length
    expect(out).toBe(`docker.io/library/old:tag ${n}\ndocker.io/library/python:3.12 ${n}\n/usr/src/app\n${reclaimed}\n`)
  })

  test('the get / inspect / remove examples run as an ES module', async () => {
    const out = await runInConsumer(
      'more.mjs',
      `import { Image, ImageHandle } from "microsandbox";

const image = await Image.get("python:3.12");
console.log(image.manifestDigest);

const detail = await Image.inspect("python:3.12");
for (const layer of detail.layers) {
  console.log(layer.position, layer.diffId);
}

await Image.remove("old:tag", { force: false });
console.log(image instanceof ImageHandle);
`,
    )
    const digest = (await Image.get('python:3.12')).manifestDigest
    expect(out).toBe(`${digest}\n${python.diffIds.map((d, i) => `${i} ${d}\n`).join('')}true\n`)
    expect((await Image.list()).map((h) => h.reference)).toEqual(['docker.io/library/python:3.12'])
  })

  test('CommonJS require works and the error classes are exported', async () => {
    const out = await runInConsumer(
      'flow.cjs',
      `const { Image, ImageNotFoundError, MicrosandboxError } = require("microsandbox");
(async () => {
  const images = await Image.list();
  console.log(images.map((image) => image.reference).join(","));
  const report = await Image.prune();
  console.log(report.imageRefsRemoved);
  try { await Image.get("python:3.12"); } catch (e) { console.log(e instanceof ImageNotFoundError, e instanceof MicrosandboxError, e.code); }
})();
`,
    )
    expect(out).toBe('docker.io/library/old:tag,docker.io/library/python:3.12\n2\ntrue true image_not_found\n')
  })

  test('load, acquire, pull and prune run in a cache the installed addon alone writes', async () => {
    const ownRoot = await makeTempDir('msb-package-home-')
    const own = { home: path.join(ownRoot, 'cache') }
    try {
      const platformArg = `${python.config.os}/${python.config.architecture}`
      const out = await runInConsumer(
        'lifecycle.cjs',
        `const { Image } = require("microsandbox");
(async () => {
  const pulled = await Image.pull(${JSON.stringify(`${registry.host}/fixture/python:build`)}, { platform: ${JSON.stringify(platformArg)} });
  console.log(pulled.reference, pulled.layerCount);
  const [loaded] = await Image.load(${JSON.stringify(platform.hostPath(pythonArchive))}, { tag: "loaded:1" });
  console.log(loaded.reference);
  const disk = await Image.acquire("loaded:1", { sandbox: "sb-1" });
  console.log(JSON.stringify({ ...disk, descriptor: require("fs").readFileSync(disk.vmdkPath, "utf8") }));
  await Image.release("sb-1");
  const report = await Image.prune();
  console.log(report.imageRefsRemoved, report.layersRemoved, report.bytesReclaimed);
  console.log((await Image.list()).length);
})();
`,
        own.home,
      )
      const [pulled, loaded, acquired, pruned, left] = out.trim().split('\n')
      expect(pulled).toBe(`${registry.host}/fixture/python:build ${python.layers.length}`)
      expect(loaded).toBe('docker.io/library/loaded:1')
      const disk = JSON.parse(acquired) as { vmdkPath: string; fsmetaPath: string; layers: string[]; descriptor: string }
      const home = platform.hostPath(own.home)
      for (const file of [disk.vmdkPath, disk.fsmetaPath, ...disk.layers]) expect(file.startsWith(home)).toBe(true)
      // Windows paths in one style: backslashes only.
      if (platform.os === 'win32') expect([disk.vmdkPath, disk.fsmetaPath, ...disk.layers].filter((f) => f.includes('/'))).toEqual([])
      // The descriptor names its extents as this platform names files.
      const extents = [...disk.descriptor.matchAll(/^RW \d+ FLAT "([^"]+)" \d+$/gm)].map((m) => m[1])
      expect(new Set(extents)).toEqual(new Set([disk.fsmetaPath, ...disk.layers]))
      const [refs, layers, bytes] = pruned.split(' ').map(Number)
      expect([refs, layers]).toEqual([2, python.layers.length])
      expect(bytes).toBeGreaterThan(0)
      expect(left).toBe('0')
      expect((await artifactTree(own.home)).size).toBe(0)
    } finally {
      await fsp.rm(ownRoot, { recursive: true, force: true })
    }
  })

  test('the packed package.json names the platform binary package in optionalDependencies (else `npm install microsandbox` installs no addon)', async () => {
    const manifest = JSON.parse((await run('tar', ['-xzOf', rootTgz, 'package/package.json'])).stdout)
    const binary = JSON.parse(await fsp.readFile(path.join(binaryDir, 'package.json'), 'utf8'))
    expect(manifest.optionalDependencies ?? {}).toEqual(expect.objectContaining({ [binary.name]: manifest.version }))
  })
})
