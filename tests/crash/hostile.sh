#!/usr/bin/env bash
# Hostile input at volume against the daemon on mock-kafka:
#   * 50% of the lines malformed,
#   * random connector ids, more of them than max_series (1000, via env),
#     each with exactly EVENTS_PER_CONNECTOR valid events, so the expected
#     series_limit count does not depend on the order of consumption:
#     (CONNECTOR_IDS - 1000) x EVENTS_PER_CONNECTOR,
#   * user ids drawn from a pool of 2,000,000 (about 1.55 million distinct in
#     the corpus), connection ids from a pool of 1,000,000. PARTITIONS (256).
# Measures events/s consumed, the daemon's peak RSS (VmHWM), readiness during
# the run, the rejection counters against what the corpus implies, and how long
# /metrics (and /api/v1/criteria) take to answer. Prints a summary table and
# PASS/FAIL (FAIL: daemon died, not ready, wrong counters, no answer).
#
# Environment: BIN, CONNECTOR_IDS (2500), EVENTS_PER_CONNECTOR (1200),
# USERS (2000000), CONNECTIONS (1000000), MAX_SERIES (1000), SEED (7),
# TIMEOUT seconds for consumption (900), KEEP=1 keeps the work directory.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN_SRC=${BIN:-$ROOT/target/release/connector-ga-exporter}
CONNECTOR_IDS=${CONNECTOR_IDS:-2500}
EVENTS_PER_CONNECTOR=${EVENTS_PER_CONNECTOR:-1200}
USERS=${USERS:-2000000}
CONNECTIONS=${CONNECTIONS:-1000000}
MAX_SERIES=${MAX_SERIES:-1000}
SEED=${SEED:-7}
TIMEOUT=${TIMEOUT:-900}
TOPIC=connector-events
PARTITIONS=${PARTITIONS:-256}   # ~2 MB per partition: well under the mock's ~5 MiB

WORK=$(mktemp -d /tmp/hostile-test.XXXXXX)
MOCK_PID=""
DAEMON_PID=""
RESULT=FAIL

STOP_GRACE=100
source "$HERE/lib.sh"

use_binary

start_mock "$PARTITIONS" hostile

CORPUS="$WORK/hostile.ndjson"
python3 "$HERE/gen_corpus.py" --profile hostile --out "$CORPUS" --seed "$SEED" --days 20 \
    --malformed 0.5 --connector-ids "$CONNECTOR_IDS" \
    --events-per-connector "$EVENTS_PER_CONNECTOR" --users "$USERS" \
    --connections "$CONNECTIONS" >"$WORK/summary.json"
N=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["lines"])' "$WORK/summary.json")
EXP_MALFORMED=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rejects"]["malformed_json"])' "$WORK/summary.json")
EXP_SERIES=$(( (CONNECTOR_IDS - MAX_SERIES) * EVENTS_PER_CONNECTOR ))
log "corpus: $N lines ($(du -m "$CORPUS" | cut -f1) MB), $EXP_MALFORMED malformed, expect series_limit=$EXP_SERIES"

python3 "$HERE/produce.py" --brokers "$BROKERS" --topic "$TOPIC" --input "$CORPUS" \
    --lines-per-message 200 --partitions "$PARTITIONS" >"$WORK/produce.json" || fail "produce failed"
log "produced: $(cat "$WORK/produce.json")"

CFG="$WORK/config.toml"
printf '[criteria]\nmin_eligible_requests = 100\n' >"$CFG"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LISTEN=127.0.0.1:$PORT

CONNECTOR_GA__STATE__MAX_SERIES=$MAX_SERIES \
    "$BIN" run --config "$CFG" --brokers "$BROKERS" --topic "$TOPIC" --group hostile \
    --listen "$LISTEN" --state-dir "$WORK/state" >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
T0=$(date +%s.%N)
log "daemon pid $DAEMON_PID on $LISTEN"

# Sample every 0.5 s: time, events_total, /readyz, VmRSS, VmHWM, /metrics time.
SAMPLES="$WORK/samples.tsv"
printf 't\tevents\treadyz\trss_kb\thwm_kb\tmetrics_s\tmetrics_bytes\n' >"$SAMPLES"
last=""
while :; do
    kill -0 "$DAEMON_PID" 2>/dev/null || fail "daemon died: $(tail -5 "$WORK/daemon.log")"
    now=$(date +%s.%N)
    t=$(python3 -c "print(f'{$now - $T0:.2f}')")
    m=$(curl -s --max-time 20 -o "$WORK/metrics.txt" -w '%{http_code} %{time_total} %{size_download}' \
        "http://$LISTEN/metrics" || true)
    read -r mcode mtime msize _ <<<"$m"
    mcode=${mcode:-000}; mtime=${mtime:-0}; msize=${msize:-0}
    ev=""
    [[ "$mcode" == 200 ]] && ev=$(awk -v t="$TOPIC" '$1 == "connector_ga_events_total{topic=\"" t "\"}" {print $2}' "$WORK/metrics.txt")
    rz=$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' "http://$LISTEN/readyz" || true)
    rss=$(awk '/^VmRSS/{print $2}' "/proc/$DAEMON_PID/status" 2>/dev/null || echo 0)
    hwm=$(awk '/^VmHWM/{print $2}' "/proc/$DAEMON_PID/status" 2>/dev/null || echo 0)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "${ev:-}" "$rz" "$rss" "$hwm" "$mtime" "$msize" >>"$SAMPLES"
    if [[ "$ev" != "$last" ]]; then last=$ev; fi
    [[ -n "$ev" && "$ev" -ge "$N" ]] && break
    python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < $TIMEOUT else 1)" "$t" \
        || fail "events_total ${ev:-?} of $N after $TIMEOUT s"
    sleep 0.2
done
log "consumed $N events; idle measurements"
sleep 2
kill -0 "$DAEMON_PID" 2>/dev/null || fail "daemon died after consuming"

# Idle /metrics and /api/v1/criteria latency, 10 scrapes each.
IDLE="$WORK/idle.tsv"
: >"$IDLE"
for _ in $(seq 1 10); do
    curl -sf --max-time 30 -o "$WORK/metrics.txt" -w 'metrics\t%{time_total}\t%{size_download}\n' \
        "http://$LISTEN/metrics" >>"$IDLE" || fail "/metrics did not answer when idle"
done
for _ in $(seq 1 3); do
    curl -sf --max-time 60 -o "$WORK/criteria.json" -w 'criteria\t%{time_total}\t%{size_download}\n' \
        "http://$LISTEN/api/v1/criteria" >>"$IDLE" || fail "/api/v1/criteria did not answer"
done
RZ=$(curl -s -o /dev/null -w '%{http_code}' "http://$LISTEN/readyz" || true)
HWM=$(awk '/^VmHWM/{print $2}' "/proc/$DAEMON_PID/status")
RSS=$(awk '/^VmRSS/{print $2}' "/proc/$DAEMON_PID/status")
sleep 11   # at least one periodic snapshot (default interval 10 s) after the end
# Both slots of every task: the newest checkpoints are about half of it.
SNAP_BYTES=$(find "$WORK/state/tasks" -name '*.ckpt' -printf '%s\n' 2>/dev/null | awk '{s+=$1} END {print s+0}')
grep -E '^connector_ga_events_rejected_total' "$WORK/metrics.txt" >"$WORK/rejected.txt" || true

python3 - "$SAMPLES" "$IDLE" "$WORK/rejected.txt" "$WORK/criteria.json" "$N" "$EXP_MALFORMED" \
    "$EXP_SERIES" "$MAX_SERIES" "$HWM" "$RSS" "$RZ" "$SNAP_BYTES" "$WORK/metrics.txt" <<'EOF'
import json, re, statistics, sys
(samples, idle, rejected, criteria, n, exp_bad, exp_series, max_series, hwm, rss, rz,
 snap, metrics_file) = sys.argv[1:]
n, exp_bad, exp_series, max_series = int(n), int(exp_bad), int(exp_series), int(max_series)
rows = []
for line in open(samples).read().splitlines()[1:]:
    t, ev, r, rs, hw, mt, ms = line.split("\t")
    rows.append((float(t), int(ev) if ev else None, r, int(rs), int(hw), float(mt), int(ms)))
rej = {}
for line in open(rejected):
    m = re.match(r'connector_ga_events_rejected_total\{reason="([^"]+)"\} (\S+)', line)
    if m:
        rej[m.group(1)] = int(float(m.group(2)))
crit = json.load(open(criteria))
problems = []

started = [r for r in rows if r[1]]
t_first = started[0][0] if started else None
t_ready = next((r[0] for r in rows if r[2] == "200"), None)
t_end = rows[-1][0]
avg_rate = n / (t_end - t_ready) if t_ready is not None and t_end > t_ready else float("nan")
peak = 0.0
for i in range(len(rows)):
    for j in range(i + 1, len(rows)):
        if rows[j][0] - rows[i][0] >= 2.0 and rows[i][1] is not None and rows[j][1] is not None:
            peak = max(peak, (rows[j][1] - rows[i][1]) / (rows[j][0] - rows[i][0]))
            break
after_ready = [r for r in rows if t_ready is not None and r[0] >= t_ready]
not_ready = [r for r in after_ready if r[2] != "200"]
busy = [r[5] for r in rows if r[1] is not None]
busy_fail = [r for r in rows if r[1] is None and t_first is not None and r[0] > t_first]
idle_m = [float(l.split("\t")[1]) for l in open(idle) if l.startswith("metrics")]
idle_c = [float(l.split("\t")[1]) for l in open(idle) if l.startswith("criteria")]
m_bytes = [int(l.split("\t")[2]) for l in open(idle) if l.startswith("metrics")][-1]
c_bytes = [int(l.split("\t")[2]) for l in open(idle) if l.startswith("criteria")][-1]
series_lines = sum(1 for l in open(metrics_file) if l and not l.startswith("#"))

if rej.get("malformed_json") != exp_bad:
    problems.append(f"malformed_json {rej.get('malformed_json')} != corpus {exp_bad}")
if rej.get("series_limit") != exp_series:
    problems.append(f"series_limit {rej.get('series_limit')} != corpus-implied {exp_series}")
others = {k: v for k, v in rej.items() if v and k not in ("malformed_json", "series_limit")}
if others:
    problems.append(f"unexpected rejections {others}")
scopes = crit["scopes"]
real = [s for s in scopes if s["cloud"] != "all"]
if len(real) != max_series:
    problems.append(f"{len(real)} (connector, cloud) scopes, expected max_series={max_series}")
if not_ready:
    problems.append(f"/readyz not 200 in {len(not_ready)} samples after first ready")
if busy_fail:
    problems.append(f"/metrics failed in {len(busy_fail)} samples while consuming")
if rz != "200":
    problems.append(f"/readyz {rz} at the end")
admitted = sum(s["requests"] for s in real)
users_sum = sum(s["weekly_active_users"][0] for s in real)

def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]

tbl = [
    ("events in corpus (lines)", f"{n:,}"),
    ("valid events admitted / series_limit", f"{admitted:,} / {rej.get('series_limit', 0):,} (expected {exp_series:,})"),
    ("malformed_json", f"{rej.get('malformed_json', 0):,} (expected {exp_bad:,})"),
    ("start -> ready", f"{t_ready:.1f} s"),
    ("consume time (ready -> all counted)", f"{t_end - t_ready:.1f} s"),
    ("events/s, average from ready", f"{avg_rate:,.0f}"),
    ("events/s, best 2 s window", f"{peak:,.0f}"),
    ("peak RSS (VmHWM)", f"{int(hwm) / 1024:.0f} MB"),
    ("RSS at end (VmRSS)", f"{int(rss) / 1024:.0f} MB"),
    ("checkpoints (both slots)", f"{int(snap) / 1e6:.1f} MB"),
    ("/readyz during run", f"{len(after_ready) - len(not_ready)}/{len(after_ready)} samples 200 after ready"),
    ("/metrics while consuming: median / p95 / max", f"{q(busy, .5) * 1000:.0f} / {q(busy, .95) * 1000:.0f} / {max(busy) * 1000:.0f} ms ({len(busy)} scrapes)"),
    ("/metrics idle: median / max", f"{q(idle_m, .5) * 1000:.0f} / {max(idle_m) * 1000:.0f} ms, {m_bytes / 1e6:.1f} MB, {series_lines:,} samples"),
    ("/api/v1/criteria idle: median / max", f"{q(idle_c, .5) * 1000:.0f} / {max(idle_c) * 1000:.0f} ms, {c_bytes / 1e6:.1f} MB, {len(scopes)} scopes"),
    ("sum of weekly users (week 0) over scopes", f"{users_sum:,}"),
]
w = max(len(k) for k, _ in tbl)
print("-" * (w + 50))
for k, v in tbl:
    print(f"{k:<{w}}  {v}")
print("-" * (w + 50))
for p in problems:
    print("PROBLEM:", p)
sys.exit(1 if problems else 0)
EOF
RESULT=PASS
