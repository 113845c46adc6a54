#!/usr/bin/env bash
# Exactly-once across the fallback to a task's previous checkpoint
# (src/checkpoint/: each task is written alternately to tasks/<topic>/<p>/a.ckpt
# and b.ckpt; restoring takes the newest one that decodes).
#
# 1. The daemon consumes a corpus with a 1 s checkpoint interval; it is
#    SIGKILLed once some task has checkpoints in both slots, so its newest
#    checkpoint holds data and Kafka's committed offsets may point past the
#    older one.
# 2. One byte of the newest checkpoint of every task is flipped (bit rot):
#    the daemon falls back to each task's previous checkpoint.
# 3. Expected: every event counted exactly once (events_total == corpus):
#    a task resumes at the offset of the checkpoint it restored, never at
#    the committed offset.
#
# Environment: BIN, EVENTS (200000), KEEP=1.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN_SRC=${BIN:-$ROOT/target/release/connector-ga-exporter}
EVENTS=${EVENTS:-200000}
TOPIC=connector-events
WORK=$(mktemp -d /tmp/fallback-test.XXXXXX)
MOCK_PID=""; DAEMON_PID=""; RESULT=FAIL

source "$HERE/lib.sh"

use_binary
start_mock 32 fallback
python3 "$HERE/gen_corpus.py" --out "$WORK/corpus.ndjson" --events "$EVENTS" >/dev/null
N=$(wc -l <"$WORK/corpus.ndjson")
# Two halves: the second is produced once a first checkpoint exists, so
# every task that gets events after it is checkpointed a second time (only
# a task that changed is written), however fast the first half is read.
head -n $(( N / 2 )) "$WORK/corpus.ndjson" >"$WORK/half1.ndjson"
tail -n +$(( N / 2 + 1 )) "$WORK/corpus.ndjson" >"$WORK/half2.ndjson"
python3 "$HERE/produce.py" --brokers "$BROKERS" --topic "$TOPIC" --input "$WORK/half1.ndjson" >/dev/null
cat >"$WORK/config.toml" <<'TOML'
# Aggregated where read (one member owns every partition, so its report is
# exact whatever the keys); the re-key stage's fallback is the same code.
[kafka]
input_keyed_by_connector = true

[kafka.properties]
"session.timeout.ms" = "3000"
"heartbeat.interval.ms" = "300"
TOML
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LISTEN=127.0.0.1:$PORT
start() {
    CONNECTOR_GA__STATE__CHECKPOINT_INTERVAL_SECONDS=1 "$BIN" run --config "$WORK/config.toml" \
        --brokers "$BROKERS" --topic "$TOPIC" --group fallback --listen "$LISTEN" \
        --state-dir "$WORK/state" >"$WORK/daemon.$1.log" 2>&1 &
    DAEMON_PID=$!
}

start 1
for _ in $(seq 1 3000); do
    first=$(find "$WORK/state/tasks" -name 'b.ckpt' 2>/dev/null | head -1 || true)
    [[ -n "$first" ]] && break
    sleep 0.01
done
[[ -n "$first" ]] || fail "no task was checkpointed"
python3 "$HERE/produce.py" --brokers "$BROKERS" --topic "$TOPIC" --input "$WORK/half2.ndjson" >/dev/null
for _ in $(seq 1 3000); do
    both=$(find "$WORK/state/tasks" -name 'a.ckpt' -newer "$WORK/config.toml" 2>/dev/null | head -1 || true)
    [[ -n "$both" ]] && break
    sleep 0.01
done
[[ -n "$both" ]] || fail "no task reached its second checkpoint"
sleep 0.4   # its offsets get committed
at=$(events_total)
kill -KILL "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true; DAEMON_PID=""
flipped=0
for d in "$WORK"/state/tasks/*/*/; do
    [[ -f "$d/a.ckpt" && -f "$d/b.ckpt" ]] || continue
    newest=$(ls -t "$d"a.ckpt "$d"b.ckpt | head -1)
    python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[-10]^=0xff; open(p,'wb').write(b)" "$newest"
    flipped=$((flipped + 1))
done
log "killed at events_total=$at; flipped one byte of the newest checkpoint of $flipped task(s); restarting"
start 2
until [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$LISTEN/readyz")" == 200 ]]; do
    kill -0 "$DAEMON_PID" 2>/dev/null || fail "daemon exited: $(tail -3 "$WORK/daemon.2.log")"
    sleep 0.1
done
prev=""; still=0
while (( still < 25 )); do   # until events_total is unchanged for 5 s
    v=$(events_total)
    [[ "$v" == "$prev" ]] && still=$((still + 1)) || { still=0; prev=$v; }
    sleep 0.2
done
{ grep -a 'previous one' "$WORK/daemon.2.log" | sed 's/\x1b\[[0-9;]*m//g' | head -3; } || true
if [[ "$v" == "$N" ]]; then
    log "events_total=$v == corpus $N after the fallback"
    RESULT=PASS
else
    fail "events_total=$v of $N after the fallback to the previous checkpoints: $(( N - v )) events lost"
fi
