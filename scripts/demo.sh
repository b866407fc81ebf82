#!/usr/bin/env bash
# The main job end to end on real input: set up, seed a loopback registry with a Debian image
# built from Debian packages, pull it with bhatti, show and check the result.
#   sudo scripts/demo.sh [DATA_DIR]      (default data dir: /tmp/bhatti-demo)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-/tmp/bhatti-demo}"

bash scripts/setup.sh
# seed-registry.sh prints what it pushed; the reference is on its "image:" line.
# (No `tee /dev/stderr`: when stderr is a log file, tee would truncate it.)
seeded="$(bash scripts/seed-registry.sh)"
printf '%s\n' "$seeded"
REF="$(awk '/^image:/ {print $2}' <<<"$seeded")"
[[ -n "$REF" ]] || { echo "demo: seeding the registry failed" >&2; exit 1; }
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
ID="$(node dist/cli.js image inspect debian --json --data-dir "$DATA" | jq -r .id)"
IMG="$DATA/images/store/$ID.ext4"
echo
echo "== e2fsck -fn on the image file"
e2fsck -fn "$IMG"
echo
echo "== /usr/lib/os-release inside the image (debugfs)"
debugfs -R 'cat /usr/lib/os-release' "$IMG" 2>/dev/null | head -n 3
echo
echo "== bhatti create --name demo --image debian (a QEMU microVM; TCG boots in ~15 s here)"
node dist/cli.js destroy demo --data-dir "$DATA" >/dev/null 2>&1 || true
node dist/cli.js create --name demo --image debian --data-dir "$DATA"
echo
echo "== bhatti exec demo -- sh -c '. /etc/os-release; echo \$PRETTY_NAME; curl --version | head -1; exit 3'"
set +e
node dist/cli.js exec demo --data-dir "$DATA" -- sh -c '. /etc/os-release; echo "$PRETTY_NAME"; curl --version | head -n 1; exit 3'
echo "(exit code $?)"
set -e
echo
echo "== bhatti list"
node dist/cli.js list --data-dir "$DATA"
node dist/cli.js destroy demo --data-dir "$DATA"
echo
echo "Done. Data dir: $DATA (delete the image with: node dist/cli.js image delete debian -y --data-dir $DATA)"
