#!/usr/bin/env bash
# labwitness developer front door: one script sets everything up, idempotently.
#
#   bash deploy/dev.sh demo   # set up, then run the demo (simulated cameras, embedded S3, API on :8000)
#   bash deploy/dev.sh test   # set up, start what the tests need, run the whole test suite
#   bash deploy/dev.sh bench record [...]   # benchmarks (see bench/README.md)
#   bash deploy/dev.sh setup  # only install
#
# Installs: Debian packages (GStreamer RTSP server for the camera simulator,
# ffmpeg for benchmark baselines, Chromium for the web UI's browser tests) with
# apt-get, and a virtualenv in .venv with
# the project and its test extras.  Re-running is cheap: a stamp file records
# what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${LABWITNESS_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}

APT_PACKAGES=(
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  gstreamer1.0-libav ffmpeg
  chromium fonts-wqy-microhei  # web UI browser tests (headless, via Playwright); a CJK font for their screenshots
)

log() { printf '\033[1m[labwitness setup]\033[0m %s\n' "$*" >&2; }

apt_setup() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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

setup() { apt_setup; py_setup; }

cmd=${1:-help}
shift || true
case "$cmd" in
  setup) setup ;;
  demo) setup; exec "$VENV/bin/labwitness" demo "$@" ;;
  test)
    setup
    ensure_postgres
    set +e
    "$VENV/bin/python" -m pytest -n "${LABWITNESS_TEST_WORKERS:-3}" --dist loadfile "$@"
    rc=$?
    set -e
    if [ $rc -eq 5 ]; then log "pytest collected no tests: that is a failure"; exit 1; fi
    exit $rc ;;
  bench) setup; exec "$VENV/bin/python" -m "bench.${1:-record}" "${@:2}" ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
