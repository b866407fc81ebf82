import { readFile, readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { ToolError } from '../../errors.js';
import { runCommand } from '../../util/run-command.js';

/**
 * Modules the guest needs before it can mount its root: virtio transport, block and console
 * (for the agent's port), ext4, and crc32c_generic because ext4's metadata checksums ask the
 * crypto API for crc32c, which would otherwise need a modprobe the initrd does not have.
 */
export const REQUIRED_MODULES = [
  'virtio_ring',
  'virtio',
  'virtio_pci_legacy_dev',
  'virtio_pci_modern_dev',
  'virtio_pci',
  'virtio_blk',
  'virtio_console',
  'crc32c_generic',
  'ext4',
];

export interface HostKernel {
  version: string;
  vmlinuz: string;
  modulesDir: string;
}

/** Orders kernel versions like `sort -V` would, enough for Debian's `6.1.0-57-amd64`. */
function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/);
  const pb = b.split(/[.-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '';
    const y = pb[i] ?? '';
    const nx = Number(x);
    const ny = Number(y);
    const c = !Number.isNaN(nx) && !Number.isNaN(ny) && x !== '' && y !== '' ? nx - ny : x.localeCompare(y);
    if (c !== 0) return c;
  }
  return 0;
}

/** The newest `/boot/vmlinuz-<ver>` that has a matching `/lib/modules/<ver>`. */
export async function findHostKernel(bootDir = '/boot', modulesRoot = '/lib/modules'): Promise<HostKernel> {
  const entries = await readdir(bootDir).catch(() => [] as string[]);
  const versions: string[] = [];
  for (const e of entries) {
    if (!e.startsWith('vmlinuz-')) continue;
    const ver = e.slice('vmlinuz-'.length);
    const st = await stat(join(modulesRoot, ver, 'modules.dep')).catch(() => undefined);
    if (st?.isFile()) versions.push(ver);
  }
  if (versions.length === 0) {
    throw new ToolError('linux-image', `no kernel with modules found in ${bootDir} and ${modulesRoot}; install linux-image-amd64`);
  }
  versions.sort(compareVersions);
  const version = versions[versions.length - 1]!;
  return { version, vmlinuz: join(bootDir, `vmlinuz-${version}`), modulesDir: join(modulesRoot, version) };
}

const moduleName = (path: string): string => basename(path).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');

export interface ResolvedModule {
  name: string;
  /** Path relative to the modules dir, as modules.dep names it. */
  relPath: string;
}

/** Resolves the wanted modules plus their dependencies, dependencies first, from modules.dep. */
export async function resolveModules(modulesDir: string, wanted = REQUIRED_MODULES): Promise<ResolvedModule[]> {
  const dep = await readFile(join(modulesDir, 'modules.dep'), 'utf8');
  const builtin = await readFile(join(modulesDir, 'modules.builtin'), 'utf8').catch(() => '');
  const builtinNames = new Set(builtin.split('\n').filter(Boolean).map(moduleName));
  const table = new Map<string, { relPath: string; deps: string[] }>();
  for (const line of dep.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const relPath = line.slice(0, colon).trim();
    const deps = line.slice(colon + 1).trim().split(/\s+/).filter(Boolean);
    table.set(moduleName(relPath), { relPath, deps });
  }
  const order: ResolvedModule[] = [];
  const seen = new Set<string>();
  const visit = (name: string, chain: string[]): void => {
    if (seen.has(name)) return;
    const entry = table.get(name);
    if (!entry) {
      if (builtinNames.has(name)) return;
      throw new ToolError('linux-image', `kernel module ${name} is neither in ${modulesDir}/modules.dep nor built in`);
    }
    if (chain.includes(name)) return;
    for (const d of entry.deps) visit(moduleName(d), [...chain, name]);
    seen.add(name);
    order.push({ name, relPath: entry.relPath });
  };
  for (const w of wanted) visit(w.replace(/-/g, '_'), []);
  return order;
}

/** Reads a module file, decompressing .xz/.zst/.gz on the host so busybox insmod gets plain ELF. */
export async function readModule(path: string, signal?: AbortSignal): Promise<Buffer> {
  if (path.endsWith('.ko')) return readFile(path);
  if (path.endsWith('.ko.xz')) return (await runCommand('xz', ['-dc', path], { signal, pkg: 'xz-utils' })).stdout;
  if (path.endsWith('.ko.zst')) return (await runCommand('zstd', ['-dcq', path], { signal, pkg: 'zstd' })).stdout;
  if (path.endsWith('.ko.gz')) return (await runCommand('gzip', ['-dc', path], { signal, pkg: 'gzip' })).stdout;
  throw new ToolError('linux-image', `unknown kernel module format: ${path}`);
}
