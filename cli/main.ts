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

const cli = new Cli({ binaryLabel: 'bhatti', binaryName: 'bhatti', binaryVersion: VERSION });
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

// Usage errors from clipanion exit 1, like every other mistake of the user's.
const code = await cli.run(process.argv.slice(2));
process.exitCode = code;
