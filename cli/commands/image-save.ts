import { Command, Option } from 'clipanion';
import { formatBytes } from '../format.js';
import { BhattiCommand, type RunContext } from './base.js';

export class ImageSaveCommand extends BhattiCommand {
  static override paths = [['image', 'save']];
  static override usage = Command.Usage({
    category: 'Images',
    description: "Save a sandbox's root filesystem as a new image (volumes are not included)",
    details: 'A running sandbox is copied consistently (filesystem frozen for the moment the copy starts) without stopping it. To keep the data of a volume, use `bhatti volume clone`.',
    examples: [['Capture a configured sandbox', '$0 image save build --name app-stack']],
  });
  sandbox = Option.String({ name: 'SANDBOX' });
  name = Option.String('--name', { required: true, description: 'Name of the new image' });
  force = Option.Boolean('--force', false, { description: 'Replace an image of the same name' });

  async run({ bhatti, user, signal }: RunContext): Promise<void> {
    const img = await bhatti.vms.saveImage(this.sandbox, { user, name: this.name, force: this.force, signal });
    if (this.json) return this.printJson(img);
    this.context.stdout.write(`Saved ${this.sandbox} as image ${img.name} (${formatBytes(img.size)})\n`);
  }
}
