#!/usr/bin/env bash
# CPU the background rendering of /metrics costs a member at rest: this
# build against BASELINE (another build of `connector-ga-exporter`), side
# by side on one `mock-kafka` process, each with its own group.
#
#   scripts/bench-render-cpu.sh BASELINE [COUNT]
#
# Both read COUNT (default 1,000,000) realistic events (examples/gen_corpus.rs,
# ~6,900 scopes), produced 100 to a message over 128 partitions; then each
# one's CPU time (/proc/PID/stat) is taken over 60 s with no reader (after
# 130 s without one), and over 120 s with a scrape of /metrics every 15 s,
# whose latencies are printed too.
set -euo pipefail
base=$(realpath "$1")
count="${2:-1000000}"
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin connector-ga-exporter --example gen_corpus
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
bin="$target_dir/release/connector-ga-exporter"
w=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$w"' EXIT
"$target_dir/release/examples/gen_corpus" --count "$count" --profile realistic > "$w/events.ndjson"
"$bin" mock-kafka --topic ev:128 > "$w/mock.out" 2> "$w/mock.err" & pids+=($!)
for _ in $(seq 100); do [[ -s "$w/mock.out" ]] && break; sleep 0.05; done
brokers=$(head -1 "$w/mock.out")
python3 tests/crash/produce.py --brokers "$brokers" --topic ev --input "$w/events.ndjson" \
    --lines-per-message 100 --partitions 128 > /dev/null
printf '[kafka]\ninput_keyed_by_connector = true\n[state]\nmax_series = 100000\n' > "$w/c.toml"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pb=$(port); pn=$(port)
RUST_LOG=warn "$base" run --config "$w/c.toml" --brokers "$brokers" --topic ev --group base \
    --listen "127.0.0.1:$pb" --state-dir "$w/sb" > "$w/base.log" 2>&1 & pids+=($!); base_pid=$!
RUST_LOG=warn "$bin" run --config "$w/c.toml" --brokers "$brokers" --topic ev --group this \
    --listen "127.0.0.1:$pn" --state-dir "$w/sn" > "$w/this.log" 2>&1 & pids+=($!); this_pid=$!
events() { curl -sf "http://127.0.0.1:$1/metrics" | awk '$1 == "connector_ga_events_total{topic=\"ev\"}" {print $2}'; }
for p in "$pb" "$pn"; do
    until [[ "$(events "$p")" == "$count" ]]; do sleep 1; done
done
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
show() { python3 -c "import sys; print(f'{int(sys.argv[1]) / int(sys.argv[2]):.2f}')" "$1" "$tck"; }
sleep 130
b0=$(cpu "$base_pid"); n0=$(cpu "$this_pid"); sleep 60; b1=$(cpu "$base_pid"); n1=$(cpu "$this_pid")
echo "no reader, 60 s:          baseline $(show $((b1 - b0))) CPU-s, this build $(show $((n1 - n0))) CPU-s"
b0=$(cpu "$base_pid"); n0=$(cpu "$this_pid")
for _ in 1 2 3 4 5 6 7 8; do
    for p in "$pb" "$pn"; do
        curl -sf -o /dev/null -w "$p %{time_total}\n" "http://127.0.0.1:$p/metrics"
    done
    sleep 15
done > "$w/scrapes.txt"
b1=$(cpu "$base_pid"); n1=$(cpu "$this_pid")
echo "a scrape every 15 s, 120 s: baseline $(show $((b1 - b0))) CPU-s, this build $(show $((n1 - n0))) CPU-s"
echo "scrape seconds, baseline:   $(awk -v p="$pb" '$1 == p {printf "%s ", $2}' "$w/scrapes.txt")"
echo "scrape seconds, this build: $(awk -v p="$pn" '$1 == p {printf "%s ", $2}' "$w/scrapes.txt")"
