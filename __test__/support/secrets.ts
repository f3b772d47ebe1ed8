/**
 * Every password, token and identity token the JS suite hands the API, and
 * the check that none of them ever comes back in a message (issue 11). The
 * specs take their secrets from here (or `registerSecret` ones they make at
 * run time), so the global watch (support/secrets-watch.ts, a jest
 * `setupFilesAfterEnv` file) knows them all. Spellings follow what the
 * engine scrubs (README, Errors): raw, percent-encoded, hex, and base64
 * (standard and URL-safe) at any offset, which covers a Basic header's
 * `base64(user:password)`.
 */

interface Secret {
  label: string
  spellings: Array<[string, string]>
}

const secrets: Secret[] = []

/** Shortest secret worth scanning for: a shorter one would match by chance. */
const MIN_LENGTH = 8

/**
 * The base64 of `secret` wherever it starts in a longer string: for each of
 * the three alignments, the characters that depend on the secret's bytes
 * only (the first and last group may mix in neighbours).
 */
function base64Cores(secret: Buffer, urlSafe: boolean): string[] {
  return [0, 1, 2].map((shift) => {
    const text = Buffer.concat([Buffer.alloc(shift), secret]).toString(urlSafe ? 'base64url' : 'base64')
    const end = (shift + secret.length) % 3 === 0 ? text.length : Math.floor((shift + secret.length) / 3) * 4
    return text.slice(shift === 0 ? 0 : 4, end)
  })
}

/** Registers a secret to watch for; returns it, so a spec can name its constant by this call. */
export function registerSecret(secret: string, label = `secret #${secrets.length + 1}`): string {
  if (secret.length < MIN_LENGTH) throw new Error(`${label} is too short to watch for (${secret.length} < ${MIN_LENGTH} characters)`)
  const bytes = Buffer.from(secret)
  const spellings: Array<[string, string]> = [
    ['raw', secret],
    ['percent-encoded', encodeURIComponent(secret)],
    ['hex', bytes.toString('hex')],
    ...base64Cores(bytes, false).map((s): [string, string] => ['base64', s]),
    ...base64Cores(bytes, true).map((s): [string, string] => ['base64url', s]),
  ]
  secrets.push({ label, spellings: spellings.filter(([, s]) => s.length >= MIN_LENGTH) })
  return secret
}

/** The password of the htpasswd registries (`alice`). */
export const PASSWORD = registerSecret('s3cret-pass', 'PASSWORD')
/** A password those registries refuse. */
export const WRONG_PASSWORD = registerSecret('wrong-password-42', 'WRONG_PASSWORD')
/** The password login.spec.ts logs in with. */
export const LOGIN_PASSWORD = registerSecret('pw-Zq81-never-shown', 'LOGIN_PASSWORD')
/** The HTTP secret every test registry signs its upload state with. */
export const REGISTRY_HTTP_SECRET = registerSecret('test-secret', 'REGISTRY_HTTP_SECRET')

/** Which registered secrets `text` holds, as `label (spelling)`: never the secret itself. */
export function secretsIn(text: string): string[] {
  const found = new Set<string>()
  for (const { label, spellings } of secrets) {
    for (const [kind, s] of spellings) if (text.includes(s)) found.add(`${label} (${kind})`)
  }
  return [...found]
}

/** `text` with every registered spelling replaced, for naming where a finding was seen. */
export function redact(text: string): string {
  let out = text
  for (const { spellings } of secrets) for (const [, s] of spellings) out = out.split(s).join('<secret>')
  return out
}

const findings: string[] = []

/** Scans one message the tests were given; a finding names `where` and the secret's label. */
export function observe(where: string, text: string): void {
  const found = secretsIn(text)
  if (found.length > 0) findings.push(`${redact(where)}: ${found.join(', ')}`)
}

/** The findings since the last call (and forgets them). */
export function takeFindings(): string[] {
  return findings.splice(0)
}
