/**
 * Which binary package the generated loader (index.js) picks on a platform
 * this machine cannot run: index.js runs in a child Node with
 * `process.platform`, `process.arch` and `process.config` set to what that
 * platform's official Node reports, and `require` answering only for the
 * binary packages this project ships (npm/<name>), with an empty object.
 * Everything else the loader does (its order of candidates, its glibc
 * check, its version check) is the generated code's own.
 */
import * as fs from 'fs'
import * as path from 'path'

import { PACKAGE_ROOT, runNodeScript, childEnv } from './cache'

export interface LoaderPlatform {
  platform: NodeJS.Platform
  arch: string
  /** `process.config.variables.shlib_suffix` of that Node. */
  shlibSuffix: string
}

export interface LoaderChoice {
  /** Every module the loader asked for, in order. */
  tried: string[]
  /** The binary package it loaded, if any. */
  chosen: string | null
}

/** The binary packages this project ships, by npm/<name>. */
export function shippedPackages(): string[] {
  return fs
    .readdirSync(path.join(PACKAGE_ROOT, 'npm'))
    .filter((name) => fs.existsSync(path.join(PACKAGE_ROOT, 'npm', name, 'package.json')))
    .sort()
}

export async function loaderChoice(target: LoaderPlatform): Promise<LoaderChoice> {
  const shipped = shippedPackages().map((name) => `microsandbox-${name}`)
  const script = `
const Module = require('module');
const target = ${JSON.stringify(target)};
const shipped = new Set(${JSON.stringify(shipped)});
const index = ${JSON.stringify(path.join(PACKAGE_ROOT, 'index.js'))};
Object.defineProperty(process, 'platform', { value: target.platform });
Object.defineProperty(process, 'arch', { value: target.arch });
Object.defineProperty(process, 'config', { value: { ...process.config, variables: { ...process.config.variables, shlib_suffix: target.shlibSuffix, node_target_type: 'executable' } } });
const tried = [];
let chosen = null;
const load = Module._load;
Module._load = function (request, parent, isMain) {
  if (parent && parent.filename === index && /microsandbox[.-]/.test(request)) {
    tried.push(request);
    const name = request.replace(/\\/package\\.json$/, '');
    if (shipped.has(name)) {
      if (request.endsWith('/package.json')) return { version: require(${JSON.stringify(path.join(PACKAGE_ROOT, 'package.json'))}).version };
      chosen = name;
      return {};
    }
    const e = new Error('Cannot find module ' + request);
    e.code = 'MODULE_NOT_FOUND';
    throw e;
  }
  return load.apply(this, arguments);
};
try { require(index); } catch (e) { if (chosen) throw e; }
console.log(JSON.stringify({ tried, chosen }));
`
  const r = await runNodeScript(script, childEnv({ NAPI_RS_NATIVE_LIBRARY_PATH: undefined, NAPI_RS_FORCE_WASI: undefined }))
  if (r.code !== 0) throw new Error(`loader child failed (${r.code}): ${r.stderr}`)
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as LoaderChoice
}
