/**
 * `login` and `logout`, as `docker login` takes credentials: `-u USER`,
 * the password from `--password-stdin` or typed at a terminal (never on the
 * command line); stored by `Image.login` where pulls find them (Docker's
 * config.json, `DOCKER_CONFIG`).
 */
import { api } from '../api'
import { UsageError } from '../errors'
import { out } from '../output'
import { ask, interactive, readStdin } from '../prompt'

const DEFAULT_REGISTRY = 'docker.io'

/** `login [REGISTRY]`: asks for what the flags do not give, on a terminal only. */
export async function login(registry: string | undefined, opts: { username?: string; passwordStdin?: boolean; insecure?: boolean }): Promise<void> {
  const target = registry ?? DEFAULT_REGISTRY
  let username = opts.username
  if (!username) {
    if (!interactive() || opts.passwordStdin) throw new UsageError('login: give --username (cannot ask for it: stdin is not a terminal)')
    username = (await ask('Username: ')).trim()
  }
  let password: string
  if (opts.passwordStdin) password = await readStdin('--password-stdin')
  else if (interactive()) password = await ask('Password: ', false)
  else throw new UsageError('login: cannot ask for a password (stdin is not a terminal): use --password-stdin')
  await api().login(target, { username, password, insecure: opts.insecure })
  out('Login Succeeded\n')
}

/** `logout [REGISTRY]`: forgets the credentials stored for the registry. */
export async function logout(registry: string | undefined): Promise<void> {
  const target = registry ?? DEFAULT_REGISTRY
  await api().logout(target)
  out(`Removing login credentials for ${target}\n`)
}
