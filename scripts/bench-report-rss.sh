#!/usr/bin/env bash
# Peak RSS and wall time of `connector-ga-exporter report` on a generated
# corpus of realistic events (default 1,500,000, ~177 bytes each).
#
#   scripts/bench-report-rss.sh [COUNT]
#
# Builds the release binary and the corpus generator
# (examples/gen_corpus.rs), writes the corpus to a temporary file, runs
# `report --format json` under `/usr/bin/time -v` (GNU time; `apt-get install
# -y time` when missing) and prints events/s, wall time and peak RSS.
# Environment: KEEP_CORPUS=1 keeps the file. `report` decodes on every
# core: run the script under `taskset -c 0` to measure a single one.
set -euo pipefail

count="${1:-1500000}"
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/time ]; then
  echo "bench-report-rss: /usr/bin/time (GNU time) is missing: apt-get install -y time" >&2
  exit 2
fi

cargo build --release --quiet --bin connector-ga-exporter --example gen_corpus
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
bin="$target_dir/release/connector-ga-exporter"
gen="$target_dir/release/examples/gen_corpus"

tmp="$(mktemp -d)"
if [ "${KEEP_CORPUS:-0}" != 1 ]; then
  trap 'rm -rf "$tmp"' EXIT
fi
corpus="$tmp/events.ndjson"
"$gen" --count "$count" > "$corpus"
bytes=$(stat -c %s "$corpus")
lines=$(wc -l < "$corpus")

# Warm the page cache so the run measures the program, not the disk.
cat "$corpus" > /dev/null

/usr/bin/time -v -o "$tmp/time.txt" \
  "$bin" report --input "$corpus" --now 2026-11-20T12:00:00Z --format json > "$tmp/report.json"

rss_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$tmp/time.txt")
wall=$(awk '/Elapsed \(wall clock\) time/ {print $NF}' "$tmp/time.txt")
user=$(awk -F: '/User time \(seconds\)/ {gsub(/ /, "", $2); print $2}' "$tmp/time.txt")
sys=$(awk -F: '/System time \(seconds\)/ {gsub(/ /, "", $2); print $2}' "$tmp/time.txt")
scopes=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["scopes"]))' "$tmp/report.json")

python3 - "$lines" "$bytes" "$wall" "$rss_kb" "$user" "$sys" "$scopes" "$(nproc)" <<'PY'
import sys
lines, size, wall, rss_kb, user, sys_t, scopes, cpus = sys.argv[1:]
parts = [float(p) for p in wall.split(":")]
secs = 0.0
for p in parts:
    secs = secs * 60 + p
lines, size, rss_kb = int(lines), int(size), int(rss_kb)
print(f"corpus:   {lines} events, {size / 1e6:.1f} MB ({size / lines:.0f} bytes/event)")
print(f"report:   {scopes} scopes, {cpus} CPU(s)")
print(f"wall:     {secs:.2f} s (user {user} s, sys {sys_t} s)")
print(f"rate:     {lines / secs:,.0f} events/s, {size / secs / 1e6:.1f} MB/s")
print(f"peak RSS: {rss_kb / 1024:.1f} MB ({rss_kb} kB)")
PY
if [ "${KEEP_CORPUS:-0}" = 1 ]; then
  echo "corpus kept: $corpus"
fi
