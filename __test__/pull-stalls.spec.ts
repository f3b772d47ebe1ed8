/**
 * `Image.pull` with `AbortSignal.timeout(500)` against registries that stall
 * (issue 11): one that reads the request and says nothing, one that stops
 * inside the manifest's response headers, ones that drip a manifest, a token
 * or an error body a byte every 200 ms, and one that drips a layer blob while
 * the engine converts it. Each pull must reject with `AbortError` in under
 * 1.5 s of wall time and leave the cache as it was; with the stalls switched
 * off, the same server then serves a whole pull. The server is a plain
 * `net` one (so it can stop mid-header) serving a umoci-built OCI layout's
 * blobs as they are on disk. The Rust client's own proof of the same bounds
 * is crates/registry/tests/registry_stalls.rs.
 */
import { randomBytes } from 'crypto'
import * as fsp from 'fs/promises'
import * as net from 'net'
import * as path from 'path'

import { AbortError, Image, PullProgressEvent } from '../index'
import { artifactTree, consistencyProblems, freshHome, rejectionOf } from './support/cache'
import { buildImage, BuiltImage, hexOf, makeTempDir, noise, requireTools, sampleLayers } from './support/images'
import { registerSecret } from './support/secrets'

jest.setTimeout(120_000)

const SIGNAL_MS = 500
const BOUND_MS = 1500
const DRIP_MS = 200
const REPO = 'stall/app'
/** The bearer token the stalling token service would hand out. */
const TOKEN = registerSecret(`stall-token-${randomBytes(12).toString('hex')}`)

type Stall = 'off' | 'silent' | 'headers' | 'manifest' | 'token' | 'error' | 'blob'

interface Request {
  method: string
  path: string
  headers: Record<string, string>
}

let work: string
let image: BuiltImage
let home: Awaited<ReturnType<typeof freshHome>>
let stall: Stall = 'off'
/** Whether the current stall was reached (the pull was held where the test means it to be). */
let held = false
let server: net.Server
let port: number
const sockets = new Set<net.Socket>()

/** The layer the blob stall drips: the largest, so the engine is mid-way through it. */
const dripped = (): BuiltImage['layers'][number] => image.layers.reduce((a, b) => (b.size > a.size ? b : a))
const ref = (): string => `127.0.0.1:${port}/${REPO}:v1`

/** Writes `body` a byte every DRIP_MS after `head` (the first `fast` bytes at once), until the client leaves. */
function drip(socket: net.Socket, head: string, body: Buffer, fast = 0): void {
  socket.write(head)
  socket.write(body.subarray(0, fast))
  let at = fast
  const timer = setInterval(() => {
    if (socket.destroyed || at >= body.length) {
      clearInterval(timer)
      socket.end()
      return
    }
    socket.write(body.subarray(at, ++at))
  }, DRIP_MS)
  socket.once('close', () => clearInterval(timer))
}

function head(status: string, headers: Record<string, string | number>): string {
  return [`HTTP/1.1 ${status}`, 'Connection: close', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), '', ''].join('\r\n')
}

function reply(socket: net.Socket, req: Request, status: string, headers: Record<string, string | number>, body: Buffer = Buffer.alloc(0)): void {
  socket.write(head(status, { 'Content-Length': body.length, ...headers }))
  socket.end(req.method === 'HEAD' ? Buffer.alloc(0) : body)
}

async function serve(socket: net.Socket, req: Request): Promise<void> {
  if (stall === 'silent') return void (held = true)
  const manifest = req.path.match(/^\/v2\/(.+)\/manifests\/([^/]+)$/)
  const blob = req.path.match(/^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/)
  if (stall === 'token') {
    if (req.path.startsWith('/token')) {
      held = true
      const body = Buffer.from(JSON.stringify({ token: TOKEN, padding: 'x'.repeat(4096) }))
      return drip(socket, head('200 OK', { 'Content-Type': 'application/json', 'Content-Length': body.length }), body)
    }
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      const challenge = `Bearer realm="http://127.0.0.1:${port}/token",service="stall",scope="repository:${REPO}:pull"`
      return reply(socket, req, '401 Unauthorized', { 'WWW-Authenticate': challenge, 'Content-Type': 'application/json' }, Buffer.from('{}'))
    }
  }
  if (req.path === '/v2/' || req.path === '/v2') return reply(socket, req, '200 OK', { 'Content-Type': 'application/json' }, Buffer.from('{}'))
  if (manifest && manifest[1] === REPO && (manifest[2] === 'v1' || manifest[2] === image.manifestDigest)) {
    const body = await fsp.readFile(path.join(image.layout, 'blobs', 'sha256', hexOf(image.manifestDigest)))
    const headers = { 'Content-Type': image.manifest.mediaType ?? 'application/vnd.oci.image.manifest.v1+json', 'Docker-Content-Digest': image.manifestDigest }
    if (stall === 'headers' || stall === 'manifest' || stall === 'error') held = true
    if (stall === 'headers') return void socket.write(`HTTP/1.1 200 OK\r\nContent-Type: ${headers['Content-Type']}\r\nContent-Le`)
    if (stall === 'manifest') return drip(socket, head('200 OK', { ...headers, 'Content-Length': body.length }), body)
    if (stall === 'error') {
      const error = Buffer.from(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'x'.repeat(4096) }] }))
      return drip(socket, head('404 Not Found', { 'Content-Type': 'application/json', 'Content-Length': error.length }), error)
    }
    return reply(socket, req, '200 OK', headers, body)
  }
  if (blob && blob[1] === REPO) {
    const body = await fsp.readFile(path.join(image.layout, 'blobs', 'sha256', hexOf(blob[2]))).catch(() => undefined)
    if (body) {
      const headers = { 'Content-Type': 'application/octet-stream', 'Docker-Content-Digest': blob[2] }
      if (stall === 'blob' && blob[2] === dripped().digest) {
        held = true
        return drip(socket, head('200 OK', { ...headers, 'Content-Length': body.length }), body, body.length >> 1)
      }
      return reply(socket, req, '200 OK', headers, body)
    }
  }
  reply(socket, req, '404 Not Found', { 'Content-Type': 'application/json' }, Buffer.from('{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}'))
}

/** Reads one request head; a TLS ClientHello (the client tries HTTPS first) is hung up on, so it falls back to HTTP. */
function accept(socket: net.Socket): void {
  sockets.add(socket)
  socket.once('close', () => sockets.delete(socket))
  socket.on('error', () => socket.destroy())
  let buffered = Buffer.alloc(0)
  const onData = (chunk: Buffer): void => {
    buffered = Buffer.concat([buffered, chunk])
    if (buffered[0] === 0x16) return void socket.destroy()
    const end = buffered.indexOf('\r\n\r\n')
    if (end < 0) return
    socket.off('data', onData)
    const [line, ...fields] = buffered.subarray(0, end).toString('latin1').split('\r\n')
    const [method, target] = line.split(' ')
    const headers = Object.fromEntries(fields.map((f) => [f.slice(0, f.indexOf(':')).trim().toLowerCase(), f.slice(f.indexOf(':') + 1).trim()]))
    serve(socket, { method, path: target, headers }).catch(() => socket.destroy())
  }
  socket.on('data', onData)
}

beforeAll(async () => {
  requireTools(['umoci'])
  work = await makeTempDir('msb-pull-stalls-')
  const layers = [...sampleLayers('stall'), { entries: [{ type: 'file' as const, path: 'noise.bin', content: noise(512 << 10, 5) }] }]
  image = await buildImage(path.join(work, 'app'), { layers, refs: ['localhost/stall/app:v1'] })
  server = net.createServer(accept)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  port = (server.address() as net.AddressInfo).port
  home = await freshHome('msb-pull-stalls-home-')
  await Image.list()
})

afterAll(async () => {
  for (const s of sockets) s.destroy()
  await new Promise((resolve) => server?.close(resolve))
  await home?.cleanup()
  if (work) await fsp.rm(work, { recursive: true, force: true })
})

afterEach(() => {
  stall = 'off'
  held = false
})

const kinds: Array<[string, Stall]> = [
  ['reads the request and says nothing', 'silent'],
  ['stops inside the manifest response headers', 'headers'],
  ['drips the manifest body', 'manifest'],
  ['drips the token body', 'token'],
  ['drips an error body', 'error'],
  ['drips a layer blob mid-conversion', 'blob'],
]

test.each(kinds)('a registry that %s: AbortError in under 1.5 s, cache unchanged', async (_label, kind) => {
  const before = await artifactTree(home.home)
  stall = kind
  const events: PullProgressEvent[] = []
  const started = performance.now()
  const err = await rejectionOf(Image.pull(ref(), { signal: AbortSignal.timeout(SIGNAL_MS), onProgress: (e) => events.push(e) }))
  const elapsed = performance.now() - started
  expect(err).toBeInstanceOf(AbortError)
  expect(err.code).toBe('aborted')
  expect(held).toBe(true)
  expect(elapsed).toBeGreaterThanOrEqual(SIGNAL_MS - 10)
  expect(elapsed).toBeLessThan(BOUND_MS)
  if (kind === 'blob') {
    // The signal fired while the dripped layer was part-way in.
    expect(events.some((e) => e.type === 'download' && e.digest === dripped().digest && e.downloaded > 0 && e.downloaded < e.total)).toBe(true)
  }
  expect(await Image.list()).toEqual([])
  expect(await artifactTree(home.home)).toEqual(before)
  expect(await consistencyProblems(home.home)).toEqual([])
})

test('with the stalls off, the same server serves the whole pull', async () => {
  const handle = await Image.pull(ref(), { signal: AbortSignal.timeout(60_000) })
  expect(handle.manifestDigest).toBe(image.manifestDigest)
  expect(handle.layerCount).toBe(image.layers.length)
  expect(await consistencyProblems(home.home)).toEqual([])
})
