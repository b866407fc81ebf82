import { spawn } from 'node:child_process';
import { AbortedError, ToolError } from '../errors.js';

export interface RunResult {
  stdout: Buffer;
  stderr: string;
}

/**
 * Runs a host tool to completion, collecting its (small) output. A missing binary becomes a
 * ToolError naming the Debian package that ships it; a non-zero exit a ToolError with stderr.
 */
export function runCommand(
  cmd: string,
  args: string[],
  opts: { signal?: AbortSignal; pkg?: string; timeoutMs?: number; okCodes?: number[] } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) return reject(new AbortedError());
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => {
      if (err.length < 64 * 1024) err += c.toString();
    });
    let aborted = false;
    let timedOut = false;
    const onAbort = (): void => {
      aborted = true;
      child.kill('SIGKILL');
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          child.kill('SIGKILL');
        }, opts.timeoutMs)
      : undefined;
    let spawnError: NodeJS.ErrnoException | undefined;
    child.on('error', (e) => (spawnError = e));
    child.on('close', (code) => {
      opts.signal?.removeEventListener('abort', onAbort);
      if (timer) clearTimeout(timer);
      if (aborted) return reject(new AbortedError());
      if (spawnError?.code === 'ENOENT') {
        return reject(new ToolError(cmd, `${cmd} not found${opts.pkg ? `; install ${opts.pkg}` : ''}`, { cause: spawnError }));
      }
      if (spawnError) return reject(new ToolError(cmd, `could not run ${cmd}: ${spawnError.message}`, { cause: spawnError }));
      if (timedOut) return reject(new ToolError(cmd, `${cmd} ${args.join(' ')} timed out after ${opts.timeoutMs} ms`));
      if (code !== 0 && !(opts.okCodes ?? []).includes(code ?? -1)) {
        const detail = err.trim().split('\n').slice(-3).join(' | ');
        return reject(new ToolError(cmd, `${cmd} ${args.join(' ')} exited with ${code}: ${detail}`));
      }
      resolve({ stdout: Buffer.concat(out), stderr: err });
    });
  });
}
