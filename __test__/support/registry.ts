// A real registry for the pull tests: Debian's `docker-registry` (CNCF
// distribution 2.8) on a free 127.0.0.1 port with its own storage, plus TLS
// material from openssl and htpasswd files. Stopped by `stop()`.
import { ChildProcess, spawn } from 'child_process'
import * as fsp from 'fs/promises'
import * as net from 'net'
import * as path from 'path'

import { makeTempDir, requireTools, run } from './images'
import { REGISTRY_HTTP_SECRET } from './secrets'

export interface RegistrySetup {
  /** Serve HTTPS with this certificate and key. */
  tls?: { cert: string; key: string }
  /** Require Basic auth against this htpasswd file. */
  htpasswd?: string
  /** Be a pull-through cache of this URL. */
  proxy?: string
}

export interface Registry {
  /** `127.0.0.1:<port>`. */
  host: string
  dir: string
  stop(): Promise<void>
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })
}

async function accepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** Starts a registry and waits (at most 15 s) until it accepts connections. */
export async function startRegistry(setup: RegistrySetup = {}): Promise<Registry> {
  requireTools(['docker-registry'])
  const dir = await makeTempDir('msb-registry-')
  const port = await freePort()
  const lines = [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${path.join(dir, 'storage')}`,
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${REGISTRY_HTTP_SECRET}`,
  ]
  if (setup.tls) lines.push('  tls:', `    certificate: ${setup.tls.cert}`, `    key: ${setup.tls.key}`)
  if (setup.htpasswd) lines.push('auth:', '  htpasswd:', '    realm: test-realm', `    path: ${setup.htpasswd}`)
  if (setup.proxy) lines.push('proxy:', `  remoteurl: ${setup.proxy}`)
  const config = path.join(dir, 'config.yml')
  await fsp.writeFile(config, lines.join('\n') + '\n')
  const log = await fsp.open(path.join(dir, 'registry.log'), 'w')
  const child: ChildProcess = spawn('docker-registry', ['serve', config], { stdio: ['ignore', log.fd, log.fd] })
  const deadline = Date.now() + 15_000
  while (!(await accepting(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`docker-registry did not start: ${await fsp.readFile(path.join(dir, 'registry.log'), 'utf8')}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return {
    host: `127.0.0.1:${port}`,
    dir,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r))
        child.kill('SIGKILL')
        await exited
      }
      await log.close()
      await fsp.rm(dir, { recursive: true, force: true })
    },
  }
}

export interface Certs {
  /** Directory holding only `ca.crt`, for skopeo's `--dest-cert-dir`. */
  caDir: string
  ca: string
  cert: string
  key: string
}

/** A test CA and a server certificate for 127.0.0.1 it signs. */
export async function makeCerts(dir: string): Promise<Certs> {
  requireTools(['openssl'])
  const work = path.join(dir, 'pki')
  await fsp.mkdir(work, { recursive: true })
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  const o = (args: string[]) => run('openssl', args, { cwd: work })
  await o(['req', '-x509', '-days', '2', '-subj', '/CN=pull test CA', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  await o(['req', '-subj', '/CN=127.0.0.1', ...ec, '-keyout', 'server.key', '-out', 'server.csr'])
  await fsp.writeFile(path.join(work, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n')
  await o(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'server.ext', '-out', 'server.crt'])
  const caDir = path.join(dir, 'ca')
  await fsp.mkdir(caDir, { recursive: true })
  await fsp.copyFile(path.join(work, 'ca.crt'), path.join(caDir, 'ca.crt'))
  return { caDir, ca: path.join(caDir, 'ca.crt'), cert: path.join(work, 'server.crt'), key: path.join(work, 'server.key') }
}

/** An htpasswd file (bcrypt) for one user. */
export async function makeHtpasswd(dir: string, user: string, password: string): Promise<string> {
  requireTools(['htpasswd'])
  const file = path.join(dir, 'htpasswd')
  const { stdout } = await run('htpasswd', ['-Bbn', user, password])
  await fsp.writeFile(file, stdout)
  return file
}

/** Pushes an OCI layout image (`layout:ref`) to `docker://<host>/<repo>`. */
export async function push(layoutRef: string, dest: string, opts: { certDir?: string; creds?: string; all?: boolean; format?: 'v2s2' | 'oci' } = {}): Promise<void> {
  const args = ['copy', '--quiet']
  if (opts.all) args.push('--all')
  if (opts.format) args.push('--format', opts.format)
  if (opts.certDir) args.push('--dest-cert-dir', opts.certDir)
  else args.push('--dest-tls-verify=false')
  if (opts.creds) args.push('--dest-creds', opts.creds)
  args.push(layoutRef, `docker://${dest}`)
  await run('skopeo', args)
}
