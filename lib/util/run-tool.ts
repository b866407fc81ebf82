/** Runs a host tool as a child process that dies with the caller's AbortSignal. */
import { spawn, type ChildProcess } from 'node:child_process';
import { AbortedError, ToolError } from '../errors.js';

export interface ToolRun {
  child: ChildProcess;
  /** Settles when the process has exited; rejects with ToolError/AbortedError. */
  done: Promise<{ stderr: string }>;
}

/**
 * Starts `cmd args`. `failure(code, stderr)` turns a non-zero exit into the error to throw
 * (e.g. DiskFullError); stderr keeps only its last few KiB.
 */
export function runTool(
  cmd: string,
  args: string[],
  opts: {
    signal?: AbortSignal;
    stdin?: 'pipe' | 'ignore';
    cwd?: string;
    /** Debian package that provides the tool, for the "install it" hint. */
    pkg: string;
    failure: (code: number | null, stderr: string) => Error;
  },
): ToolRun {
  const child = spawn(cmd, args, { stdio: [opts.stdin ?? 'ignore', 'ignore', 'pipe'], cwd: opts.cwd });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4096);
  });
  const onAbort = (): void => {
    child.kill('SIGKILL');
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) onAbort();
  const done = new Promise<{ stderr: string }>((resolve, reject) => {
    let spawnError: NodeJS.ErrnoException | undefined;
    child.once('error', (err: NodeJS.ErrnoException) => {
      spawnError = err;
    });
    child.once('close', (code) => {
      opts.signal?.removeEventListener('abort', onAbort);
      if (spawnError?.code === 'ENOENT') {
        reject(new ToolError(cmd, `${cmd} is not installed; install the Debian package "${opts.pkg}"`, { kind: 'user' }));
      } else if (opts.signal?.aborted) reject(new AbortedError());
      else if (spawnError) reject(new ToolError(cmd, `could not run ${cmd}: ${spawnError.message}`, { cause: spawnError }));
      else if (code !== 0) reject(opts.failure(code, stderr.trim()));
      else resolve({ stderr });
    });
  });
  // Callers may observe `done` late (after feeding stdin); avoid an unhandled rejection meanwhile.
  done.catch(() => undefined);
  return { child, done };
}

/** The last non-empty line of a tool's stderr, for one-line messages. */
export function lastLine(stderr: string): string {
  return (
    stderr
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .pop() ?? ''
  );
}
