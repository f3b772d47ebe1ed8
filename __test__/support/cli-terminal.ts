/**
 * A real terminal for the CLI's TTY tests: a private tmux server (its own
 * socket, no status line, panes kept after exit) running one command, with
 * `send-keys` to type and `capture-pane` to read the screen. The command's
 * exit code goes to a file, written by a bash wrapper that survives Ctrl-C
 * (`trap true INT`: the signal still reaches the command).
 */
import * as fs from 'fs'
import * as fsp from 'fs/promises'
import * as path from 'path'

import { makeTempDir, requireTools, run } from './images'

export interface Terminal {
  /** The screen and what scrolled off it, as text (`escapes`: with colour and style sequences). */
  capture(opts?: { escapes?: boolean }): Promise<string>
  /** `tmux send-keys`: key names (`C-c`, `Enter`) or text. */
  sendKeys(...keys: string[]): Promise<void>
  /** Polls the screen (every 50 ms, at most `timeoutMs`) until `ready` holds; returns that screen. */
  waitFor(ready: (screen: string) => boolean, what: string, timeoutMs?: number): Promise<string>
  /** Waits (at most `timeoutMs`) for the command to exit; its exit code. */
  exited(timeoutMs?: number): Promise<number>
  stop(): Promise<void>
}

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

let sessions = 0

/**
 * Runs `command` (argv) in `cwd` in a new `width`×`height` tmux pane with
 * exactly `env` (plus tmux's TERM).
 */
export async function startTerminal(command: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; width?: number; height?: number }): Promise<Terminal> {
  requireTools(['tmux', 'bash'])
  const dir = await makeTempDir('msb-tmux-')
  const socket = `msb-cli-${process.pid}-${++sessions}`
  const exitFile = path.join(dir, 'exit-code')
  const exports = Object.entries(opts.env)
    .filter(([k, v]) => v !== undefined && /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) && k !== 'TERM')
    .map(([k, v]) => `export ${k}=${quote(v!)}`)
  const script = [
    'for v in $(compgen -e); do [ "$v" = TERM ] || unset "$v"; done',
    ...exports,
    `cd ${quote(opts.cwd)}`,
    'trap true INT',
    command.map(quote).join(' '),
    `echo $? > ${quote(exitFile)}.partial && mv ${quote(exitFile)}.partial ${quote(exitFile)}`,
  ].join('\n')
  await fsp.writeFile(path.join(dir, 'run.sh'), script + '\n')
  await fsp.writeFile(path.join(dir, 'tmux.conf'), 'set -g remain-on-exit on\nset -g status off\nset -g history-limit 2000\n')
  const tmux = (...args: string[]) => run('tmux', ['-L', socket, '-f', path.join(dir, 'tmux.conf'), ...args])
  await tmux('new-session', '-d', '-s', 'main', '-x', String(opts.width ?? 120), '-y', String(opts.height ?? 30), `bash ${quote(path.join(dir, 'run.sh'))}`)
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
  const terminal: Terminal = {
    async capture(o = {}) {
      // From the top of the history: when the command exits, tmux scrolls the pane a line to say so.
      const { stdout } = await tmux('capture-pane', '-p', '-S', '-', ...(o.escapes ? ['-e'] : []), '-t', 'main')
      return stdout
        .split('\n')
        .filter((l) => !/^(\x1b\[[0-9;]*m)*Pane is dead \(/.test(l))
        .join('\n')
        .replace(/\n+$/, '\n')
    },
    async sendKeys(...keys) {
      await tmux('send-keys', '-t', 'main', ...keys)
    },
    async waitFor(ready, what, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs
      let screen = ''
      while (Date.now() < deadline) {
        screen = await terminal.capture()
        if (ready(screen)) return screen
        await sleep(50)
      }
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; the screen:\n${screen}`)
    },
    async exited(timeoutMs = 120_000) {
      const deadline = Date.now() + timeoutMs
      while (Date.now() < deadline) {
        if (fs.existsSync(exitFile)) return Number((await fsp.readFile(exitFile, 'utf8')).trim())
        await sleep(50)
      }
      throw new Error(`the command did not exit within ${timeoutMs} ms; the screen:\n${await terminal.capture()}`)
    },
    async stop() {
      await tmux('kill-server').catch(() => undefined)
      await fsp.rm(dir, { recursive: true, force: true })
    },
  }
  return terminal
}
