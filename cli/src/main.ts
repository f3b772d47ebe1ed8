#!/usr/bin/env node
/**
 * The `microsandbox` command: parses the command line, runs the command,
 * and turns any failure into one line on stderr and Docker's exit codes
 * (see errors.ts). Nothing else happens at start-up, so `image ls` on an
 * empty cache costs little more than starting Node.
 */
import { CommanderError } from 'commander'

import { EXIT, REPORTED, UsageError, exitCodeOf, formatError } from './errors'
import { styles } from './output'
import { buildProgram } from './program'

/** Runs the CLI on `argv` (as `process.argv`) and resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  // `--debug` counts wherever it stands (as Docker's `-D` does); it is taken
  // out before parsing because the program's options are positional: they
  // come before the command, so `system df -v` is verbose, not `--version`.
  const debug = argv.includes('--debug')
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { version } = require('../../package.json') as { version: string }
  try {
    await buildProgram(version).parseAsync(argv.filter((a, i) => i < 2 || a !== '--debug'))
    return EXIT.ok
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return EXIT.ok // --help, --version
      // The bare group (`microsandbox`, `microsandbox image`) printed its help to stderr.
      if (e.code !== 'commander.help') report(new UsageError(e.message.replace(/^error: /, '')), debug)
      return EXIT.usage
    }
    if ((e as { code?: unknown }).code !== REPORTED) report(e, debug)
    return exitCodeOf(e)
  }
}

function report(err: unknown, debug: boolean): void {
  const red = styles(process.stderr).red
  process.stderr.write(formatError(err, debug).replace(/^microsandbox:/, red('microsandbox:')))
}

if (require.main === module) {
  main(process.argv).then((code) => {
    process.exitCode = code
  })
}
