#!/usr/bin/env bash
# labwitness developer front door: one script sets everything up, idempotently.
#
#   bash deploy/dev.sh demo   # set up, then run the demo (simulated cameras, embedded S3, API on :8000)
#   bash deploy/dev.sh test   # set up, start what the tests need, run the whole test suite
#   bash deploy/dev.sh bench record [...]   # benchmarks (see bench/README.md)
#   bash deploy/dev.sh setup  # only install
#
# Installs: Debian packages with apt-get, only what the command needs (the demo:
# GStreamer's RTSP server for the camera simulator; the tests also Chromium and a
# CJK font for the web UI's browser tests; the benchmarks also ffmpeg for their
# baselines), waiting for another apt-get/dpkg (unattended-upgrades on a fresh
# Debian) to finish instead of failing; and a virtualenv in .venv with the project
# and its test extras.  Re-running is cheap: a stamp file records what was installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
VENV=${LABWITNESS_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}

# Debian packages, by what needs them (`apt_packages demo|test|bench|setup`)
APT_DEMO=(  # the camera simulator: GStreamer's RTSP server and its Python bindings
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  gstreamer1.0-libav
)
APT_TEST=(chromium fonts-wqy-microhei iproute2)  # web UI browser tests (headless, via Playwright); a CJK font for their screenshots; `ip netns` for the topology test
APT_BENCH=(ffmpeg)  # the benchmarks' baselines (`ffmpeg -c copy`)

# Another apt-get/dpkg (unattended-upgrades runs on every fresh Debian) holds the package
# lock for minutes: wait for it, saying so, rather than fail at once.
APT_LOCK_WAIT_S=${LABWITNESS_APT_LOCK_WAIT_S:-1200}
APT_LOCK_POLL_S=${APT_LOCK_POLL_S:-5}
APT_LOCK_FILES=(/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

log() { printf '\033[1m[labwitness setup]\033[0m %s\n' "$*" >&2; }

apt_packages() {
  case "$1" in
    demo) echo "${APT_DEMO[*]}" ;;
    test) echo "${APT_DEMO[*]} ${APT_TEST[*]}" ;;
    bench) echo "${APT_DEMO[*]} ${APT_BENCH[*]}" ;;
    *) echo "${APT_DEMO[*]} ${APT_TEST[*]} ${APT_BENCH[*]}" ;;
  esac
}

apt_lock_holder() {
  # "PID (command)" of a process holding one of apt's or dpkg's locks; fails when none is held.
  # apt takes fcntl locks, which /proc/locks lists by device and inode (fuser may not be installed yet).
  local f dev ino id kind rest pid where
  for f in "${APT_LOCK_FILES[@]}"; do
    [ -e "$f" ] || continue
    dev=$((16#$(stat -c %D "$f")))
    ino=$(stat -c %i "$f")
    where=$(printf '%02x:%02x:%s' $(((dev >> 8) & 0xfff)) $(((dev & 0xff) | ((dev >> 12) & 0xfff00))) "$ino")
    while read -r id kind _ _ pid rest; do
      [ "$kind" != "->" ] || continue  # a process waiting for the lock, not holding it
      if [ "${rest%% *}" = "$where" ]; then
        printf '%s (%s)' "$pid" "$(cat "/proc/$pid/comm" 2>/dev/null || echo '?')"
        return 0
      fi
    done < /proc/locks
  done
  return 1
}

wait_for_apt_lock() {
  local deadline=$((SECONDS + APT_LOCK_WAIT_S)) holder said=""
  while holder=$(apt_lock_holder); do
    if [ -z "$said" ]; then
      log "另一个 apt-get/dpkg 正在运行 / another apt-get or dpkg holds the package lock: pid $holder" \
          "(on a fresh Debian usually unattended-upgrades); waiting up to ${APT_LOCK_WAIT_S}s for it to finish …"
      said=1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "the package lock is still held by pid $holder after ${APT_LOCK_WAIT_S}s; run this again when it has" \
          "finished (LABWITNESS_APT_LOCK_WAIT_S=seconds waits longer)"
      return 1
    fi
    sleep "$APT_LOCK_POLL_S"
  done
  [ -z "$said" ] || log "the package lock is free; continuing"
}

apt_get() {
  # apt-get that waits for the package lock.  DPkg::Lock::Timeout makes apt wait for dpkg's lock
  # itself; `apt-get update` takes the lists lock without waiting, so a lock error is retried here.
  local deadline=$((SECONDS + APT_LOCK_WAIT_S)) err rc
  err=$(mktemp)
  while true; do
    wait_for_apt_lock || { rm -f "$err"; return 1; }
    rc=0
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$APT_LOCK_WAIT_S" "$@" 2>"$err" || rc=$?
    if [ $rc -ne 0 ] && [ "$SECONDS" -lt "$deadline" ] \
        && grep -q -E "Could not get lock|Unable to lock|Unable to acquire the dpkg frontend lock" "$err"; then
      log "apt-get $1: the package lock was taken just now; trying again in ${APT_LOCK_POLL_S}s"
      sleep "$APT_LOCK_POLL_S"
      continue
    fi
    cat "$err" >&2
    rm -f "$err"
    return $rc
  done
}

apt_setup() {  # apt_setup demo|test|bench|setup
  local missing=() p
  for p in $(apt_packages "$1"); do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages for '$1': ${missing[*]}"
    apt_get update -qq
    apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" \
    || { log "GStreamer RTSP server bindings are not importable by /usr/bin/python3"; exit 1; }
}

py_setup() {
  local want
  want=$(cat pyproject.toml deploy/dev.sh | sha256sum | cut -d' ' -f1)
  if [ -f "$VENV/.setup-stamp" ] && [ "$(cat "$VENV/.setup-stamp")" = "$want" ]; then
    return
  fi
  "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || { log "Python >= 3.11 is required ($PY is $("$PY" --version))"; exit 1; }
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  log "installing labwitness and its dependencies into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"
  echo "$want" > "$VENV/.setup-stamp"
}

ensure_postgres() {
  if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
    log "PostgreSQL is not running on 127.0.0.1:5432; starting it"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
    for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && break; sleep 0.2; done
  fi
}

setup() { apt_setup "$1"; py_setup; }

# sourced (tests/test_dev_sh.py): the functions only
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0

cmd=${1:-help}
shift || true
case "$cmd" in
  setup) setup all ;;
  demo) setup demo; exec "$VENV/bin/labwitness" demo "$@" ;;
  test)
    setup test
    ensure_postgres
    set +e
    "$VENV/bin/python" -m pytest -n "${LABWITNESS_TEST_WORKERS:-3}" --dist loadfile "$@"
    rc=$?
    set -e
    if [ $rc -eq 5 ]; then log "pytest collected no tests: that is a failure"; exit 1; fi
    exit $rc ;;
  bench) setup bench; exec "$VENV/bin/python" -m "bench.${1:-record}" "${@:2}" ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
