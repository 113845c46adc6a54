# Shared harness of the tests/crash scripts; sourced, not run.
# The caller sets WORK (a temp dir), BIN_SRC (the binary), TOPIC, and
# initialises DAEMON_PID="" MOCK_PID="" RESULT=FAIL before sourcing; it sets
# LISTEN (the daemon's host:port) before calling events_total.

log() { printf '[%s] %s\n' "$(date +%H:%M:%S.%3N)" "$*"; }

# TERM, then KILL after STOP_GRACE tenths of a second (default 30); only our own children.
stop_pid() {
    local pid=$1
    [[ -n "$pid" ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 "${STOP_GRACE:-30}"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$DAEMON_PID"
    stop_pid "$MOCK_PID"
    for pid in $(jobs -p); do stop_pid "$pid"; done
    if [[ "$RESULT" == PASS && "${KEEP:-0}" != 1 ]]; then
        rm -rf "$WORK"
    else
        echo "work directory kept: $WORK (daemon logs: $WORK/daemon.*.log)"
    fi
    echo "$RESULT"
    [[ "$RESULT" == PASS ]] && exit 0 || exit $(( rc == 0 ? 1 : rc ))
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { log "FAIL: $*"; exit 1; }

# The daemon's connector_ga_events_total{topic="$TOPIC"} (events read from
# the input), or nothing when /metrics does not answer.
events_total() {
    curl -sf --max-time 2 "http://$LISTEN/metrics" 2>/dev/null \
        | awk -v t="$TOPIC" '$1 == "connector_ga_events_total{topic=\"" t "\"}" {print $2}' || true
}

# Copies the binary into WORK (so a rebuild cannot swap it mid-test) as BIN.
use_binary() {
    [[ -x "$BIN_SRC" ]] || fail "no binary at $BIN_SRC (cargo build --release)"
    cp "$BIN_SRC" "$WORK/bin"
    BIN="$WORK/bin"
}

# start_mock PARTITIONS [GROUP...]: librdkafka's mock cluster in its own
# process, holding TOPIC and, for each GROUP, the re-keyed topic
# GROUP-by-connector (the mock cannot create a topic on request; SPEC §12);
# sets MOCK_PID and BROKERS.
start_mock() {
    local n=$1 g topics=(--topic "$TOPIC:$1")
    shift
    for g in "$@"; do topics+=(--topic "$g-by-connector:$n"); done
    "$BIN" mock-kafka "${topics[@]}" >"$WORK/mock.out" 2>"$WORK/mock.err" &
    MOCK_PID=$!
    for _ in $(seq 1 100); do [[ -s "$WORK/mock.out" ]] && break; sleep 0.05; done
    BROKERS=$(head -1 "$WORK/mock.out")
    [[ -n "$BROKERS" ]] || fail "mock-kafka printed no address: $(cat "$WORK/mock.err")"
    log "mock-kafka pid $MOCK_PID at $BROKERS"
}
