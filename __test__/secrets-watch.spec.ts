/**
 * The global secret watch (support/secrets-watch.ts) can fail: a registered
 * secret is found in each spelling the engine scrubs, a rejection carrying
 * one through the watched `Image` is reported (naming where, never the
 * secret), and the watched `Image` still behaves as the class it stands for.
 */
import { Image, InvalidReferenceError } from '../index'
import { freshHomePerTest } from './support/cache'
import { registerSecret, secretsIn, takeFindings } from './support/secrets'

const SECRET = registerSecret('Watch-me/7q2+Kx', 'SECRET')

freshHomePerTest()

test('every scrubbed spelling of a registered secret is found; other text is not', () => {
  const basic = Buffer.from(`alice:${SECRET}`)
  for (const text of [
    `says ${SECRET}`,
    `Authorization: Basic ${basic.toString('base64')}`,
    `url-safe ${Buffer.from(`xy:${SECRET}`).toString('base64url')}`,
    `query token=${encodeURIComponent(SECRET)}&x=1`,
    `dump ${Buffer.from(SECRET).toString('hex')}`,
  ]) {
    expect(secretsIn(text)).not.toEqual([])
  }
  expect(secretsIn('Watch-me/7q2+K and V2F0Y2g')).toEqual([])
})

test('a rejection holding a secret becomes a finding that names the call but not the secret', async () => {
  const err = await Image.get(`UPPER/${SECRET}`).catch((e: unknown) => e)
  expect(err).toBeInstanceOf(InvalidReferenceError)
  const findings = takeFindings()
  expect(findings.length).toBeGreaterThan(0)
  expect(findings.every((f) => f.startsWith('Image.get error in "a rejection holding a secret'))).toBe(true)
  expect(secretsIn(findings.join('\n'))).toEqual([])
})

test('the watched Image keeps its name, methods, prototype, and detached calls still reject', async () => {
  expect(Image.name).toBe('Image')
  expect(typeof Image.pull).toBe('function')
  expect(Image.pull).toBe(Image.pull)
  expect('pull' in Image).toBe(true)
  expect(Object.create(Image.prototype)).toBeInstanceOf(Image)
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const detached = (Image as any).get
  await expect(detached(42)).rejects.toMatchObject({ code: 'invalid_argument' })
  expect(await Image.list()).toEqual([])
})
