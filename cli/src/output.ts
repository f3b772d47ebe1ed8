/**
 * Where output goes and whether it may be styled: colour only on a TTY and
 * never with `NO_COLOR` set (no-color.org) or `TERM=dumb`, so pipes, logs
 * and scripts get plain text.
 */

/** Whether `stream` is a terminal that may get ANSI colour. */
export function colourful(stream: NodeJS.WriteStream): boolean {
  if (!stream.isTTY) return false
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') return false
  return process.env.TERM !== 'dumb'
}

type Style = (s: string) => string
const plain: Style = (s) => s
const sgr =
  (open: number, close: number): Style =>
  (s) =>
    `\x1b[${open}m${s}\x1b[${close}m`

/** Styles for one stream: identity functions when it may not be coloured. */
export function styles(stream: NodeJS.WriteStream): { bold: Style; dim: Style; red: Style; green: Style; yellow: Style } {
  if (!colourful(stream)) return { bold: plain, dim: plain, red: plain, green: plain, yellow: plain }
  return { bold: sgr(1, 22), dim: sgr(2, 22), red: sgr(31, 39), green: sgr(32, 39), yellow: sgr(33, 39) }
}

/** Writes to stdout. Commands build their whole output first, so a failure prints nothing there. */
export function out(text: string): void {
  if (text) process.stdout.write(text)
}

/** Writes a line of status to stderr (what is not the command's answer). */
export function note(text: string): void {
  process.stderr.write(text.endsWith('\n') ? text : text + '\n')
}
