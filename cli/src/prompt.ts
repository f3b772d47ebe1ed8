/**
 * Reading from the user: a yes/no confirmation on a terminal, a secret
 * typed without echo, and all of stdin for `--password-stdin` (as
 * `docker login` reads it: one trailing newline dropped).
 */
import { CliError, UsageError } from './errors'

/** Whether the user is at a terminal (stdin), so prompting makes sense. */
export function interactive(): boolean {
  return process.stdin.isTTY === true
}

function readLine(question: string, echo: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const readline = require('readline') as typeof import('readline')
    const rl = readline.createInterface({ input: process.stdin, output: process.stderr, terminal: true })
    if (!echo) {
      // Echo nothing but the question while the secret is typed.
      const internal = rl as unknown as { _writeToOutput: (s: string) => void }
      internal._writeToOutput = (s: string) => {
        if (s.includes(question)) process.stderr.write(question)
        else if (s.includes('\n') || s.includes('\r')) process.stderr.write('\n')
      }
    }
    let answered = false
    rl.on('SIGINT', () => {
      rl.close()
      reject(Object.assign(new CliError('interrupted', 130), { code: 'aborted' }))
    })
    rl.on('close', () => {
      if (!answered) reject(new CliError('no answer: input closed'))
    })
    rl.question(question, (answer) => {
      answered = true
      rl.close()
      resolve(answer)
    })
  })
}

/** Asks `question [y/N]` on the terminal; true only for y or yes. */
export async function confirm(question: string): Promise<boolean> {
  const answer = await readLine(`${question} [y/N] `, true)
  return /^\s*y(es)?\s*$/i.test(answer)
}

/** A line typed at the terminal (echoed, or not for secrets). */
export function ask(question: string, echo = true): Promise<string> {
  return readLine(question, echo)
}

/** Everything on stdin, less one trailing newline (`--password-stdin`). */
export async function readStdin(what: string): Promise<string> {
  if (process.stdin.isTTY) throw new UsageError(`${what} reads stdin, which is a terminal: pipe the secret in (e.g. \`cat token | microsandbox …\`)`)
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  const text = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')
  if (text === '') throw new UsageError(`${what}: stdin was empty`)
  return text
}
