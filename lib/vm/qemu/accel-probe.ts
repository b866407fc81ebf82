import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readFile, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { AbortedError } from '../../errors.js';
import { PROBE_MARKER } from '../kit/guest-scripts.js';

export type Accel = 'kvm' | 'tcg';

const CACHE_FILE = 'accel-probe.json';

/** Whether /dev/kvm exists and we may open it read-write (KVM's own precondition). */
export async function kvmDeviceUsable(): Promise<boolean> {
  try {
    const fh = await open('/dev/kvm', constants.O_RDWR);
    await fh.close();
    return true;
  } catch {
    return false;
  }
}

/**
 * Boots the kit kernel under KVM with an init that prints a marker and powers off. On some hosts
 * /dev/kvm opens yet a KVM guest hangs before init (nested virtualisation without the right
 * CPU features), so an open device proves nothing: only a guest that gets to userspace does.
 */
export async function probeKvm(
  qemuBinary: string,
  kernel: string,
  initrd: string,
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<boolean> {
  if (!(await kvmDeviceUsable())) return false;
  const args = [
    '-accel', 'kvm', '-machine', 'pc', '-m', '128', '-nographic', '-no-reboot', '-nic', 'none',
    '-kernel', kernel, '-initrd', initrd, '-append', 'console=ttyS0 quiet panic=-1 bhatti.probe=1',
  ];
  return new Promise<boolean>((resolve, reject) => {
    const child = spawn(qemuBinary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let settled = false;
    const finish = (ok: boolean | Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      if (ok instanceof Error) reject(ok);
      else resolve(ok);
    };
    const onAbort = (): void => finish(new AbortedError());
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => finish(false), opts.timeoutMs ?? 10_000);
    child.stdout.on('data', (c: Buffer) => {
      out = (out + c.toString('latin1')).slice(-4096);
      if (out.includes(PROBE_MARKER)) finish(true);
    });
    child.stderr.resume();
    child.on('error', () => finish(false));
    child.on('exit', () => finish(out.includes(PROBE_MARKER)));
  });
}

/** Probes once per (kernel, initrd, QEMU build) and remembers the answer in the kit dir. */
export async function detectAccel(
  kitDir: string,
  qemuBinary: string,
  qemuVersion: string,
  kernel: string,
  initrd: string,
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<Accel> {
  const key = createHash('sha256').update(`${qemuBinary}\0${qemuVersion}\0${kernel}\0${initrd}`).digest('hex');
  const cachePath = join(kitDir, CACHE_FILE);
  try {
    const cached = JSON.parse(await readFile(cachePath, 'utf8')) as { key: string; accel: Accel };
    if (cached.key === key && (cached.accel === 'kvm' || cached.accel === 'tcg')) return cached.accel;
  } catch {
    // no cache yet
  }
  const accel: Accel = (await probeKvm(qemuBinary, kernel, initrd, opts)) ? 'kvm' : 'tcg';
  const tmp = `${cachePath}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify({ key, accel, checkedAt: new Date().toISOString() }) + '\n');
  await rename(tmp, cachePath);
  return accel;
}
