import { readFileSync } from 'node:fs';

/** Fields of /proc/PID/stat after the command name (which may itself hold spaces and parens). */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Process start time in clock ticks since boot (field 22), the stable half of a pid's identity. */
export function processStartTime(pid: number): string | undefined {
  return statFields(pid)?.[19];
}

/** Whether `pid` exists and is not a zombie. */
export function processAlive(pid: number): boolean {
  const f = statFields(pid);
  return f !== undefined && f[0] !== 'Z' && f[0] !== 'X';
}

export function processCmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

export function signalProcess(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until `pid` (with that start time) is gone; false on timeout. */
export async function waitForExit(pid: number, startTime: string | undefined, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!processAlive(pid) || (startTime !== undefined && processStartTime(pid) !== startTime)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function terminate(pid: number, startTime: string | undefined, graceMs: number): Promise<void> {
  if (startTime !== undefined && processStartTime(pid) !== startTime) return;
  signalProcess(pid, 'SIGTERM');
  if (await waitForExit(pid, startTime, graceMs)) return;
  signalProcess(pid, 'SIGKILL');
  await waitForExit(pid, startTime, 10_000);
}
