import { join } from 'node:path';
import { InvalidArgumentError } from '../../errors.js';
import type { SandboxSpec } from '../engine.js';
import { AGENT_PORT_NAME, ROOT_SERIAL } from '../kit/guest-scripts.js';

/** Files QEMU keeps in a sandbox's dir. */
export function sandboxPaths(dir: string) {
  return {
    overlay: join(dir, 'rootfs.qcow2'),
    agentSocket: join(dir, 'qga.sock'),
    controlSocket: join(dir, 'qmp.sock'),
    pidFile: join(dir, 'qemu.pid'),
    consoleLog: join(dir, 'console.log'),
  };
}

/** QEMU's option parser splits on commas; a literal comma is written twice. */
const q = (value: string): string => value.replace(/,/g, ',,');

// sun_path holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH = 107;

/** Linux refuses longer kernel command lines (x86 COMMAND_LINE_SIZE is 2048). */
const MAX_CMDLINE = 2000;

/** Refuses sandbox dirs whose sockets Linux could not bind (a long data dir path). */
export function checkSocketPaths(dir: string): void {
  const p = sandboxPaths(dir);
  for (const s of [p.agentSocket, p.controlSocket]) {
    const len = Buffer.byteLength(s);
    if (len > MAX_SOCKET_PATH) {
      throw new InvalidArgumentError(
        `data dir path too long: sandbox socket ${s} is ${len} bytes, Linux allows ${MAX_SOCKET_PATH}; use a data dir path at least ${len - MAX_SOCKET_PATH} characters shorter`,
      );
    }
  }
}

export function buildQemuArgs(
  spec: SandboxSpec,
  kit: { kernel: string; initrd: string },
  accel: 'kvm' | 'tcg',
): string[] {
  const p = sandboxPaths(spec.dir);
  checkSocketPaths(spec.dir);
  const append = ['console=ttyS0', 'quiet', 'panic=-1'];
  const args = [
    '-name', `bhatti-${spec.id}`,
    '-machine', 'pc',
    '-accel', accel,
    '-smp', String(spec.cpus),
    '-m', `${spec.memoryMiB}M`,
    '-nographic', '-no-reboot', '-nic', 'none',
    '-kernel', kit.kernel,
    '-initrd', kit.initrd,
    '-drive', `id=root,file=${q(p.overlay)},format=qcow2,if=none,cache=writeback`,
    '-device', `virtio-blk-pci,drive=root,serial=${ROOT_SERIAL}`,
  ];
  const volumeArgs: { path: string; arg: string }[] = [];
  spec.volumes.forEach((v, i) => {
    const serial = `vol${i}`;
    if (!v.mountPath.startsWith('/') || v.mountPath.includes('\0')) {
      throw new InvalidArgumentError(`volume mount path "${v.mountPath}" must be absolute`);
    }
    args.push(
      '-drive', `id=${serial},file=${q(v.file)},format=raw,if=none${v.readOnly ? ',readonly=on' : ''}`,
      '-device', `virtio-blk-pci,drive=${serial},serial=${serial}`,
    );
    // Hex keeps every byte of the path away from the kernel's and the init script's parsers.
    volumeArgs.push({ path: v.mountPath, arg: `bhatti.vol=${serial}:${v.readOnly ? 'ro' : 'rw'}:${Buffer.from(v.mountPath).toString('hex')}` });
  });
  // Parents before children, so /a/b is mounted on top of the volume at /a, not under it.
  const depth = (path: string): number => path.split('/').filter(Boolean).length;
  volumeArgs.sort((a, b) => depth(a.path) - depth(b.path));
  append.push(...volumeArgs.map((v) => v.arg));
  const cmdline = append.join(' ');
  if (cmdline.length > MAX_CMDLINE) {
    throw new InvalidArgumentError(`too many or too long volume mount paths: kernel command line would be ${cmdline.length} bytes`);
  }
  args.push(
    '-append', cmdline,
    '-chardev', `socket,id=qga0,path=${q(p.agentSocket)},server=on,wait=off`,
    '-device', 'virtio-serial-pci',
    '-device', `virtserialport,chardev=qga0,name=${AGENT_PORT_NAME}`,
    '-qmp', `unix:${q(p.controlSocket)},server=on,wait=off`,
    '-pidfile', p.pidFile,
  );
  return args;
}
