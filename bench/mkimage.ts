/** Builds a bootable-enough ext4 image of a given size with third-party tools (busybox-static, mke2fs -d). */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, copyFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';

export async function mke2fsImage(tmp: string, megabytes: number): Promise<string> {
  mkdirSync(tmp, { recursive: true });
  const dir = mkdtempSync(join(tmp, 'mkimage-'));
  const root = join(dir, 'root');
  mkdirSync(join(root, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', join(root, 'bin', 'busybox'));
  chmodSync(join(root, 'bin', 'busybox'), 0o755);
  for (const a of ['sh', 'true', 'sleep', 'echo', 'cat']) symlinkSync('busybox', join(root, 'bin', a));
  // Content fills ~60 % of the filesystem, so the bigger image really holds more data.
  execFileSync('sh', ['-c', `head -c ${Math.floor(megabytes * 0.6)}M /dev/urandom > ${join(root, 'data.bin')}`]);
  const out = join(dir, 'image.ext4');
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', root, out, `${megabytes}M`]);
  rmSync(root, { recursive: true, force: true });
  return out;
}
