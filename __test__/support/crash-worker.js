/**
 * The child process of the crash and soak harnesses (support/crash-run.ts,
 * support/crash-soak.ts): it runs Image operations a parent chose and
 * reports each on stdout as one JSON line, written synchronously (a pipe
 * write is complete before the next statement), so that after a SIGKILL
 * the parent knows exactly which operation was in flight.
 *
 *   node crash-worker.js once '<op>'        one operation; lines ready, begin, progress…, end
 *   node crash-worker.js plan PLAN.json     operations of plan.ops in order until plan.deadline
 *                                           (epoch ms); an end line each, then a summary line
 *
 * Plain JavaScript, so a child starts without a TypeScript compiler; the
 * choices (and their seeds) are the parent's. `MSB_HOME` names the cache.
 * Required as a module it exports `run`, which the parent uses to run a
 * killed operation again the same way.
 */
'use strict'
const fs = require('fs')
const path = require('path')

const { Image } = require(path.resolve(__dirname, '..', '..'))

const say = (line) => fs.writeSync(1, JSON.stringify(line) + '\n')

/** What a caught error is, as the parent checks it. */
const described = (e) => ({ code: e && e.code, name: e && e.constructor && e.constructor.name, message: String(e && e.message) })

/**
 * Runs one operation; resolves to a small summary. `converted` collects the
 * diff_ids a pull reports as converted (progress `layer`/`converted`).
 */
async function run(op, converted) {
  switch (op.op) {
    case 'load':
      return { refs: (await Image.load(op.path)).map((h) => h.reference) }
    case 'pull': {
      const onProgress = (e) => {
        if (e.type === 'layer' && e.step === 'converted') converted.push(e.diffId)
        if (op.report) say({ ev: 'progress', type: e.type, step: e.step })
      }
      return { digest: (await Image.pull(op.ref, { pullPolicy: op.policy, onProgress })).manifestDigest }
    }
    case 'prune':
      return op.opts ? await Image.prune(op.opts) : await Image.prune()
    case 'remove':
      await Image.remove(op.ref, { force: op.force })
      return {}
    case 'save':
      await Image.save(op.refs, { outputPath: op.outputPath, format: op.format })
      if (op.discard) fs.rmSync(op.outputPath)
      return {}
    case 'acquire': {
      const boot = await Image.acquire(op.ref, { sandbox: op.sandbox })
      const missing = [boot.vmdkPath, boot.fsmetaPath, ...boot.layers].filter((p) => !fs.existsSync(p))
      if (op.release) await Image.release(op.sandbox)
      if (missing.length > 0) throw Object.assign(new Error(`acquire returned missing paths: ${missing.join(', ')}`), { code: 'missing_path' })
      return { layers: boot.layers.length }
    }
    case 'release':
      return { released: await Image.release(op.sandbox) }
    case 'pin':
      await Image.pinSnapshot(op.name, op.ref)
      return {}
    case 'unpin':
      return { unpinned: await Image.unpinSnapshot(op.name) }
    case 'tag':
      return { reference: (await Image.tag(op.source, op.target)).reference }
    case 'check': {
      const report = await Image.check({ repair: op.repair, full: op.full })
      return { ok: report.ok, kinds: report.problems.map((p) => p.kind) }
    }
    case 'list':
      return { refs: (await Image.list()).map((h) => h.reference) }
    default:
      throw new Error(`unknown operation ${op.op}`)
  }
}

/** The process's peak resident set (VmHWM), in bytes. */
function peakRss() {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))
  return m ? Number(m[1]) * 1024 : null
}

async function once(op) {
  say({ ev: 'ready' })
  const converted = []
  const started = performance.now()
  say({ ev: 'begin', op: op.op })
  try {
    const result = await run({ ...op, report: true }, converted)
    say({ ev: 'end', op: op.op, ms: performance.now() - started, ok: true, result })
  } catch (e) {
    say({ ev: 'end', op: op.op, ms: performance.now() - started, ok: false, error: described(e) })
  }
}

async function plan({ ops, deadline }) {
  let done = 0
  for (const [i, op] of ops.entries()) {
    if (Date.now() >= deadline) break
    const converted = []
    const started = performance.now()
    try {
      await run(op, converted)
      say({ ev: 'end', i, op: op.op, ms: Math.round(performance.now() - started), ok: true, converted })
    } catch (e) {
      say({ ev: 'end', i, op: op.op, ms: Math.round(performance.now() - started), ok: false, error: described(e), converted })
    }
    done++
  }
  say({ ev: 'summary', done, planned: ops.length, peakRssBytes: peakRss() })
}

module.exports = { run }

if (require.main === module) {
  const [mode, arg] = process.argv.slice(2)
  const main = mode === 'once' ? once : mode === 'plan' ? plan : null
  if (!main) {
    process.stderr.write('usage: crash-worker.js once|plan <json>\n')
    process.exit(2)
  }
  main(JSON.parse(mode === 'plan' ? fs.readFileSync(arg, 'utf8') : arg)).then(
    () => process.exit(0),
    (e) => {
      process.stderr.write(`crash-worker: ${e && e.stack}\n`)
      process.exit(1)
    },
  )
}
