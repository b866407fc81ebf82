import { Command, Option } from 'clipanion';
import { fstatSync } from 'node:fs';
import { buffer } from 'node:stream/consumers';
import { InvalidArgumentError } from '../../lib/index.js';
import { BhattiCommand, type RunContext } from './base.js';
import { intFlag } from './sandbox.js';

/** Whether stdin is data someone piped or redirected in (not a terminal, not /dev/null). */
function stdinIsData(): boolean {
  try {
    const st = fstatSync(0);
    return st.isFIFO() || st.isFile() || st.isSocket();
  } catch {
    return false;
  }
}

export class ExecCommand extends BhattiCommand {
  static override paths = [['exec']];
  static override usage = Command.Usage({
    category: 'Sandboxes',
    description: 'Run a command in a running sandbox',
    details: `
      Put the command after \`--\`. Output is streamed as it arrives (with --json it is collected into the JSON instead); the command's exit code becomes bhatti's exit code (124 on --timeout, 128+N when killed by signal N).
      A bare command name is looked up on the image's PATH (or the one given with --env PATH=…).
      Piped stdin is passed to the command (qemu-ga takes it in one piece, so it is read fully first).
    `,
    examples: [
      ['Run a shell snippet', "$0 exec build -- sh -c 'echo hi; exit 3'"],
      ['As another user in another directory', '$0 exec build --user 1000 --cwd /tmp --env DEBUG=1 -- ls -la'],
    ],
  });

  name = Option.String({ name: 'SANDBOX' });
  argv = Option.Rest({ name: 'COMMAND', required: 1 });
  env = Option.Array('--env,-e', [], { description: 'Set an environment variable K=V (repeatable)' });
  cwd = Option.String('--cwd,-w', { description: 'Working directory inside the sandbox' });
  execUser = Option.String('--user,-u', { description: 'User to run as: uid, uid:gid or a name from the image' });
  timeout = Option.String('--timeout', { description: 'Kill the command after this many seconds' });

  /** bhatti's own failures in exec use 125 (as `docker run` does), apart from the command's codes. */
  override errorExitCode(): number | undefined {
    return 125;
  }

  async run({ bhatti, user, signal: interrupt }: RunContext): Promise<number> {
    // A reader that goes away (`| head`) ends the command like SIGPIPE would, quietly.
    const local = new AbortController();
    let pipeClosed = false;
    const onPipeError = (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') throw e;
      pipeClosed = true;
      local.abort();
    };
    process.stdout.on('error', onPipeError);
    process.stderr.on('error', onPipeError);
    const signal = AbortSignal.any([interrupt, local.signal]);
    for (const e of this.env) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(e)) throw new InvalidArgumentError(`invalid --env "${e}": expected KEY=VALUE`);
    }
    const stdin = stdinIsData() ? await buffer(process.stdin) : undefined;
    const timeoutMs = this.timeout === undefined ? undefined : intFlag('--timeout', this.timeout) * 1000;
    // With --json the command's output goes into the JSON document instead of being streamed.
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let r;
    try {
      r = await bhatti.vms.exec(this.name, this.argv, {
      user,
      env: this.env,
      cwd: this.cwd,
      runAs: this.execUser,
      stdin,
      timeoutMs,
      signal,
      onStdout: (c) => (this.json ? out.push(c) : process.stdout.write(c)),
      onStderr: (c) => (this.json ? err.push(c) : process.stderr.write(c)),
      });
    } catch (e) {
      if (pipeClosed) return 128 + 13;
      throw e;
    }
    if (this.json) {
      this.printJson({ ...r, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    }
    if (r.timedOut) {
      this.context.stderr.write(`bhatti: command timed out after ${this.timeout} s\n`);
      return 124;
    }
    if (r.signal) return 128 + r.signal;
    return r.exitCode;
  }
}
