/**
 * The code examples of the Image API page, verbatim, run the way users run
 * them: ES modules with top-level await, importing "microsandbox" from a
 * project's node_modules (a symlink to this package), in a child `node`.
 * The cache holds `python:3.12` and `old:tag`, made by the fixture library.
 * Also: CommonJS `require`, and the page's imports type-checking under
 * `tsc --strict` against the package's own typings.
 */
import * as fsp from 'fs/promises'
import * as path from 'path'
import { inspect } from 'util'

import { Image } from '..'
import { BuiltImage, buildImage, makeTempDir, requireTools, toDockerArchive } from './support/images'
import { PACKAGE_ROOT, artifactTree, childEnv, freshHomePerTest, removedBetween, setEnv, spawnCollect } from './support/cache'
import { EXAMPLES, HEADER, IMPORT } from './support/seed-examples'

let work: string
let project: string
let python: BuiltImage
let old: BuiltImage
let pythonArchive: string
let oldArchive: string

beforeAll(async () => {
  requireTools()
  work = await makeTempDir('msb-seed-')
  python = await buildImage(path.join(work, 'python'), {
    layers: [
      { entries: [{ type: 'file', path: 'usr/local/bin/python3', content: '#!/bin/sh\necho Python 3.12\n', mode: 0o755 }] },
      { entries: [{ type: 'dir', path: 'usr/src/app' }, { type: 'file', path: 'usr/src/app/main.py', content: 'print("hi")\n' }] },
    ],
    config: { env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'PYTHON_VERSION=3.12.0'], cmd: ['python3'], workingDir: '/usr/src/app' },
    refs: ['localhost/fixture/python:build'],
  })
  old = await buildImage(path.join(work, 'old'), { layers: [{ entries: [{ type: 'file', path: 'old.txt', content: 'old\n' }] }], refs: ['localhost/fixture/old:build'] })
  pythonArchive = await toDockerArchive(python, path.join(work, 'python.tar'))
  oldArchive = await toDockerArchive(old, path.join(work, 'old.tar'))
  // A project that depends on the package: node_modules/microsandbox -> the package root.
  project = path.join(work, 'project')
  await fsp.mkdir(path.join(project, 'node_modules'), { recursive: true })
  await fsp.symlink(PACKAGE_ROOT, path.join(project, 'node_modules', 'microsandbox'), 'dir')
  await fsp.writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'seed-project', private: true, dependencies: { microsandbox: '*' } }))
}, 120_000)

afterAll(async () => {
  if (work) await fsp.rm(work, { recursive: true, force: true })
})

const cache = freshHomePerTest()
let pythonDigest: string
beforeEach(async () => {
  const [loaded] = await Image.load(pythonArchive, { tag: 'python:3.12' })
  pythonDigest = loaded.manifestDigest!
  await Image.load(oldArchive, { tag: 'old:tag' })
})

/** Writes `source` as `<name>` in the project and runs it with node against this test's cache. */
async function runInProject(name: string, source: string): Promise<string> {
  const file = path.join(project, name)
  await fsp.writeFile(file, source)
  const r = await spawnCollect(process.execPath, [file], { cwd: project, env: childEnv({ MSB_HOME: cache.home, MSB_BACKEND: undefined }), timeoutMs: 60_000 })
  expect({ code: r.code, signal: r.signal, stderr: r.stderr }).toEqual({ code: 0, signal: null, stderr: '' })
  return r.stdout
}

describe('the page examples, as ES modules', () => {
  test('Typical flow', async () => {
    const layersOfPython = python.layers.length
    const before = await artifactTree(cache.home)
    const out = await runInProject('typical.mjs', EXAMPLES.typicalFlow)
    const reclaimed = removedBetween(before, await artifactTree(cache.home)).bytes
    expect(reclaimed).toBeGreaterThan(0)
    expect(out).toBe(`docker.io/library/old:tag 1\ndocker.io/library/python:3.12 ${layersOfPython}\n/usr/src/app\n${reclaimed}\n`)
    // Nothing runs in a sandbox, so prune emptied the cache.
    expect(await Image.list()).toEqual([])
    expect(await artifactTree(cache.home)).toEqual(new Map())
  })

  test('Image.get()', async () => {
    const out = await runInProject('get.mjs', IMPORT + EXAMPLES.get)
    expect(out).toBe(`${pythonDigest}\n`)
    expect(pythonDigest).toMatch(/^sha256:[0-9a-f]{64}$/)
  })

  test('Image.list()', async () => {
    const out = await runInProject('list.mjs', IMPORT + EXAMPLES.list)
    expect(out).toBe(inspect(['docker.io/library/old:tag', 'docker.io/library/python:3.12']) + '\n')
  })

  test('Image.inspect()', async () => {
    const out = await runInProject('inspect.mjs', IMPORT + EXAMPLES.inspect)
    expect(out).toBe(python.diffIds.map((d, i) => `${i} ${d}\n`).join(''))
  })

  test('Image.remove()', async () => {
    const out = await runInProject('remove.mjs', IMPORT + EXAMPLES.remove)
    expect(out).toBe('')
    expect((await Image.list()).map((h) => h.reference)).toEqual(['docker.io/library/python:3.12'])
  })

  test('Image.prune()', async () => {
    const before = await artifactTree(cache.home)
    const out = await runInProject('prune.mjs', IMPORT + EXAMPLES.prune)
    const reclaimed = removedBetween(before, await artifactTree(cache.home)).bytes
    expect(out).toBe(`2 ${reclaimed}\n`)
  })

  test('the page header imports resolve (value imports; the type-only line is TypeScript)', async () => {
    const valueImports = HEADER.split('\n')[0]
    const out = await runInProject('header.mjs', `${valueImports}\nconsole.log(typeof Image, typeof ImageHandle, (await Image.get("python:3.12")) instanceof ImageHandle);\n`)
    expect(out).toBe('function function true\n')
  })
})

test('CommonJS: require("microsandbox") runs the typical flow', async () => {
  const cjs = `const { Image, ImageHandle, ImageNotFoundError } = require("microsandbox");
(async () => {
  for (const image of await Image.list()) {
    console.log(image.reference, image.layerCount, image instanceof ImageHandle);
  }
  const detail = await Image.inspect("python:3.12");
  console.log(detail.config?.workingDir);
  try { await Image.get("missing:tag"); } catch (e) { console.log(e instanceof ImageNotFoundError, e.code); }
})();
`
  const out = await runInProject('flow.cjs', cjs)
  expect(out).toBe(`docker.io/library/old:tag 1 true\ndocker.io/library/python:3.12 ${python.layers.length} true\n/usr/src/app\ntrue image_not_found\n`)
})

describe('TypeScript: the page imports type-check under tsc --strict', () => {
  const tsc = path.join(PACKAGE_ROOT, 'node_modules', '.bin', 'tsc')
  async function typecheck(dir: string, source: string): Promise<{ code: number | null; out: string }> {
    await fsp.mkdir(dir, { recursive: true })
    await fsp.mkdir(path.join(dir, 'node_modules'), { recursive: true })
    await fsp.symlink(PACKAGE_ROOT, path.join(dir, 'node_modules', 'microsandbox'), 'dir').catch(() => undefined)
    await fsp.writeFile(path.join(dir, 'package.json'), JSON.stringify({ name: 'ts-consumer', private: true, type: 'module' }))
    await fsp.writeFile(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          noEmit: true,
          skipLibCheck: false,
          typeRoots: [path.join(PACKAGE_ROOT, 'node_modules', '@types')],
          types: ['node'],
        },
        files: ['main.ts'],
      }),
    )
    await fsp.writeFile(path.join(dir, 'main.ts'), source)
    const r = await spawnCollect(tsc, ['-p', path.join(dir, 'tsconfig.json')], { cwd: dir, timeoutMs: 120_000 })
    return { code: r.code, out: r.stdout + r.stderr }
  }

  const consumer = `import { Image, ImageHandle } from "microsandbox";
import type { ImageDetail, ImagePruneReport, ImageConfigDetail, ImageLayerDetail } from "microsandbox";

${EXAMPLES.typicalFlow.split('\n').slice(1).join('\n')}
const image: ImageHandle = await Image.get("python:3.12");
const digest: string | null = image.manifestDigest;
const images: ImageHandle[] = await Image.list();
const refs: string[] = images.map((i) => i.reference);
const d: ImageDetail = await Image.inspect("python:3.12");
const cfg: ImageConfigDetail | null = d.config;
const wd: string | null | undefined = cfg?.workingDir;
const layers: readonly ImageLayerDetail[] = d.layers;
const pos: number = layers[0].position;
const created: Date | null = image.createdAt;
const size: number | null = image.sizeBytes;
await Image.remove("old:tag", { force: false });
const r: ImagePruneReport = await Image.prune();
const n: number = r.imageRefsRemoved;
const b: number | null = r.bytesReclaimed;
// @ts-expect-error ImageHandle properties are read-only
image.reference = "other";
// @ts-expect-error layers is a readonly array
d.layers.push(layers[0]);
console.log(digest, refs, wd, pos, created, size, n, b, report);
`

  test('the consumer module compiles without errors', async () => {
    const { code, out } = await typecheck(path.join(work, 'ts-ok'), consumer)
    expect({ code, out }).toEqual({ code: 0, out: '' })
  })

  test('a misuse is reported, so the check above is real', async () => {
    const { code, out } = await typecheck(path.join(work, 'ts-bad'), consumer + 'const wrong: number = image.reference;\n')
    expect(code).not.toBe(0)
    expect(out).toContain("error TS2322: Type 'string' is not assignable to type 'number'")
  })
})

afterAll(() => {
  setEnv('MSB_HOME', undefined)
})
