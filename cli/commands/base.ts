import { Command, Option } from 'clipanion';
import { userInfo } from 'node:os';
import { Bhatti, BhattiError, toBhattiError, type BhattiOptions } from '../../lib/index.js';
import { sanitize } from '../format.js';

export interface RunContext {
  bhatti: Bhatti;
  /** The local user the CLI acts for; images it creates are private to them. */
  user: string;
  /** Aborted on Ctrl+C (first press); a second press exits at once. */
  signal: AbortSignal;
}

/** Exit codes: 0 ok, 1 the user's error (bad input), 2 ours (internal), 130 interrupted. */
export const EXIT = { ok: 0, user: 1, internal: 2, interrupted: 130 } as const;

/** Shared flags and the one place errors turn into messages and exit codes. */
export abstract class BhattiCommand extends Command {
  dataDir = Option.String('--data-dir', {
    description: 'Data directory (default: $BHATTI_DATA_DIR, else /var/lib/bhatti as root, else ~/.local/share/bhatti)',
  });
  json = Option.Boolean('--json', false, { description: 'Print machine-readable JSON' });

  abstract run(ctx: RunContext): Promise<number | void>;

  /** Exit code for bhatti's own failures, where a command needs one apart from 1/2 (exec). */
  errorExitCode(): number | undefined {
    return undefined;
  }

  /** Extra options for opening the store (commands that boot VMs add the accelerator). */
  openOptions(): Partial<BhattiOptions> {
    return {};
  }

  printJson(value: unknown): void {
    this.context.stdout.write(JSON.stringify(value, null, 2) + '\n');
  }

  async execute(): Promise<number> {
    const controller = new AbortController();
    let interrupts = 0;
    const onSigint = () => {
      interrupts++;
      if (interrupts > 1) process.exit(EXIT.interrupted);
      controller.abort();
    };
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigint);
    let bhatti: Bhatti | undefined;
    try {
      bhatti = await Bhatti.open({ dataDir: this.dataDir, ...this.openOptions() });
      const code = await this.run({ bhatti, user: userInfo().username, signal: controller.signal });
      return code ?? EXIT.ok;
    } catch (err) {
      const e = toBhattiError(err);
      if (this.json) {
        this.context.stderr.write(JSON.stringify({ error: { code: e.code, message: e.message } }) + '\n');
      } else {
        this.context.stderr.write(`bhatti: ${e.code === 'ABORTED' ? 'interrupted' : sanitize(e.message)}\n`);
      }
      if (e.code === 'ABORTED') return EXIT.interrupted;
      return this.errorExitCode() ?? (e instanceof BhattiError && e.kind === 'user' ? EXIT.user : EXIT.internal);
    } finally {
      await bhatti?.close().catch(() => undefined);
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigint);
    }
  }
}
