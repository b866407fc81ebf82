import { readdirSync, readFileSync } from 'node:fs';

/** QEMU processes whose command line mentions `needle` (each test's sandbox dirs are unique). */
export function qemuProcessesMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
      if (cmd.includes('qemu-system') && cmd.includes(needle)) pids.push(Number(e));
    } catch {
      // gone
    }
  }
  return pids;
}
