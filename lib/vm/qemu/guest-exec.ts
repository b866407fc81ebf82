import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { AbortedError, AgentError, InvalidArgumentError } from '../../errors.js';
import type { QgaClient } from '../agent/qga-client.js';
import type { ExecRequest, ExecResult, SandboxSpec } from '../engine.js';

/**
 * Runs inside the image (after chroot) in the initrd's busybox shell. A bare command name is
 * looked up on the image's PATH here, so the image's own `sh`, `ls`, `tar` run rather than the
 * busybox applets of the same name (busybox prefers its applets for bare names).
 */
const INNER = [
  'cwd=$1; uid=$2; gid=$3; shift 3',
  'c=$1; shift',
  '[ -d "$cwd" ] || { echo "cannot change to directory $cwd: no such directory" >&2; exit 126; }',
  'case "$c" in',
  '  */*) ;;',
  '  *) set -f; IFS=:; found=',
  '     for d in $PATH; do [ -n "$d" ] || d=.; if [ -f "$d/$c" ] && [ -x "$d/$c" ]; then found=$d/$c; break; fi; done',
  '     unset IFS; set +f',
  '     [ -n "$found" ] || { echo "$c: command not found" >&2; exit 127; }',
  '     c=$found ;;',
  'esac',
  'exec /proc/1/root/bin/busybox nsenter -w"$cwd" -S "$uid" -G "$gid" -- "$c" "$@"',
].join('\n');

/**
 * Runs in the initrd (not the image): points stdio at files in the initrd's /tmp, unlinks them
 * (the agent already holds them open for reading), starts a new session so a timeout can kill
 * the whole process group, enters the image with chroot and, from inside it, uses the initrd's
 * busybox (reached through /proc/1/root) to chdir and drop privileges. argv travels as
 * positional parameters, never through a shell string.
 */
const WRAPPER = [
  'o=$1; e=$2; i=$3; cwd=$4; uid=$5; gid=$6; inner=$7; shift 7',
  'exec >>"$o" 2>>"$e" <"$i" || exit 125',
  // Bare `rm`: this busybox's shell runs applets in a fork without an exec, which is cheaper.
  'rm -f "$o" "$e"',
  '[ "$i" = /dev/null ] || rm -f "$i"',
  'exec /bin/busybox setsid /bin/busybox chroot /sysroot /proc/1/root/bin/busybox sh -c "$inner" sh "$cwd" "$uid" "$gid" "$@"',
].join('\n');



const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const READ_CHUNK = 1 << 20;
const WRITE_CHUNK = 192 * 1024;

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

function parseTable(text: string): string[][] {
  return text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(':'));
}

async function readGuestFile(client: QgaClient, path: string, signal?: AbortSignal): Promise<string> {
  let handle: number;
  try {
    handle = await client.fileOpen(path, 'r', { signal });
  } catch {
    return '';
  }
  try {
    const parts: Buffer[] = [];
    for (let total = 0; total < 4 << 20; ) {
      const r = await client.fileRead(handle, READ_CHUNK, { signal });
      parts.push(r.data);
      total += r.count;
      if (r.eof || r.count === 0) break;
    }
    return Buffer.concat(parts).toString('utf8');
  } finally {
    await client.fileClose(handle).catch(() => undefined);
  }
}

/** Resolves `uid`, `uid:gid`, `name` or `name:group` against the image's /etc/passwd and /etc/group. */
export async function resolveUser(
  client: QgaClient,
  user: string,
  signal?: AbortSignal,
): Promise<{ uid: number; gid: number; home: string }> {
  const spec = user.trim() || 'root';
  if (spec.split(':').length > 2) throw new InvalidArgumentError(`invalid user "${spec}": expected uid, uid:gid, name or name:group`);
  const [u, g] = spec.split(':', 2) as [string, string | undefined];
  const numeric = (s: string): boolean => /^\d+$/.test(s);
  if (spec === 'root' || spec === '0' || spec === '0:0') return { uid: 0, gid: 0, home: '/root' };
  const passwd: PasswdEntry[] = parseTable(await readGuestFile(client, '/sysroot/etc/passwd', signal))
    .filter((f) => f.length >= 6)
    .map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]! }));
  let entry: PasswdEntry | undefined;
  let uid: number;
  if (numeric(u)) {
    uid = Number(u);
    entry = passwd.find((p) => p.uid === uid);
  } else {
    entry = passwd.find((p) => p.name === u);
    if (!entry) throw new InvalidArgumentError(`user "${u}" not found in the sandbox's /etc/passwd`);
    uid = entry.uid;
  }
  let gid = entry?.gid ?? 0;
  if (g !== undefined && g !== '') {
    if (numeric(g)) gid = Number(g);
    else {
      const grp = parseTable(await readGuestFile(client, '/sysroot/etc/group', signal)).find((f) => f[0] === g);
      if (!grp) throw new InvalidArgumentError(`group "${g}" not found in the sandbox's /etc/group`);
      gid = Number(grp[2]);
    }
  }
  if (uid > 0xfffffffe || gid > 0xfffffffe) throw new InvalidArgumentError(`user "${spec}" is out of range`);
  return { uid, gid, home: entry?.home || '/' };
}

/** `K=V` lists merged by key, later entries winning; keeps first-seen order. */
export function mergeEnv(...lists: (string[] | undefined)[]): string[] {
  const map = new Map<string, string>();
  for (const list of lists) {
    for (const kv of list ?? []) {
      const eq = kv.indexOf('=');
      if (eq <= 0) throw new InvalidArgumentError(`environment entry "${kv}" is not KEY=VALUE`);
      map.set(kv.slice(0, eq), kv);
    }
  }
  return [...map.values()];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Commands the agent refuses while a filesystem is frozen (saveRootfs); they are retried. */
const isFrozenRefusal = (err: unknown): boolean => err instanceof AgentError && /frozen/i.test(err.message);

async function retryFrozen<T>(fn: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (!isFrozenRefusal(err) || i > 200) throw err;
      await sleep(50);
    }
  }
}

/** Streams a guest file written by the command, following it as it grows. */
class Follower {
  private pos = 0;
  private atEof = false;
  constructor(
    private readonly lease: AgentLease,
    readonly handle: number,
    private readonly sink?: (chunk: Buffer) => void,
  ) {}

  async pump(): Promise<void> {
    // The agent reads with stdio, whose EOF is sticky: a seek clears it so appended bytes show.
    if (this.atEof) await retryFrozen(() => this.lease.client.fileSeek(this.handle, this.pos, 0));
    for (;;) {
      const r = await retryFrozen(() => this.lease.client.fileRead(this.handle, READ_CHUNK));
      this.pos += r.count;
      if (r.count > 0) this.sink?.(r.data);
      this.atEof = r.eof;
      if (r.eof || r.count < READ_CHUNK) return;
    }
  }
}

async function writeStdin(client: QgaClient, path: string, stdin: Readable | Buffer, signal?: AbortSignal): Promise<void> {
  const handle = await client.fileOpen(path, 'w', { signal });
  try {
    const source = Buffer.isBuffer(stdin) ? Readable.from([stdin]) : stdin;
    let pending: Buffer[] = [];
    let size = 0;
    const flush = async (): Promise<void> => {
      if (size === 0) return;
      const data = Buffer.concat(pending);
      pending = [];
      size = 0;
      for (let off = 0; off < data.length; off += WRITE_CHUNK) {
        await client.fileWrite(handle, data.subarray(off, off + WRITE_CHUNK), { signal });
      }
    };
    for await (const chunk of source) {
      const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
      pending.push(b);
      size += b.length;
      if (size >= WRITE_CHUNK) await flush();
    }
    await flush();
  } finally {
    await client.fileClose(handle).catch(() => undefined);
  }
}

/**
 * The agent connection an exec works through. qemu-ga serves one client at a time, so a
 * long-running exec lets go of it between polls (`pause`/`resume`) and other processes
 * (another `bhatti exec`, `stop`, `image save`) get their turn.
 */
export interface AgentLease {
  readonly client: QgaClient;
  pause(): void;
  resume(signal?: AbortSignal): Promise<void>;
}

/**
 * Runs `req.argv` inside the sandbox's image through qemu-ga. qemu-ga 7.2 only returns captured
 * output once the process has exited, so output goes to files in the initrd's /tmp (never in
 * the image) which are read as they grow while the process runs. Stdin is staged the same way
 * before the command starts.
 */
export async function guestExec(lease: AgentLease, spec: SandboxSpec, req: ExecRequest): Promise<ExecResult> {
  const { signal } = req;
  if (req.argv.length === 0 || req.argv[0] === '') throw new InvalidArgumentError('exec needs a command (argv is empty)');
  if (signal?.aborted) throw new AbortedError();
  const user = await resolveUser(lease.client, req.user ?? spec.user ?? '', signal);
  let env = mergeEnv(spec.env, req.env);
  if (!env.some((e) => e.startsWith('PATH='))) env = [DEFAULT_PATH, ...env];
  if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${user.home}`);
  const cwd = req.cwd || spec.workingDir || '/';
  if (!cwd.startsWith('/')) throw new InvalidArgumentError(`working directory "${cwd}" must be absolute`);

  const id = randomBytes(8).toString('hex');
  const outPath = `/tmp/bhatti-${id}.out`;
  const errPath = `/tmp/bhatti-${id}.err`;
  const inPath = req.stdin ? `/tmp/bhatti-${id}.in` : '/dev/null';
  const handles: number[] = [];
  let started = false;
  try {
    // Requests are pipelined where order does not matter: each agent round trip costs ~10 ms under TCG.
    const opened = await Promise.allSettled([lease.client.fileOpen(outPath, 'w+', { signal }), lease.client.fileOpen(errPath, 'w+', { signal })]);
    for (const o of opened) if (o.status === 'fulfilled') handles.push(o.value);
    for (const o of opened) if (o.status === 'rejected') throw o.reason;
    const [outH, errH] = handles as [number, number];
    if (req.stdin) await writeStdin(lease.client, inPath, req.stdin, signal);
    const out = new Follower(lease, outH, req.onStdout);
    const err = new Follower(lease, errH, req.onStderr);

    const pid = await lease.client.exec(
      {
        path: '/bin/busybox',
        arg: ['sh', '-c', WRAPPER, 'bhatti-exec', outPath, errPath, inPath, cwd, String(user.uid), String(user.gid), INNER, ...req.argv],
        env,
      },
      { signal },
    );
    started = true;

    let timedOut = false;
    let aborted = false;
    let killSent = false;
    const kill = async (): Promise<void> => {
      if (killSent) return;
      killSent = true;
      // The command leads its own session (setsid), so the negative pid reaches its children too.
      await lease.client.exec({ path: '/bin/busybox', arg: ['kill', '-KILL', `-${pid}`] }).catch(() => undefined);
    };
    const timer = req.timeoutMs && req.timeoutMs > 0 ? setTimeout(() => (timedOut = true), req.timeoutMs) : undefined;
    const onAbort = (): void => {
      aborted = true;
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      // Status polls are cheap (a few ms); reads cost more, so output is fetched every
      // ~100 ms while the command runs and once more when it has exited.
      const t0 = Date.now();
      let lastPump = t0;
      for (;;) {
        if ((timedOut || aborted) && !killSent) await kill();
        const st = await retryFrozen(() => lease.client.execStatus(pid));
        if (st.exited || Date.now() - lastPump >= 100) {
          // Read after the status: once it says exited, these reads see the complete output.
          await Promise.all([out.pump(), err.pump()]);
          lastPump = Date.now();
        }
        if (st.exited) {
          if (aborted) throw new AbortedError();
          const sig = st.signal;
          return {
            exitCode: st.exitcode ?? (sig !== undefined ? 128 + sig : -1),
            ...(sig !== undefined ? { signal: sig } : {}),
            timedOut,
          };
        }
        if (Date.now() - t0 < 1000) {
          await sleep(5);
        } else {
          // A long command: let other clients of this agent in while we wait.
          lease.pause();
          await sleep(50);
          await lease.resume();
        }
      }
    } finally {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  } finally {
    await lease.resume().catch(() => undefined);
    await Promise.all(handles.map((h) => lease.client.fileClose(h).catch(() => undefined)));
    // Once started, the wrapper unlinked the files itself; before that they are ours to remove.
    if (!started && !lease.client.closed) {
      await lease.client.exec({ path: '/bin/busybox', arg: ['rm', '-f', outPath, errPath, ...(req.stdin ? [inPath] : [])] }).catch(() => undefined);
    }
  }
}
