/**
 * A throttling TCP proxy on 127.0.0.1 for the CLI's TTY tests: every
 * connection's responses (upstream to client) are let through at
 * `bytesPerSecond`, so a pull takes long enough to watch its progress and
 * to interrupt it mid-download, deterministically. Requests pass as sent.
 */
import * as net from 'net'

export interface Throttle {
  /** `127.0.0.1:<port>`: use it in place of the upstream host. */
  host: string
  stop(): Promise<void>
}

const TICK_MS = 50

/** Starts a proxy in front of `upstream` (`host:port`). */
export async function startThrottle(upstream: string, bytesPerSecond: number): Promise<Throttle> {
  const [upHost, upPort] = [upstream.slice(0, upstream.lastIndexOf(':')), Number(upstream.slice(upstream.lastIndexOf(':') + 1))]
  const sockets = new Set<net.Socket>()
  const budget = Math.max(1, Math.floor((bytesPerSecond * TICK_MS) / 1000))
  const server = net.createServer((client) => {
    const up = net.connect(upPort, upHost)
    for (const s of [client, up]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => {
        client.destroy()
        up.destroy()
      })
    }
    client.pipe(up)
    // At most one tick's budget waits here; the upstream is paused beyond that.
    const queue: Buffer[] = []
    let queued = 0
    let ended = false
    let timer: NodeJS.Timeout | undefined
    const pump = (): void => {
      timer = undefined
      let allowed = budget
      while (allowed > 0 && queue.length > 0) {
        const chunk = queue[0]
        const n = Math.min(allowed, chunk.length)
        client.write(chunk.subarray(0, n))
        allowed -= n
        queued -= n
        if (n === chunk.length) queue.shift()
        else queue[0] = chunk.subarray(n)
      }
      if (queue.length > 0) timer = setTimeout(pump, TICK_MS)
      else if (ended) client.end()
      if (queued < budget && !ended) up.resume()
    }
    up.on('data', (chunk: Buffer) => {
      queue.push(chunk)
      queued += chunk.length
      if (queued >= budget) up.pause()
      timer ??= setTimeout(pump, TICK_MS)
    })
    up.on('end', () => {
      ended = true
      timer ??= setTimeout(pump, TICK_MS)
    })
    client.on('close', () => {
      if (timer) clearTimeout(timer)
      up.destroy()
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const port = (server.address() as net.AddressInfo).port
  return {
    host: `127.0.0.1:${port}`,
    async stop() {
      for (const s of sockets) s.destroy()
      await new Promise((r) => server.close(r))
    },
  }
}
