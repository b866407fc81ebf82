#!/usr/bin/env bash
# Starts a loopback registry (Debian's docker-registry) and seeds it with a real two-layer Debian
# image, so `bhatti image pull` can run on real input on a machine without internet access to
# Docker Hub (Debian mirrors must be reachable; the mirror comes from the host's apt sources).
#
#   scripts/seed-registry.sh          start (if needed), build (if needed), push (if needed)
#   scripts/seed-registry.sh --stop   stop the registry started here
#
# Layer 1: `mmdebstrap --variant=minbase SUITE`.
# Layer 2: the real difference to a second bootstrap with $EXTRA installed on top (umoci diff of
#          the two trees, so changed files ship again and removed ones become whiteouts).
# Both bootstraps use SOURCE_DATE_EPOCH, so files they share keep equal mtimes and stay out of
# layer 2. Everything is reused when present: rerunning only does what is missing.
#
# Environment (defaults):
#   PORT=5000  DATA_DIR=/tmp/bhatti-seed-registry  SUITE=bookworm  EXTRA="ca-certificates curl"
#   REPO=debian/bookworm  TAG=minbase  MIRROR=<first Debian URI in the host's apt sources>
# Must run as root (mmdebstrap root mode, owners kept in the layers).
set -euo pipefail
export LC_ALL=C.UTF-8

PORT="${PORT:-5000}"
DATA_DIR="${DATA_DIR:-/tmp/bhatti-seed-registry}"
SUITE="${SUITE:-bookworm}"
EXTRA="${EXTRA:-ca-certificates curl}"
REPO="${REPO:-debian/bookworm}"
TAG="${TAG:-minbase}"
HOST="127.0.0.1:$PORT"
PIDFILE="$DATA_DIR/registry.pid"
LOG="$DATA_DIR/registry.log"
BUILD="$DATA_DIR/build"
L="$BUILD/layout"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1700000000}"

say() { echo "seed-registry: $*" >&2; }
die() { say "$*"; exit 1; }

running() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

if [[ "${1:-}" == "--stop" ]]; then
  if running; then kill "$(cat "$PIDFILE")"; say "stopped registry pid $(cat "$PIDFILE")"; else say "not running"; fi
  rm -f "$PIDFILE"
  exit 0
fi
[[ $# -eq 0 ]] || die "usage: $0 [--stop]"
[[ "$(id -u)" == 0 ]] || die "must run as root"
for t in docker-registry skopeo umoci mmdebstrap tar curl jq; do
  command -v "$t" >/dev/null || die "missing tool: $t"
done

# The host's Debian mirror: the first deb822 stanza or one-line entry serving $SUITE itself.
host_mirror() {
  {
    awk -v s="$SUITE" '
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) found = 1 }
      /^$/ { if (found && uri) { print uri; exit } uri = ""; found = 0 }
      END { if (found && uri) print uri }' /etc/apt/sources.list.d/*.sources 2>/dev/null
    awk -v s="$SUITE" '$1 == "deb" { sub(/\[[^]]*\] */, ""); if ($3 == s) { print $2; exit } }' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
  } | head -n1 || true   # missing source files are fine
}
MIRROR="${MIRROR:-$(host_mirror)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

mkdir -p "$DATA_DIR" "$BUILD"

########## registry ##########
if running; then
  say "registry already running (pid $(cat "$PIDFILE"))"
else
  if curl -fsS -o /dev/null "http://$HOST/v2/" 2>/dev/null; then
    die "something else already answers on $HOST; set PORT"
  fi
  cat > "$DATA_DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $DATA_DIR/data
  delete:
    enabled: true
http:
  addr: $HOST
EOF
  nohup docker-registry serve "$DATA_DIR/config.yml" >"$LOG" 2>&1 &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://$HOST/v2/" 2>/dev/null && break
    running || die "docker-registry exited; see $LOG"
    sleep 0.1
  done
  curl -fsS -o /dev/null "http://$HOST/v2/" || die "docker-registry not ready; see $LOG"
  say "registry started on $HOST (pid $(cat "$PIDFILE"), log $LOG)"
fi

########## image ##########
bootstrap() { # out.tar [--include=...]
  local out="$1"; shift
  [[ -s "$out" ]] && { say "reusing $out"; return; }
  say "mmdebstrap $SUITE $* from $MIRROR -> $out"
  local t0=$SECONDS
  mmdebstrap --quiet --variant=minbase --format=tar "$@" "$SUITE" "$out.part" "$MIRROR"
  mv "$out.part" "$out"
  say "  done in $((SECONDS - t0)) s ($(du -h "$out" | cut -f1))"
}

extract() { # tar rootfs
  # --numeric-owner: the image's uids, not the host's names; xattrs carry file capabilities.
  tar -xpf "$1" -C "$2" --numeric-owner --xattrs --xattrs-include='*' --same-owner
}

if [[ -f "$L/index.json" ]] && umoci stat --image "$L:$TAG" >/dev/null 2>&1; then
  say "reusing built image $L:$TAG"
else
  pkgs="${EXTRA// /,}"
  bootstrap "$BUILD/base.tar"
  bootstrap "$BUILD/full.tar" "--include=$pkgs"
  rm -rf "$L" "$BUILD/bundle"
  umoci init --layout "$L"
  umoci new --image "$L:$TAG"
  umoci unpack --image "$L:$TAG" "$BUILD/bundle"
  R="$BUILD/bundle/rootfs"
  extract "$BUILD/base.tar" "$R"
  say "repacking layer 1 (minbase)"
  umoci repack --image "$L:$TAG" --refresh-bundle --history.created_by "mmdebstrap --variant=minbase $SUITE" "$BUILD/bundle"
  # Replace the tree with the second bootstrap; umoci's diff then holds just what changed.
  find "$R" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
  extract "$BUILD/full.tar" "$R"
  say "repacking layer 2 (+ $EXTRA)"
  umoci repack --image "$L:$TAG" --history.created_by "mmdebstrap --include=$pkgs (diff)" "$BUILD/bundle"
  umoci config --image "$L:$TAG" --config.cmd /bin/bash \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --no-history
  rm -rf "$BUILD/bundle"
fi

########## push ##########
REF="$HOST/$REPO:$TAG"
want="$(skopeo inspect "oci:$L:$TAG" | jq -r .Digest)"
have="$(skopeo inspect --tls-verify=false "docker://$REF" 2>/dev/null | jq -r .Digest || true)"
if [[ "$have" == "$want" ]]; then
  say "registry already has $REF ($want)"
else
  say "pushing $REF"
  skopeo copy --quiet --dest-tls-verify=false "oci:$L:$TAG" "docker://$REF"
fi

info="$(skopeo inspect --tls-verify=false "docker://$REF")"
echo "image:    $REF"
echo "digest:   $(jq -r .Digest <<<"$info")"
echo "layers:   $(jq -r '.Layers | length' <<<"$info")"
skopeo inspect --raw --tls-verify=false "docker://$REF" | jq -r '.layers[] | "  \(.digest)  \(.size / 1048576 * 10 | floor / 10) MB (compressed)"'
echo "registry: http://$HOST (pid $(cat "$PIDFILE"), data $DATA_DIR)"
echo "stop:     $0 --stop"
