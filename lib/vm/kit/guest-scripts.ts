/**
 * The shell scripts baked into the initrd. The guest's root image is never modified: init
 * mounts it at /sysroot and stays in the initrd's root, so exec reaches the image through
 * `chroot /sysroot` and the initrd's busybox stays available at /proc/1/root/bin/busybox.
 */

/** Printed by init when the kernel command line asks for a probe boot (KVM detection). */
export const PROBE_MARKER = 'BHATTI-PROBE-OK';
/** Port name qemu-ga listens on; QEMU's virtserialport uses the same name. */
export const AGENT_PORT_NAME = 'org.qemu.guest_agent.0';
/** virtio-blk serial of the root disk; volumes are `vol0`, `vol1`, … */
export const ROOT_SERIAL = 'root';

export const INIT_SCRIPT = `#!/bin/busybox sh
# bhatti boot kit init (PID 1). Stays PID 1 for the VM's lifetime: if it exited, the kernel would panic.
export PATH=/bin
fail() {
  echo "bhatti: $*"
  sync
  poweroff -f
  while :; do sleep 3600; done
}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /run/qga /var/run /sysroot

case " $(cat /proc/cmdline) " in
  *" bhatti.probe=1 "*) echo "${PROBE_MARKER}"; poweroff -f ;;
esac

while read -r m; do
  insmod "/lib/modules/$m" || fail "insmod $m failed"
done < /etc/bhatti-modules

# Disks are found by their virtio serial, not by probe order.
find_disk() {
  i=0
  while [ $i -lt 100 ]; do
    for b in /sys/block/vd*; do
      [ -e "$b/serial" ] || continue
      if [ "$(cat "$b/serial")" = "$1" ]; then echo "/dev/\${b##*/}"; return 0; fi
    done
    sleep 0.05
    i=$((i + 1))
  done
  return 1
}

root=$(find_disk ${ROOT_SERIAL}) || fail "no root disk (virtio serial ${ROOT_SERIAL})"
mount -t ext4 -o rw "$root" /sysroot || fail "cannot mount the root filesystem $root as ext4"

: > /run/bhatti-volumes
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    bhatti.vol=*) ;;
    *) continue ;;
  esac
  v=\${arg#bhatti.vol=}
  serial=\${v%%:*}
  rest=\${v#*:}
  mode=\${rest%%:*}
  hex=\${rest#*:}
  case "$mode" in rw|ro) ;; *) fail "bad volume mode $mode" ;; esac
  # The path travels hex-encoded so no byte of it is ever parsed by the kernel or this shell.
  path=$(echo "$hex" | xxd -r -p)
  dev=$(find_disk "$serial") || fail "no volume disk (virtio serial $serial)"
  mkdir -p "/sysroot$path" || fail "cannot create mount point $path"
  # A symlink in the image must not move the mount outside the sandbox's root.
  real=$(realpath "/sysroot$path")
  case "$real" in
    /sysroot/*) ;;
    *) fail "volume mount point $path resolves outside the sandbox root" ;;
  esac
  if [ "$mode" = ro ]; then
    # noload: a read-only disk with an unreplayed journal cannot be recovered, only read.
    mount -t ext4 -o ro "$dev" "$real" 2>/dev/null || mount -t ext4 -o ro,noload "$dev" "$real" || fail "cannot mount volume $path"
  else
    mount -t ext4 -o rw "$dev" "$real" || fail "cannot mount volume $path"
  fi
  echo "$real" >> /run/bhatti-volumes
done

for d in proc sys dev; do
  mkdir -p "/sysroot/$d"
  mount --bind "/$d" "/sysroot/$d" || fail "cannot bind /$d into the sandbox"
done

port=
i=0
while [ -z "$port" ] && [ $i -lt 200 ]; do
  for p in /sys/class/virtio-ports/*; do
    [ -e "$p/name" ] || continue
    if [ "$(cat "$p/name")" = ${AGENT_PORT_NAME} ] && [ -c "/dev/\${p##*/}" ]; then port="/dev/\${p##*/}"; fi
  done
  [ -n "$port" ] || sleep 0.05
  i=$((i + 1))
done
[ -n "$port" ] || fail "no virtio port named ${AGENT_PORT_NAME}"

echo "bhatti: agent on $port"
# Supervise the agent: a crash must not leave the sandbox unreachable.
while [ ! -e /run/bhatti-shutdown ]; do
  /usr/sbin/qemu-ga -m virtio-serial -p "$port" -t /run/qga
  [ -e /run/bhatti-shutdown ] || { echo "bhatti: qemu-ga exited, restarting"; sleep 1; }
done
while :; do sleep 3600; done
`;

/**
 * /sbin/shutdown (also poweroff, halt, reboot): qemu-ga 7.2 runs
 * `/sbin/shutdown -h -P +0 "hypervisor initiated shutdown"` (or `-r`) for guest-shutdown.
 * Stops every process, unmounts volumes and binds, leaves the root read-only, then powers off;
 * QEMU runs with -no-reboot so a reboot ends it too.
 */
export const SHUTDOWN_SCRIPT = `#!/bin/busybox sh
export PATH=/bin
touch /run/bhatti-shutdown
kill -TERM -1 2>/dev/null
sleep 0.3
kill -KILL -1 2>/dev/null
sleep 0.1
sync
unmount() {
  n=0
  while [ $n -lt 10 ]; do
    umount "$1" 2>/dev/null && return 0
    sleep 0.1
    n=$((n + 1))
  done
  mount -o remount,ro "$1" 2>/dev/null
}
if [ -f /run/bhatti-volumes ]; then
  tac /run/bhatti-volumes | while read -r m; do unmount "$m"; done
fi
for d in dev sys proc; do umount "/sysroot/$d" 2>/dev/null; done
mount -o remount,ro /sysroot || echo "bhatti: could not remount the root read-only"
sync
mode=poweroff
for a in "$0" "$@"; do
  case "$a" in -r|*/reboot|reboot) mode=reboot ;; esac
done
$mode -f
`;
