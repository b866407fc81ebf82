import { Command, Option } from 'clipanion';
import { formatBytes, sanitize, shortDigest } from '../format.js';
import { attachPullProgress } from '../progress.js';
import { BhattiCommand, type RunContext } from './base.js';

export class ImagePullCommand extends BhattiCommand {
  static override paths = [['image', 'pull']];
  static override usage = Command.Usage({
    category: 'Images',
    description: 'Pull an image from an OCI registry and convert it to an ext4 root filesystem',
    details: `
      Any OCI or Docker registry works; references are normalised as docker does (\`python:3.12\` is \`docker.io/library/python:3.12\`).
      Layers already in the local blob cache are not downloaded again, and pulling a name whose remote digest is unchanged does nothing.
      Plain HTTP is used only for loopback registries, or with \`--insecure\`.
    `,
    examples: [
      ['Pull from Docker Hub', '$0 image pull python:3.12'],
      ['Pull from a local registry under a name', '$0 image pull 127.0.0.1:5000/library/app:1 --name app'],
      ['Pull another architecture with credentials', '$0 image pull ghcr.io/org/app:1 --platform linux/arm64 --auth user:token'],
    ],
  });

  reference = Option.String({ name: 'REF' });
  name = Option.String('--name', { description: 'Local image name (default: <repository>:<tag>)' });
  platform = Option.String('--platform', { description: 'os/arch[/variant] to pull from a multi-platform image (default: the host)' });
  auth = Option.String('--auth', { description: 'Registry credentials as user:token (or set BHATTI_REGISTRY_AUTH)' });
  insecure = Option.Boolean('--insecure', false, { description: 'Allow plain HTTP to a non-loopback registry' });
  force = Option.Boolean('--force', false, { description: 'Replace an image of the same name, or rebuild an up-to-date one' });

  async run({ bhatti, user, signal }: RunContext): Promise<number> {
    const op = bhatti.images.pull(this.reference, {
      user,
      name: this.name,
      platform: this.platform,
      auth: this.auth ?? (process.env.BHATTI_REGISTRY_AUTH || undefined),
      insecure: this.insecure,
      force: this.force,
      signal,
    });
    const stop = this.json ? undefined : attachPullProgress(op, process.stdout);
    try {
      const result = await op;
      if (this.json) {
        this.printJson(result);
      } else {
        const img = result.image;
        const what =
          result.status === 'up-to-date'
            ? `Image ${img.name} is up to date (${img.digest})`
            : `${result.status === 'updated' ? 'Updated' : 'Pulled'} ${img.name} (${shortDigest(img.digest)}, ${formatBytes(img.size)} ext4; ${result.downloadedLayers} layer(s) downloaded, ${result.cachedLayers} from cache)`;
        this.context.stdout.write(sanitize(what) + '\n');
      }
      return 0;
    } finally {
      stop?.();
    }
  }
}
