#!/usr/bin/env bash
# Prove the edge install on Raspberry Pi OS Bookworm's platform (arm64, Debian 12, Python 3.11, no libGL)
# on an x86 host: a debootstrapped arm64 root run under proot + qemu-user, the project installed into it
# from a copy with the edge extra from PyPI, then the edge tests and emulated timings
# (scripts/arm64_inside.py). The root is cached between runs.
#
#   scripts/arm64_check.sh [--clean]        cache: $FER_ARM64_CACHE, default ~/.cache/fer-edge-arm64
#
# Writes benchmarks/results/arm64_bookworm.log and arm64_bookworm.json.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${FER_ARM64_CACHE:-$HOME/.cache/fer-edge-arm64}
shared=$(cd "${FER_SHARED:-$repo/../shared}" && pwd)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
root=$cache/root
results=$repo/benchmarks/results
venv=/opt/fer-edge/.venv
mediapipe=${MEDIAPIPE:-mediapipe==1.2.2}  # as the Makefile installs it

[ "$(uname -m)" = x86_64 ] || { echo "arm64_check.sh: runs on an x86_64 host, not $(uname -m)" >&2; exit 2; }
case "${1:-}" in
  "") ;;
  --clean) rm -rf "$cache" ;;
  *) echo "arm64_check.sh: unknown option '$1' (expected --clean or nothing)" >&2; exit 2 ;;
esac
mkdir -p "$cache/logs" "$cache/pip" "$cache/out" "$results"
exec > >(tee "$results/arm64_bookworm.log") 2>&1

step() {  # step NAME CMD...: run CMD with its output in $cache/logs/NAME.log; print its time, or its tail and stop
  local name=$1 start=$SECONDS
  shift
  if "$@" >"$cache/logs/$name.log" 2>&1; then
    echo "$name: ok in $((SECONDS - start)) s"
  else
    tail -n 40 "$cache/logs/$name.log"
    echo "$name: FAILED after $((SECONDS - start)) s (full log: $cache/logs/$name.log)"
    exit 1
  fi
}

in_root() {  # in_root CMD...: run CMD in the arm64 root as (fake) root, with a clean environment
  env -i HOME=/root LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 FER_SHARED=/mnt/shared \
    QEMU_CPU=cortex-a72 python3 "$repo/scripts/arm64_enosys.py" \
    proot -0 -q qemu-aarch64-static -r "$root" -b /dev -b /proc -b /sys \
    -b "$cache/cpuinfo:/proc/cpuinfo" -b "$shared:/mnt/shared" -b "$cache/pip:/root/.cache/pip" \
    -b "$cache/out:/mnt/out" -w /tmp "$@"
}

# qemu emulates a Cortex-A72, the Raspberry Pi 4's core (arm64_inside.py runs the tests on a Pi 5's A76).
# LiteRT's CPU probe reads /proc/cpuinfo and crashes (SIGSEGV) on the host's x86 one, so the root sees an
# A72's, one entry per host core. arm64_enosys.py makes access() and stat() take paths that proot translates.
for ((cpu = 0; cpu < $(nproc); cpu++)); do
  printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n' "$cpu"
  printf 'CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
done >"$cache/cpuinfo"

echo "fer-edge arm64 check, $(date -u +%FT%TZ), host $(uname -m) $(nproc) cores, cache $cache"

missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v proot >/dev/null || missing+=(proot)
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
if ((${#missing[@]})); then
  step host-packages sh -c "apt-get update -q && apt-get install -y -q ${missing[*]}"
fi
host="$(uname -m), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "host: $host; $(dpkg-query -W -f '${Package} ${Version}; ' debootstrap proot qemu-user-static)"

if [ ! -e "$root/.stage2-done" ]; then
  rm -rf "$root"
  step debootstrap-first-stage debootstrap --foreign --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,python3-pip,libegl1,libgles2,mosquitto,mosquitto-clients bookworm "$root" "$mirror"
  step debootstrap-second-stage in_root /bin/sh -c 'DEBOOTSTRAP_DIR=/debootstrap /debootstrap/debootstrap --second-stage'
  touch "$root/.stage2-done"
else
  echo "arm64 root: cached"
fi
mkdir -p "$root/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
cp /etc/resolv.conf "$root/etc/resolv.conf"

# The project as its tracked and unignored files, like a fresh clone, in /opt/fer-edge as the README installs it.
rm -rf "$root/opt/fer-edge" "$cache/out"/*
mkdir -p "$root/opt/fer-edge"
git -C "$repo" ls-files -z --cached --others --exclude-standard \
  | tar -C "$repo" --null --ignore-failed-read -T - -cf - | tar -C "$root/opt/fer-edge" -xf -

start=$SECONDS
step venv in_root python3 -m venv "$venv"
step pip-install-edge in_root "$venv/bin/pip" install /opt/fer-edge"[edge]"
step pip-install-mediapipe in_root "$venv/bin/pip" install --no-deps "$mediapipe"
install_s=$((SECONDS - start))
venv_mb=$(du -sm "$root$venv" | cut -f1)
step pip-install-test-tools in_root "$venv/bin/pip" install pytest pytest-timeout jsonschema cryptography
echo "installed: $(in_root "$venv/bin/pip" list --format=freeze | paste -sd' ')"

status=0
in_root "$venv/bin/python" /opt/fer-edge/scripts/arm64_inside.py --install-s "$install_s" --venv-mb "$venv_mb" \
  --host "$host" --out /mnt/out || status=$?
cp "$cache/out/arm64_bookworm.json" "$results/arm64_bookworm.json" 2>/dev/null || true
echo "arm64 check $([ "$status" = 0 ] && echo passed || echo FAILED) in $SECONDS s (figures: benchmarks/results/arm64_bookworm.json)"
exit "$status"
