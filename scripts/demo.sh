#!/usr/bin/env bash
# The main job end to end on real input: set up, seed a loopback registry with a Debian image
# built from Debian packages, pull it with bhatti, show and check the result.
#   sudo scripts/demo.sh [DATA_DIR]      (default data dir: /tmp/bhatti-demo)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-/tmp/bhatti-demo}"

bash scripts/setup.sh
# seed-registry.sh prints the pushed reference on its last line.
REF="$(bash scripts/seed-registry.sh | tail -n 1)"
echo
echo "== bhatti image pull $REF --name debian"
node dist/cli.js image pull "$REF" --name debian --data-dir "$DATA"
echo
echo "== bhatti image pull again (no-op)"
node dist/cli.js image pull "$REF" --name debian --data-dir "$DATA"
echo
echo "== bhatti image list"
node dist/cli.js image list --data-dir "$DATA"
echo
echo "== bhatti image inspect debian"
node dist/cli.js image inspect debian --data-dir "$DATA"
IMG="$DATA/$(node -e 'const i=JSON.parse(require("fs").readFileSync(0,"utf8")); process.stdout.write(i.id)' < <(node dist/cli.js image inspect debian --json --data-dir "$DATA")).ext4"
IMG="$DATA/images/store/$(basename "$IMG")"
echo
echo "== e2fsck -fn on the image file"
e2fsck -fn "$IMG"
echo
echo "== /etc/os-release inside the image (debugfs)"
debugfs -R 'cat /etc/os-release' "$IMG" 2>/dev/null | head -n 3
echo
echo "Done. Data dir: $DATA (delete the image with: node dist/cli.js image delete debian -y --data-dir $DATA)"
