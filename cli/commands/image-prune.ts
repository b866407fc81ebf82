import { Command } from 'clipanion';
import { formatBytes } from '../format.js';
import { BhattiCommand, type RunContext } from './base.js';

export class ImagePruneCommand extends BhattiCommand {
  static override paths = [['image', 'prune']];
  static override usage = Command.Usage({
    category: 'Images',
    description: 'Remove cached layer blobs that no image uses any more',
  });

  async run({ bhatti, signal }: RunContext): Promise<void> {
    const r = await bhatti.images.pruneBlobs({ signal });
    if (this.json) return this.printJson(r);
    this.context.stdout.write(`Removed ${r.blobs} blob(s), ${formatBytes(r.bytes)}\n`);
  }
}
