import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { copyFile, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { ToolError, throwIfAborted } from '../../errors.js';
import { fsyncPath, publishFile } from '../../util/fs.js';
import { CpioWriter } from './cpio-writer.js';
import { INIT_SCRIPT, SHUTDOWN_SCRIPT } from './guest-scripts.js';
import { findHostKernel, readModule, resolveModules } from './kernel-modules.js';
import { runCommand } from '../../util/run-command.js';
import { sha256File } from '../../util/fs.js';

/** Bumped whenever the initrd layout or scripts change in a way old kits cannot serve. */
export const KIT_FORMAT = 1;
export const KIT_MANIFEST = 'kit.json';

const BUSYBOX = '/bin/busybox';
const QEMU_GA = '/usr/sbin/qemu-ga';

export interface BootKitManifest {
  format: number;
  kernelVersion: string;
  /** File names inside the kit dir. */
  kernel: string;
  initrd: string;
  modules: string[];
  /** sha256 of the inputs, so a package upgrade marks the kit stale. */
  inputs: { kernel: string; busybox: string; qemuGa: string; scripts: string };
  created: string;
}

export interface BootKitStatus {
  dir: string;
  present: boolean;
  stale: boolean;
  /** Why the kit is missing or stale (empty when usable and current). */
  reasons: string[];
  manifest?: BootKitManifest;
  /** Absolute paths of the kit's kernel and initrd when present. */
  kernelPath?: string;
  initrdPath?: string;
}


const scriptsHash = (): string =>
  createHash('sha256').update(`${KIT_FORMAT}\0${INIT_SCRIPT}\0${SHUTDOWN_SCRIPT}`).digest('hex');

async function requireFile(path: string, pkg: string): Promise<void> {
  const st = await stat(path).catch(() => undefined);
  if (!st?.isFile()) throw new ToolError(pkg, `${path} not found; install ${pkg}`);
}

/** Libraries `ldd` lists for a binary, plus its dynamic loader (absolute paths). */
async function sharedLibraries(binary: string, signal?: AbortSignal): Promise<string[]> {
  const { stdout } = await runCommand('ldd', [binary], { signal, pkg: 'libc-bin' });
  const libs: string[] = [];
  for (const line of stdout.toString().split('\n')) {
    const arrow = line.match(/=>\s*(\/\S+)/);
    const bare = line.match(/^\s*(\/\S+)\s+\(/);
    const p = arrow?.[1] ?? bare?.[1];
    if (p) libs.push(p);
  }
  if (libs.length === 0) throw new ToolError('ldd', `ldd listed no libraries for ${binary}`);
  return libs;
}

/** Reports whether `dir` holds a usable boot kit and whether the host's inputs changed since. */
export async function bootKitStatus(dir: string, opts: { signal?: AbortSignal } = {}): Promise<BootKitStatus> {
  const status: BootKitStatus = { dir, present: false, stale: true, reasons: [] };
  let manifest: BootKitManifest;
  try {
    manifest = JSON.parse(await readFile(join(dir, KIT_MANIFEST), 'utf8')) as BootKitManifest;
  } catch {
    status.reasons.push(`no ${KIT_MANIFEST} in ${dir}`);
    return status;
  }
  status.manifest = manifest;
  const kernelPath = join(dir, manifest.kernel);
  const initrdPath = join(dir, manifest.initrd);
  const haveFiles = (await stat(kernelPath).catch(() => undefined))?.isFile() && (await stat(initrdPath).catch(() => undefined))?.isFile();
  if (!haveFiles) {
    status.reasons.push(`kit files missing in ${dir}`);
    return status;
  }
  status.present = true;
  status.kernelPath = kernelPath;
  status.initrdPath = initrdPath;
  throwIfAborted(opts.signal);
  if (manifest.format !== KIT_FORMAT) status.reasons.push(`kit format ${manifest.format} is not ${KIT_FORMAT}`);
  if (manifest.inputs.scripts !== scriptsHash()) status.reasons.push('guest scripts changed');
  try {
    const host = await findHostKernel();
    if (host.version !== manifest.kernelVersion) status.reasons.push(`host kernel is now ${host.version}, kit has ${manifest.kernelVersion}`);
    else if ((await sha256File(host.vmlinuz)) !== manifest.inputs.kernel) status.reasons.push(`kernel ${host.vmlinuz} changed`);
  } catch (err) {
    status.reasons.push(`no host kernel: ${(err as Error).message}`);
  }
  const ga = await sha256File(QEMU_GA).catch(() => undefined);
  if (ga !== manifest.inputs.qemuGa) status.reasons.push(ga ? `${QEMU_GA} changed` : `${QEMU_GA} missing`);
  const bb = await sha256File(BUSYBOX).catch(() => undefined);
  if (bb !== manifest.inputs.busybox) status.reasons.push(bb ? `${BUSYBOX} changed` : `${BUSYBOX} missing`);
  status.stale = status.reasons.length > 0;
  return status;
}

/**
 * Builds the boot kit (kernel + initrd) from the host's distribution packages into `outDir`:
 * linux-image-amd64's kernel and modules, busybox-static, qemu-guest-agent and its libraries.
 * Files get content-named temp names in `outDir` and the manifest is renamed into place last,
 * so readers see the old kit or the new one, never a half-written one.
 */
export async function buildBootKit(outDir: string, opts: { signal?: AbortSignal } = {}): Promise<BootKitStatus> {
  const { signal } = opts;
  const host = await findHostKernel();
  await requireFile(BUSYBOX, 'busybox-static');
  await requireFile(QEMU_GA, 'qemu-guest-agent');
  // A dynamic busybox would need its own libraries; the static one runs anywhere.
  const bbInfo = await runCommand(BUSYBOX, ['--list'], { signal, pkg: 'busybox-static' });
  const applets = bbInfo.stdout.toString().split('\n').filter((a) => /^[\w.[\]-]+$/.test(a) && a !== 'busybox');
  const modules = await resolveModules(host.modulesDir);
  const libs = await sharedLibraries(QEMU_GA, signal);
  await mkdir(outDir, { recursive: true });

  const tag = randomBytes(6).toString('hex');
  const tmpInitrd = join(outDir, `.initrd-${tag}.tmp`);
  const tmpKernel = join(outDir, `.vmlinuz-${tag}.tmp`);
  const tmpManifest = join(outDir, `.kit-${tag}.tmp`);
  try {
    const gzip = createGzip({ level: 6 });
    const sink = createWriteStream(tmpInitrd, { mode: 0o644 });
    const done = pipeline(gzip, sink);
    const cpio = new CpioWriter(gzip);
    const dirs = new Set<string>();
    const ensureDir = async (d: string): Promise<void> => {
      if (d === '/' || d === '.' || dirs.has(d)) return;
      await ensureDir(dirname(d));
      dirs.add(d);
      await cpio.dir(d.slice(1));
    };
    const addFile = async (path: string, data: Buffer, perm: number): Promise<void> => {
      await ensureDir(dirname(path));
      await cpio.file(path.slice(1), data, perm);
    };
    for (const d of ['/bin', '/sbin', '/dev', '/proc', '/sys', '/tmp', '/run', '/var', '/sysroot', '/etc', '/lib/modules']) await ensureDir(d);
    await cpio.chardev('dev/console', 5, 1);
    await cpio.chardev('dev/null', 1, 3, 0o666);
    await addFile('/bin/busybox', await readFile(BUSYBOX), 0o755);
    for (const a of applets) await cpio.symlink(`bin/${a}`, 'busybox');
    await addFile('/init', Buffer.from(INIT_SCRIPT), 0o755);
    await addFile('/sbin/shutdown', Buffer.from(SHUTDOWN_SCRIPT), 0o755);
    for (const alias of ['poweroff', 'halt', 'reboot']) await cpio.symlink(`sbin/${alias}`, 'shutdown');
    const names: string[] = [];
    for (const m of modules) {
      throwIfAborted(signal);
      const name = `${m.name}.ko`;
      await addFile(`/lib/modules/${name}`, await readModule(join(host.modulesDir, m.relPath), signal), 0o644);
      names.push(name);
    }
    await addFile('/etc/bhatti-modules', Buffer.from(names.join('\n') + '\n'), 0o644);
    await addFile(QEMU_GA, await readFile(QEMU_GA), 0o755);
    // Libraries go in at the paths ldd printed (dereferenced), which is where the loader looks.
    for (const lib of libs) await addFile(lib, await readFile(lib), 0o755);
    await cpio.finish();
    gzip.end();
    await done;
    throwIfAborted(signal);
    await copyFile(host.vmlinuz, tmpKernel);
    await fsyncPath(tmpKernel);

    const initrdHash = await sha256File(tmpInitrd);
    const kernelHash = await sha256File(host.vmlinuz);
    const manifest: BootKitManifest = {
      format: KIT_FORMAT,
      kernelVersion: host.version,
      kernel: `vmlinuz-${host.version}-${kernelHash.slice(0, 12)}`,
      initrd: `initrd-${initrdHash.slice(0, 16)}.gz`,
      modules: names,
      inputs: { kernel: kernelHash, busybox: await sha256File(BUSYBOX), qemuGa: await sha256File(QEMU_GA), scripts: scriptsHash() },
      created: new Date().toISOString(),
    };
    await publishFile(tmpKernel, join(outDir, manifest.kernel));
    await publishFile(tmpInitrd, join(outDir, manifest.initrd));
    await writeFile(tmpManifest, JSON.stringify(manifest, null, 2) + '\n');
    await publishFile(tmpManifest, join(outDir, KIT_MANIFEST));
    // Old kits' files are dropped once the new manifest is the one readers find.
    for (const e of await readdir(outDir)) {
      if ((e.startsWith('vmlinuz-') || e.startsWith('initrd-')) && e !== manifest.kernel && e !== manifest.initrd) {
        await rm(join(outDir, e), { force: true });
      }
    }
  } finally {
    await Promise.all([tmpInitrd, tmpKernel, tmpManifest].map((p) => rm(p, { force: true })));
  }
  return bootKitStatus(outDir, { signal });
}

/** Returns the kit in `dir`, building it first when it is missing or stale. */
export async function ensureBootKit(dir: string, opts: { signal?: AbortSignal } = {}): Promise<BootKitStatus> {
  const status = await bootKitStatus(dir, opts);
  if (status.present && !status.stale) return status;
  const built = await buildBootKit(dir, opts);
  if (!built.present || built.stale) throw new ToolError('boot-kit', `boot kit in ${dir} unusable after build: ${built.reasons.join('; ')}`);
  return built;
}
