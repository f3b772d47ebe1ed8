/**
 * Pull progress as `docker pull` shows it. On a TTY: one line per layer
 * (downloaded / total bytes, rate, then verified and converted) and one for
 * the root disk, redrawn in place by cli-progress. Elsewhere: one plain
 * line per event, no control characters, for logs and pipes. Written
 * against the event `type` only; unknown types are shown generically.
 */
import type { MultiBar, SingleBar } from 'cli-progress'

import type { PullProgressEvent } from './api'
import { humanSize, shortDigest } from './format'

/** What a pull command feeds its progress display. */
export interface Progress {
  event(e: PullProgressEvent): void
  /** Leaves the last frame on screen (at completion or failure). */
  stop(): void
  /** Ctrl-C: marks what had not finished as interrupted (redrawing over the terminal's `^C`) and stops. */
  interrupt(): void
  /** Whether any blob was downloaded (a pull of what the cache holds downloads nothing). */
  readonly transferred: boolean
}

/** A display for `reference` on stdout: live bars on a TTY, plain lines otherwise. */
export function pullProgress(reference: string, tty: boolean): Progress {
  return tty ? new LiveProgress(reference) : new PlainProgress(reference)
}

const typeWord = (type: string): string => type.charAt(0).toUpperCase() + type.slice(1)

/** Bytes per second over the last few seconds of one blob's download. */
class Rate {
  private samples: Array<[number, number]> = []
  add(bytes: number, now = Date.now()): void {
    this.samples.push([now, bytes])
    while (this.samples.length > 2 && now - this.samples[0][0] > 3000) this.samples.shift()
  }
  get perSecond(): number | undefined {
    if (this.samples.length < 2) return undefined
    const [t0, b0] = this.samples[0]
    const [t1, b1] = this.samples[this.samples.length - 1]
    return t1 > t0 ? ((b1 - b0) * 1000) / (t1 - t0) : undefined
  }
}

class PlainProgress implements Progress {
  transferred = false
  constructor(private readonly reference: string) {}

  event(e: PullProgressEvent): void {
    const id = 'digest' in e && e.digest ? shortDigest(e.digest) : this.reference
    let line: string
    switch (e.type) {
      case 'resolved': {
        const bytes = e.layers.reduce((n, l) => n + l.size, 0)
        line = `${this.reference}: resolved ${e.manifestDigest} (${e.layers.length} layers, ${humanSize(bytes)})`
        break
      }
      case 'download':
        this.transferred = true
        line = `${id}: downloading ${humanSize(e.downloaded)} / ${humanSize(e.total)}`
        break
      case 'retry':
        line = `${id}: retrying in ${e.retryAfterMs} ms (attempt ${e.attempt}): ${e.reason}`
        break
      case 'layer':
        line = `${id}: ${e.step === 'cached' ? 'already exists' : e.step}`
        break
      case 'disk':
        line = 'root disk: written'
        break
      case 'complete':
        return
      case 'gc':
        line = `cache over its budget: evicted ${e.references.length} least recently used images, ${humanSize(e.bytesReclaimed)} reclaimed, ${humanSize(e.remainingBytes)} left`
        break
      default:
        line = `${id}: ${(e as { type: string }).type}`
    }
    process.stdout.write(line.replace(/[\x00-\x1f\x7f]/g, ' ') + '\n')
  }

  stop(): void {}
  interrupt(): void {}
}

interface Row {
  label: string
  bar: SingleBar
  size: number
  status: string
  downloaded: number
  rate: Rate
}

const BAR = 30

class LiveProgress implements Progress {
  transferred = false
  private multi: MultiBar | undefined
  private rows = new Map<string, Row>()
  private disk: Row | undefined

  constructor(reference: string) {
    process.stdout.write(`Pulling ${reference}\n`)
  }

  private start(layers: ReadonlyArray<{ digest: string; size: number }>): void {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const cliProgress = require('cli-progress') as typeof import('cli-progress')
    this.multi = new cliProgress.MultiBar({
      stream: process.stdout,
      format: (_opts, _params, payload: { line: string }) => payload.line,
      hideCursor: true,
      clearOnComplete: false,
      gracefulExit: false,
      fps: 10,
    })
    for (const l of layers) {
      if (this.rows.has(l.digest)) continue
      this.rows.set(l.digest, this.row(shortDigest(l.digest), l.size, 'Waiting'))
    }
    this.disk = this.row('root disk   ', 0, 'Waiting')
    this.redraw()
  }

  private row(label: string, size: number, status: string): Row {
    const bar = this.multi!.create(Math.max(size, 1), 0, { line: '' })
    return { label, bar, size, status, downloaded: 0, rate: new Rate() }
  }

  private line(row: Row): string {
    const label = row.label
    if (row.status !== 'Downloading') return `${label}: ${row.status}${row === this.disk || row.status === 'Waiting' ? '' : `  ${humanSize(row.size)}`}`
    const filled = row.size > 0 ? Math.min(BAR, Math.round((row.downloaded / row.size) * BAR)) : 0
    const bar = '='.repeat(Math.max(0, filled - 1)) + (filled > 0 ? '>' : '') + ' '.repeat(BAR - filled)
    const rate = row.rate.perSecond
    return `${label}: Downloading [${bar}] ${humanSize(row.downloaded)} / ${humanSize(row.size)}${rate === undefined ? '' : `  ${humanSize(rate)}/s`}`
  }

  private redraw(): void {
    for (const row of [...this.rows.values(), ...(this.disk ? [this.disk] : [])]) {
      row.bar.update(Math.min(row.downloaded, Math.max(row.size, 1)), { line: this.line(row) })
    }
  }

  event(e: PullProgressEvent): void {
    if (e.type === 'resolved') {
      if (!this.multi) this.start(e.layers)
      return
    }
    if (!this.multi) return
    const row = 'digest' in e && e.digest ? this.rows.get(e.digest) : undefined
    switch (e.type) {
      case 'download':
        if (!row) return // the config blob
        this.transferred = true
        row.downloaded = e.downloaded
        row.rate.add(row.downloaded)
        row.status = row.downloaded >= e.total ? 'Download complete' : 'Downloading'
        break
      case 'retry':
        if (row) row.status = `Retrying in ${Math.ceil(e.retryAfterMs / 1000)} s (attempt ${e.attempt})`
        break
      case 'layer':
        if (!row) return
        row.status = { cached: 'Already exists', verified: 'Verified', converted: 'Verified, converted' }[e.step]
        break
      case 'disk':
        this.disk!.status = 'Written'
        this.settle()
        break
      case 'complete':
        this.settle()
        break
      default:
        if (row) row.status = typeWord((e as { type: string }).type)
    }
    this.redraw()
  }

  /** Layers that never moved were in the cache already. */
  private settle(): void {
    for (const r of this.rows.values()) if (r.status === 'Waiting') r.status = 'Already exists'
    if (this.disk?.status === 'Waiting') this.disk.status = 'Up to date'
  }

  stop(): void {
    if (!this.multi) return
    this.redraw()
    this.multi.stop()
    this.multi = undefined
  }

  interrupt(): void {
    for (const row of [...this.rows.values(), ...(this.disk ? [this.disk] : [])]) {
      if (!/^(Verified|Already|Written|Up to date)/.test(row.status)) row.status = 'Interrupted'
    }
    this.stop()
  }
}

/** What a load command feeds its progress bar. */
export interface ArchiveProgress {
  event(e: PullProgressEvent): void
  stop(): void
}

/**
 * One bar over the archive's bytes for `image load` on a TTY, fed by
 * `archive` events (`read` of `total` bytes); other events leave it as it is.
 */
export function archiveProgress(file: string): ArchiveProgress {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const cliProgress = require('cli-progress') as typeof import('cli-progress')
  const rate = new Rate()
  let bar: SingleBar | undefined
  const name = file.length > 40 ? '…' + file.slice(-39) : file
  return {
    event(e) {
      if (e.type !== 'archive') return
      rate.add(e.read)
      const filled = e.total > 0 ? Math.min(BAR, Math.round((e.read / e.total) * BAR)) : 0
      const line = `${name}: Loading [${'='.repeat(filled)}${' '.repeat(BAR - filled)}] ${humanSize(e.read)} / ${humanSize(e.total)}${rate.perSecond === undefined ? '' : `  ${humanSize(rate.perSecond)}/s`}`
      if (!bar) {
        bar = new cliProgress.SingleBar({ stream: process.stdout, format: (_o, _p, payload: { line: string }) => payload.line, hideCursor: true, gracefulExit: false, clearOnComplete: false })
        bar.start(Math.max(e.total, 1), e.read, { line })
      } else bar.update(e.read, { line })
    },
    stop() {
      bar?.stop()
      bar = undefined
    },
  }
}
