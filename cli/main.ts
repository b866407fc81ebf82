import { Builtins, Cli } from 'clipanion';
import { VERSION } from '../lib/index.js';
import { ImageDeleteCommand } from './commands/image-delete.js';
import { ImageInspectCommand } from './commands/image-inspect.js';
import { ImageListCommand } from './commands/image-list.js';
import { ImagePruneCommand } from './commands/image-prune.js';
import { ImagePullCommand } from './commands/image-pull.js';
import { ImageSaveCommand } from './commands/image-save.js';
import { ExecCommand } from './commands/exec.js';
import { KitBuildCommand, KitStatusCommand } from './commands/kit.js';
import { CreateCommand, DestroyCommand, InspectCommand, ListCommand, StartCommand, StopCommand } from './commands/sandbox.js';
import { VolumeCloneCommand, VolumeCreateCommand, VolumeDeleteCommand, VolumeListCommand } from './commands/volume.js';

// Colours only for a terminal: piped output (logs, scripts) stays plain.
const colors = process.stdout.isTTY === true && !process.env.NO_COLOR;
const cli = new Cli({ binaryLabel: 'bhatti', binaryName: 'bhatti', binaryVersion: VERSION, enableColors: colors });
cli.register(Builtins.HelpCommand);
cli.register(Builtins.VersionCommand);
cli.register(ImagePullCommand);
cli.register(ImageListCommand);
cli.register(ImageInspectCommand);
cli.register(ImageDeleteCommand);
cli.register(ImagePruneCommand);
cli.register(ImageSaveCommand);
for (const c of [CreateCommand, ExecCommand, ListCommand, InspectCommand, StopCommand, StartCommand, DestroyCommand]) cli.register(c);
for (const c of [VolumeCreateCommand, VolumeListCommand, VolumeDeleteCommand, VolumeCloneCommand]) cli.register(c);
cli.register(KitBuildCommand);
cli.register(KitStatusCommand);

const argv = process.argv.slice(2);
let command;
try {
  command = cli.process(argv);
} catch (err) {
  // A usage error is the user's mistake like any other: one line on stderr (JSON with --json), exit 1.
  const lines = (err as Error).message
    .replace(/\u001b\[[0-9;]*m/g, '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  let message = lines[0] ?? 'invalid command line';
  // "did you mean one of:" is followed by numbered usage lines; keep just the command names.
  const suggestions = [...new Set(lines.map((l) => /^\d+\. (bhatti(?: [a-z]+)+)/.exec(l)?.[1]).filter(Boolean))];
  if (suggestions.length > 0) message += ` ${suggestions.join(', ')}`;
  if (argv[0] === 'exec' && !argv.includes('--') && /Unsupported option/.test(message)) {
    message += ' Put the command after --: bhatti exec NAME -- CMD [ARGS…]';
  }
  if (argv.includes('--json')) process.stderr.write(JSON.stringify({ error: { code: 'USAGE', message } }) + '\n');
  else process.stderr.write(`bhatti: ${message} (see bhatti --help)\n`);
  process.exit(1);
}
process.exitCode = await cli.run(command, {});
