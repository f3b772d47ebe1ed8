/**
 * The command tree (commander), with Docker's names, aliases and flags.
 * Only definitions live here; each action loads its command module when
 * it runs, so start-up pays for the tree alone. Every command is made with
 * `.command()` on its parent so it inherits the exit and output settings.
 */
import { Command } from 'commander'

import { collect } from './commands/options'

const examples = (lines: string[]): string => `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`

function lsCommand(cmd: Command): Command {
  return cmd
    .description('List cached images')
    .option('-q, --quiet', 'print references only')
    .option('--no-trunc', 'show full digests')
    .option('--format <format>', 'table (default) or json: one JSON array of every handle field')
    .option('-f, --filter <filter>', 'reference=GLOB or label=KEY[=VALUE]; repeatable', collect)
    .addHelpText('after', examples(['microsandbox image ls', 'microsandbox images --filter reference=python', "microsandbox image ls --filter 'label=org.opencontainers.image.vendor=Acme' -q", 'microsandbox image ls --format json']))
    .action(async (opts: { quiet?: boolean; trunc: boolean; format?: string; filter?: string[] }) => {
      await (await import('./commands/images')).list({ quiet: opts.quiet, noTrunc: !opts.trunc, format: opts.format, filter: opts.filter ?? [] })
    })
}

function rmCommand(cmd: Command): Command {
  return cmd
    .description('Remove cached images (and what only they kept)')
    .argument('<reference...>')
    .option('-f, --force', 'remove even while sandboxes use it (their files stay until released)')
    .addHelpText('after', examples(['microsandbox image rm python:3.12', 'microsandbox rmi -f old:tag other:tag']))
    .action(async (refs: string[], opts: { force?: boolean }) => {
      await (await import('./commands/images')).remove(refs, opts)
    })
}

function imageCommand(program: Command): void {
  const image = program
    .command('image')
    .description('Manage the image cache')
    .addHelpText('after', examples(['microsandbox image ls', 'microsandbox image pull alpine:3.20', 'microsandbox image rm alpine:3.20', 'microsandbox image prune -f']))
  lsCommand(image.command('ls').aliases(['list', 'images']))
  rmCommand(image.command('rm').aliases(['rmi', 'remove']))
  image
    .command('pull')
    .description('Pull an image from a registry into the cache')
    .argument('<reference>')
    .option('--platform <platform>', 'os/arch[/variant] (default: the host)')
    .option('--policy <policy>', 'if-missing (default), always or never')
    .option('--insecure', 'plain HTTP or unverified TLS for this registry')
    .option('-q, --quiet', 'no progress; print the reference only')
    .option('-u, --username <username>', 'registry user (password from --password-stdin)')
    .option('--password-stdin', 'read the password from stdin')
    .addHelpText('after', examples(['microsandbox image pull python:3.12', 'microsandbox image pull --platform linux/arm64 --policy always alpine', 'echo "$TOKEN" | microsandbox image pull -u ci --password-stdin registry.example/app:1']))
    .action(async (ref: string, opts) => (await import('./commands/transfer')).pull(ref, opts))
  image
    .command('inspect')
    .description('Show cached images in detail (one JSON array)')
    .argument('<reference...>')
    .addHelpText('after', examples(['microsandbox image inspect python:3.12', 'microsandbox image inspect python:3.12 alpine | jq ".[].config.env"']))
    .action(async (refs: string[]) => (await import('./commands/images')).inspect(refs))
  image
    .command('tag')
    .description('Give a cached image another reference')
    .argument('<source>')
    .argument('<target>')
    .addHelpText('after', examples(['microsandbox image tag python:3.12 mypython:latest']))
    .action(async (source: string, target: string) => (await import('./commands/images')).tag(source, target))
  image
    .command('load')
    .description('Load images from a docker-archive, OCI layout or OCI archive')
    .requiredOption('-i, --input <file>', 'the archive (or OCI layout directory)')
    .option('-t, --tag <reference>', "name for the archive's single image")
    .option('--platform <platform>', 'pick from a multi-platform index (default: the host)')
    .option('-q, --quiet', 'no progress')
    .addHelpText('after', examples(['microsandbox image load -i python.tar', 'microsandbox image load -i app-oci.tar.gz -t app:dev']))
    .action(async (opts) => (await import('./commands/transfer')).load(opts))
  image
    .command('save')
    .description('Save cached images to an archive')
    .argument('<reference...>')
    .requiredOption('-o, --output <file>', 'the archive to write')
    .option('--format <format>', 'docker (default) or oci')
    .addHelpText('after', examples(['microsandbox image save -o python.tar python:3.12', 'microsandbox image save --format oci -o both.tar python:3.12 alpine']))
    .action(async (refs: string[], opts) => (await import('./commands/transfer')).save(refs, opts))
  image
    .command('prune')
    .description('Remove images no sandbox or snapshot uses')
    .option('-a, --all', 'every unused image (the default; accepted as Docker takes it)')
    .option('--filter <filter>', 'until=DURATION, unused-for=DURATION, label=KEY[=VALUE], reference=GLOB; repeatable', collect)
    .option('--keep <reference>', 'never prune this reference; repeatable', collect)
    .option('--max-size <size>', 'prune least recently used images until the cache fits (20GB, 512MiB)')
    .option('--dry-run', 'show what would go; change nothing')
    .option('-f, --force', 'do not ask for confirmation')
    .option('--format <format>', 'table (default) or json: the prune report')
    .addHelpText('after', examples(['microsandbox image prune -f', 'microsandbox image prune --filter unused-for=7d --keep python:3.12 --dry-run', 'microsandbox image prune --max-size 20GB -f --format json']))
    .action(async (opts) => (await import('./commands/prune')).prune({ ...opts, filter: opts.filter ?? [], keep: opts.keep ?? [] }))
  image
    .command('check')
    .description("Check the cache's files against its index (exit 1 when problems remain)")
    .option('--full', 'also verify every file’s content')
    .option('--repair', 'repair what can be repaired')
    .option('--format <format>', 'table (default) or json: the check report')
    .addHelpText('after', examples(['microsandbox image check', 'microsandbox image check --full --repair']))
    .action(async (opts) => (await import('./commands/system')).check(opts))
}

function systemCommand(program: Command): void {
  const system = program
    .command('system')
    .description('Cache-wide information')
    .addHelpText('after', examples(['microsandbox system df', 'microsandbox system df -v --format json']))
  system
    .command('df')
    .description('Show disk usage of the image cache')
    .option('-v, --verbose', 'per image')
    .option('--format <format>', 'table (default) or json')
    .addHelpText('after', examples(['microsandbox system df', 'microsandbox system df -v']))
    .action(async (opts) => (await import('./commands/system')).df(opts))
}

/** The whole command tree; `version` is the package's. */
export function buildProgram(version: string): Command {
  const program = new Command('microsandbox')
  program
    .description("microsandbox's local OCI image cache")
    .version(`microsandbox version ${version}`, '-v, --version', 'print the version')
    .option('--debug', 'print error codes and stacks (anywhere on the line)')
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({ outputError: () => {} })
    .showSuggestionAfterError(true)
    .addHelpText(
      'after',
      examples(['microsandbox image pull python:3.12', 'microsandbox images', 'microsandbox image prune --dry-run', 'microsandbox system df']) +
        '\nEnvironment: MSB_HOME (cache directory), MSB_BACKEND, DOCKER_CONFIG (registry credentials), NO_COLOR.\n' +
        'Exit codes: 0 ok, 1 failure, 2 usage error, 125 cache failure, 130 interrupted.\n',
    )
  imageCommand(program)
  systemCommand(program)
  lsCommand(program.command('images'))
  rmCommand(program.command('rmi'))
  program
    .command('login')
    .description('Store credentials for a registry')
    .argument('[registry]', 'default docker.io')
    .option('-u, --username <username>')
    .option('--password-stdin', 'read the password from stdin')
    .option('--insecure', 'plain HTTP or unverified TLS for this registry')
    .addHelpText('after', examples(['microsandbox login registry.example -u ci --password-stdin < token.txt', 'microsandbox login']))
    .action(async (registry: string | undefined, opts) => (await import('./commands/auth')).login(registry, opts))
  program
    .command('logout')
    .description('Forget the credentials stored for a registry')
    .argument('[registry]', 'default docker.io')
    .addHelpText('after', examples(['microsandbox logout registry.example']))
    .action(async (registry: string | undefined) => (await import('./commands/auth')).logout(registry))
  return program
}
