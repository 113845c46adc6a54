#!/usr/bin/env python3
"""Helpers for tests/e2e/run.sh. Each subcommand exits 0 on success and
non-zero with a message on stderr otherwise.

  gen DIR               write DIR/corpus.ndjson, DIR/config.toml, DIR/expected.json
  free-port             print a free TCP port on 127.0.0.1
  wait-port PORT SECS   wait until 127.0.0.1:PORT accepts connections
  create-topic BROKERS TOPIC PARTITIONS
  roundtrip BROKERS TOPIC   create TOPIC, produce one message, consume it back
  count BROKERS TOPIC LINES SECS  consume TOPIC from the start: it holds LINES lines
  wait-ready URL SECS   wait for 200 from URL
  wait-totals URL EXPECTED SECS   poll /api/v1/criteria until it matches the corpus totals
  check-hand EXPECTED REPORT_JSON  the report agrees with the verdicts worked by hand
  compare A_JSON B_JSON compare two report documents (floats to 1e-9)
  check-prom PROM_URL EXPECTED SECS  query Prometheus for statuses and rejections
  check-dom DOM_FILE EXPECTED        the page lists every scope with its status
  check-page URL PNG WIDTH TEXT      headless Chromium (DevTools protocol) loads URL in a
                        WIDTH px window: the page shows TEXT, nothing overflows
                        horizontally; a full-page screenshot goes to PNG
"""
import datetime as dt
import json
import os
import random
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser

SEED = 20261126

# ---------------------------------------------------------------------------
# Corpus. `now` is the wall clock when the corpus is generated; every event is
# between 4 days and 10 minutes before it, so the daemon's own (later) wall
# clock puts all of them inside the 30-day criteria window and none of them
# `from_future`.
#
# Verdicts worked by hand from SPEC §3-§6 (defaults: min_eligible_requests
# 1000, availability >= 0.9995, slo >= 0.995, success rate > 0.80):
#
# shared_good (attested: backend_in_production, support_model_attested)
#   public: 1100 successes (200/201/204/302) over 5 connections, 20 x 429
#           (throttled, out of every ratio), 10 x 503 fault=backend, 10 x 404
#           (client). requests 1140, eligible 1120 >= 1000;
#           availability = 1 - 0/(1120-10) = 1; success rate 1100/1120 = 0.982;
#           each connection has availability 1 -> slo 1.  => ga_eligible
#   gcc:    100 successes over 2 connections: eligible 100 < 1000
#                                                       => insufficient_data
#   all:    requests 1240, eligible 1220, availability 1, success 1200/1220,
#           slo 1 (7 connections)                       => ga_eligible
# shared_bad (attested too, in preview for a year)
#   public: 1000 successes + 200 x 500 without fault (-> connector) over 4
#           connections: availability 1000/1200 = 0.833 < 0.9995, every
#           connection has connector failures -> slo 0; exception needs
#           availability too                            => not_eligible
#   all:    the same                                    => not_eligible
# shared_small (not in the config)
#   public: 10 events (8 in NDJSON lines, 2 in a JSON-array message)
#           eligible 10 < 1000                          => insufficient_data
#   all:    the same                                    => insufficient_data
# Rejections: 3 malformed_json lines (one counts once each), 2 unknown_cloud.
# ---------------------------------------------------------------------------

EXPECTED_STATUS = {
    "shared_bad/all": "not_eligible",
    "shared_bad/public": "not_eligible",
    "shared_good/all": "ga_eligible",
    "shared_good/gcc": "insufficient_data",
    "shared_good/public": "ga_eligible",
    "shared_small/all": "insufficient_data",
    "shared_small/public": "insufficient_data",
}
EXPECTED_REQUESTS = {
    "shared_bad/all": 1200, "shared_bad/public": 1200,
    "shared_good/all": 1240, "shared_good/gcc": 100, "shared_good/public": 1140,
    "shared_small/all": 10, "shared_small/public": 10,
}
EXPECTED_REJECTED = {"malformed_json": 3, "unknown_cloud": 2}
SPEC_METRICS = [
    "connector_requests_total", "connector_throttled_total", "connector_failures_total",
    "connector_availability_ratio", "connector_success_ratio", "connector_slo_ratio",
    "connector_latency_seconds", "connector_weekly_active_users",
    "connector_monthly_active_connections", "connector_ga_criterion_met", "connector_ga_status",
    "connector_ga_events_total", "connector_ga_events_rejected_total", "connector_ga_consumer_lag",
    "connector_ga_last_checkpoint_timestamp_seconds",
]
MALFORMED = ['{"ts": "2026-11-20T10:00:00Z", "connector": ', "this is not json", "42"]


def die(msg):
    print(f"e2e.py: {msg}", file=sys.stderr)
    sys.exit(1)


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def gen(outdir):
    rnd = random.Random(SEED)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    lo, hi = now - dt.timedelta(days=4), now - dt.timedelta(minutes=10)
    span = (hi - lo).total_seconds()

    def ts():
        t = lo + dt.timedelta(seconds=rnd.uniform(0, span))
        # Both encodings of SPEC §2: RFC 3339 and integer epoch milliseconds.
        return iso(t) if rnd.random() < 0.7 else int(t.timestamp() * 1000)

    def ev(connector, status, connection, cloud=None, fault=None, user=None):
        e = {"ts": ts(), "connector": connector, "status": status,
             "connection": connection, "user": user or f"u-{rnd.randrange(300)}",
             "latency_ms": round(rnd.uniform(20, 900), 1), "operation": "ListItems"}
        if cloud is not None:
            e["cloud"] = cloud
        elif rnd.random() < 0.5:
            e["cloud"] = "public"  # else omitted: defaults to public
        if fault is not None:
            e["fault"] = fault
        return e

    events = []
    good_conn = [f"c-good-{i}" for i in range(5)]
    for _ in range(1100):
        events.append(ev("shared_good", rnd.choice([200, 200, 200, 201, 204, 302]),
                         rnd.choice(good_conn)))
    for _ in range(20):
        events.append(ev("shared_good", 429, rnd.choice(good_conn)))
    for _ in range(10):
        events.append(ev("shared_good", 503, rnd.choice(good_conn), fault="backend"))
    for _ in range(10):
        events.append(ev("shared_good", 404, rnd.choice(good_conn)))
    for _ in range(100):
        events.append(ev("shared_good", 200, rnd.choice(["c-gcc-0", "c-gcc-1"]), cloud="gcc"))
    bad_conn = [f"c-bad-{i}" for i in range(4)]
    for i in range(1000):
        events.append(ev("shared_bad", 200, bad_conn[i % 4]))
    for i in range(200):
        events.append(ev("shared_bad", 500, bad_conn[i % 4]))
    for i in range(8):
        events.append(ev("shared_small", 200, "c-small"))
    rnd.shuffle(events)

    lines = [json.dumps(e, separators=(",", ":")) for e in events]
    # Rejections, sprinkled inside NDJSON messages.
    for bad in MALFORMED:
        lines.insert(rnd.randrange(len(lines)), bad)
    for _ in range(2):
        e = ev("shared_small", 200, "c-small", cloud="mars")
        lines.insert(rnd.randrange(len(lines)), json.dumps(e))
    # A message holding one JSON array of two events (SPEC §2 batch encoding).
    arr = [ev("shared_small", 200, "c-small"), ev("shared_small", 302, "c-small")]
    # produce.py sends a line starting with "[" as a message of its own.
    lines.insert(rnd.randrange(len(lines)), json.dumps(arr))

    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "corpus.ndjson"), "w") as f:
        f.write("\n".join(lines) + "\n")

    preview = (now - dt.timedelta(days=365)).date().isoformat()
    with open(os.path.join(outdir, "config.toml"), "w") as f:
        f.write(f"""# generated by tests/e2e/e2e.py gen
[criteria]
window_days = 30
min_eligible_requests = 1000

[connectors.shared_good]
backend_in_production = true
support_model_attested = true
preview_since = {preview}

[connectors.shared_bad]
backend_in_production = true
support_model_attested = true
preview_since = {preview}

[kafka]
# produce.py --key-by-connector keys every message by its connector (SPEC
# section 12); the re-key stage is tested on the mock cluster (tests/it/scale.rs,
# tests/crash), tansu 0.6 has no idempotent producer.
input_keyed_by_connector = true

[kafka.properties]
"auto.offset.reset" = "earliest"
"broker.address.family" = "v4"
""")

    valid = sum(EXPECTED_REQUESTS[k] for k in EXPECTED_REQUESTS if k.endswith("/all"))
    n_lines = len(lines) - 1 + len(arr)  # the array line holds 2 events
    expected = {
        "generated_at": iso(now), "valid": valid, "events_read": n_lines,
        "topic": "connector-events", "partitions": 3,
        "rejected": EXPECTED_REJECTED, "status": EXPECTED_STATUS,
        "requests": EXPECTED_REQUESTS,
    }
    with open(os.path.join(outdir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
    print(f"corpus: {valid} valid events, {n_lines} events read in all, now={iso(now)}")


# ---------------------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


def wait_port(port, secs):
    deadline = time.time() + float(secs)
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    die(f"127.0.0.1:{port} does not accept connections after {secs}s")


def create_topic(brokers, topic, partitions):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": brokers, "broker.address.family": "v4"})
    fut = admin.create_topics([NewTopic(topic, int(partitions), 1)], operation_timeout=10)
    for t, f in fut.items():
        f.result(timeout=20)
    md = admin.list_topics(topic, timeout=10)
    got = len(md.topics[topic].partitions)
    if got != int(partitions):
        die(f"topic {topic} has {got} partitions, wanted {partitions}")
    print(f"topic {topic}: {got} partitions")


def roundtrip(brokers, topic):
    from confluent_kafka import Consumer, Producer
    create_topic(brokers, topic, 1)
    token = f"roundtrip-{time.time()}".encode()
    p = Producer({"bootstrap.servers": brokers, "broker.address.family": "v4",
                  "linger.ms": 0, "batch.num.messages": 1, "enable.idempotence": False})
    p.produce(topic, value=token)
    if p.flush(15):
        die("roundtrip: not delivered")
    c = Consumer({"bootstrap.servers": brokers, "broker.address.family": "v4",
                  "group.id": f"rt-{os.getpid()}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    deadline = time.time() + 30
    try:
        while time.time() < deadline:
            m = c.poll(1.0)
            if m is None or m.error():
                continue
            if m.value() == token:
                print(f"roundtrip: consumed back from partition {m.partition()} offset {m.offset()}")
                return
    finally:
        c.close()
    die("roundtrip: message not consumed back within 30s")


def count(brokers, topic, want_lines, secs):
    """Consume the topic from the start with a fresh group until want_lines
    NDJSON lines (messages split on newlines) have been read."""
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": brokers, "broker.address.family": "v4",
                  "group.id": f"count-{os.getpid()}-{time.time()}", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    msgs = lines = 0
    parts = set()
    deadline = time.time() + float(secs)
    try:
        while time.time() < deadline and lines < int(want_lines):
            m = c.poll(1.0)
            if m is None or m.error():
                continue
            msgs += 1
            parts.add(m.partition())
            lines += sum(1 for l in m.value().split(b"\n") if l.strip())
    finally:
        c.close()
    if lines != int(want_lines):
        die(f"broker: consumed {lines} lines in {msgs} messages from {topic}, expected {want_lines}")
    print(f"broker: {topic} holds {msgs} messages, {lines} lines, on partitions {sorted(parts)}")


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def wait_ready(url, secs):
    deadline = time.time() + float(secs)
    last = None
    while time.time() < deadline:
        try:
            status, _ = http_get(url, 2)
            if status == 200:
                return
            last = status
        except urllib.error.HTTPError as e:
            last = e.code
        except OSError as e:
            last = str(e)
        time.sleep(0.5)
    die(f"{url}: not 200 after {secs}s (last: {last})")


def totals(doc):
    req = {f"{s['connector']}/{s['cloud']}": s["requests"] for s in doc["scopes"]}
    return req, doc.get("rejected", {})


def wait_totals(url, expected_file, secs):
    exp = json.load(open(expected_file))
    deadline = time.time() + float(secs)
    last = None
    while time.time() < deadline:
        try:
            _, body = http_get(url)
            doc = json.loads(body)
            req, rej = totals(doc)
            last = (req, rej)
            if req == exp["requests"] and rej == exp["rejected"]:
                print(f"daemon totals match the corpus: {sum(v for k, v in req.items() if k.endswith('/all'))} "
                      f"valid events, rejected {rej}")
                return
        except (OSError, ValueError, KeyError) as e:
            last = repr(e)
        time.sleep(1)
    die(f"daemon totals never matched the corpus within {secs}s\n  expected requests {exp['requests']}"
        f" rejected {exp['rejected']}\n  last seen {last}")


def check_hand(expected_file, report_file):
    exp = json.load(open(expected_file))
    doc = json.load(open(report_file))
    errs = []
    got_status = {f"{s['connector']}/{s['cloud']}": s["status"] for s in doc["scopes"]}
    req, rej = totals(doc)
    if got_status != exp["status"]:
        errs.append(f"status: expected {exp['status']}, got {got_status}")
    if req != exp["requests"]:
        errs.append(f"requests: expected {exp['requests']}, got {req}")
    if rej != exp["rejected"]:
        errs.append(f"rejected: expected {exp['rejected']}, got {rej}")
    keys = [f"{s['connector']}/{s['cloud']}" for s in doc["scopes"]]
    order = sorted(keys, key=lambda k: (k.split("/")[0], k.split("/")[1] != "all", k.split("/")[1]))
    if keys != order:
        errs.append(f"scopes not sorted by connector, then cloud with all first: {keys}")
    if errs:
        die(f"{report_file} disagrees with the verdicts worked by hand:\n  " + "\n  ".join(errs))
    print(f"{os.path.basename(report_file)}: {len(keys)} scopes, statuses as worked by hand")


def diff(a, b, path, out):
    # SPEC section 5: latency quantiles are within 1%, everything else exact
    # (floats to 1e-9; distinct counts are exact below 10,000 values).
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'second' if k not in a else 'first'}")
            else:
                diff(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: length {len(a)} vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{path}[{i}]", out)
    elif isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        if a is not b and a != b:
            out.append(f"{path}: {a!r} vs {b!r}")
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        tol = 0.01 if ".latency_ms." in path else 1e-9
        if abs(a - b) > tol * max(1.0, abs(a), abs(b)):
            out.append(f"{path}: {a!r} vs {b!r}")
    elif a != b:
        out.append(f"{path}: {a!r} vs {b!r}")


def compare(a_file, b_file):
    a, b = json.load(open(a_file)), json.load(open(b_file))
    # SPEC §12: the daemon's JSON names the tasks (partitions) it owns;
    # `report` has no membership. The one member owns every partition.
    for doc, name in ((a, a_file), (b, b_file)):
        if "tasks" in doc:
            parts = doc.pop("tasks")
            partial = doc.pop("members_partial", None)
            # run.sh creates the topic with 3 partitions.
            if partial is not False or parts != [0, 1, 2]:
                die(f"{name}: tasks {parts}, members_partial {partial}: want [0, 1, 2], false")
            print(f"{os.path.basename(name)}: owns tasks {parts}, members_partial false")
    out = []
    diff(a, b, "$", out)
    if out:
        die(f"{a_file} and {b_file} differ:\n  " + "\n  ".join(out[:40]))
    print(f"{os.path.basename(a_file)} == {os.path.basename(b_file)} (floats to 1e-9)")


def prom_query(prom, q):
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    _, body = http_get(url)
    doc = json.loads(body)
    if doc.get("status") != "success":
        raise ValueError(f"query {q}: {doc}")
    return doc["data"]["result"]


def check_prom(prom, expected_file, secs):
    exp = json.load(open(expected_file))
    deadline = time.time() + float(secs)
    problems = ["no query yet"]
    while time.time() < deadline:
        problems = []
        try:
            res = prom_query(prom, "connector_ga_status == 1")
            got = {}
            for r in res:
                m = r["metric"]
                key = f"{m.get('connector')}/{m.get('cloud')}"
                if key in got:
                    problems.append(f"{key}: more than one status at 1: {got[key]}, {m.get('status')}")
                got[key] = m.get("status")
            extra = set(got) - set(exp["status"])
            if extra:
                problems.append(f"connector_ga_status == 1 for unexpected scopes {sorted(extra)}")
            for key, status in exp["status"].items():
                if got.get(key) != status:
                    problems.append(f"connector_ga_status{{{key}}} == 1 on {got.get(key)!r}, expected {status!r}")
            for reason, n in exp["rejected"].items():
                res = prom_query(prom, f'connector_ga_events_rejected_total{{reason="{reason}"}}')
                vals = [float(r["value"][1]) for r in res]
                if vals != [float(n)]:
                    problems.append(f'connector_ga_events_rejected_total{{reason="{reason}"}} = {vals}, expected {n}')
            res = prom_query(prom, "sum(connector_ga_events_total)")
            vals = [float(r["value"][1]) for r in res]
            if vals != [float(exp["events_read"])]:
                problems.append(f"sum(connector_ga_events_total) = {vals}, expected {exp['events_read']}")
            res = prom_query(prom, 'sum(connector_requests_total{connector="shared_good"})')
            vals = [float(r["value"][1]) for r in res]
            if vals != [float(exp["requests"]["shared_good/all"])]:
                problems.append(f'sum(connector_requests_total{{connector="shared_good"}}) = {vals}, '
                                f'expected {exp["requests"]["shared_good/all"]}')
            # "1 on the current status, 0 on the others": all four statuses per scope.
            res = prom_query(prom, "count by (connector, cloud) (connector_ga_status)")
            for r in res:
                if float(r["value"][1]) != 4:
                    problems.append(f"connector_ga_status has {r['value'][1]} series for {r['metric']}, expected 4")
            # Counters carry real clouds only.
            res = prom_query(prom, '{__name__=~"connector_(requests|throttled|failures)_total", cloud="all"}')
            if res:
                problems.append(f"counters with cloud=\"all\": {[r['metric'] for r in res][:3]}")
            # Every metric name of SPEC section 7 is exported.
            res = prom_query(prom, 'count by (__name__) ({__name__=~"connector_.+"})')
            names = {r["metric"]["__name__"] for r in res}
            missing = sorted(set(SPEC_METRICS) - names)
            if missing:
                problems.append(f"metrics of SPEC section 7 not exported: {missing}")
            # Every partition of the topic read to its end (librdkafka statistics
            # come every few seconds, so this may take a few scrapes).
            res = prom_query(prom, "connector_ga_consumer_lag")
            lag = {(r["metric"].get("topic"), r["metric"].get("partition")): float(r["value"][1]) for r in res}
            want = {(exp["topic"], str(p)): 0.0 for p in range(exp["partitions"])}
            if lag != want:
                problems.append(f"connector_ga_consumer_lag = {lag}, expected {want}")
            # A checkpoint has been written, recently.
            res = prom_query(prom, "time() - connector_ga_last_checkpoint_timestamp_seconds")
            vals = [float(r["value"][1]) for r in res]
            if len(vals) != 1 or not 0 <= vals[0] < 120:
                problems.append(f"time() - connector_ga_last_checkpoint_timestamp_seconds = {vals}, expected one value in [0, 120)")
            res = prom_query(prom, 'connector_ga_criterion_met{connector="shared_small",cloud="all",criterion="availability"}')
            if res:
                problems.append(f"connector_ga_criterion_met for undecided shared_small availability is present: {res}")
        except (OSError, ValueError, KeyError) as e:
            problems.append(repr(e))
        if not problems:
            print(f"prometheus: statuses {exp['status']}\n            rejected {exp['rejected']}, "
                  f"events read {exp['events_read']}, consumer lag 0 on {exp['partitions']} partitions, "
                  f"checkpoint written")
            return
        time.sleep(1)
    die("prometheus disagrees after %ss:\n  %s" % (secs, "\n  ".join(problems)))


class Rows(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-connector" in a:
            self.rows.append((a.get("data-connector"), a.get("data-cloud"), a.get("data-status")))

    def handle_data(self, data):
        self.text.append(data)


def check_dom(dom_file, expected_file):
    exp = json.load(open(expected_file))
    p = Rows()
    p.feed(open(dom_file, encoding="utf-8", errors="replace").read())
    text = " ".join(p.text)
    rows = {f"{c}/{cl}": s for c, cl, s in p.rows}
    errs = []
    for key, status in exp["status"].items():
        if key not in rows:
            errs.append(f"no row with data-connector/data-cloud for {key}")
        elif rows[key] != status:
            errs.append(f"row {key}: data-status={rows[key]!r}, expected {status!r}")
    extra = set(rows) - set(exp["status"])
    if extra:
        errs.append(f"unexpected rows: {sorted(extra)}")
    for word in {k.split('/')[0] for k in exp["status"]} | set(exp["status"].values()) | {"gcc", "public", "all"}:
        if word not in text:
            errs.append(f"text {word!r} not shown on the page")
    if errs:
        die(f"{dom_file}:\n  " + "\n  ".join(errs))
    print(f"page: {len(rows)} scope rows, each with its status")


def check_page(url, png, width, text):
    """Loads URL in headless Chromium through the DevTools protocol
    (websocket-client), measures the layout and takes a full-page
    screenshot. Fails when the document is wider than the window (a
    horizontal scrollbar), or TEXT is not in its visible text."""
    import base64
    import subprocess
    import tempfile
    import websocket  # PyPI websocket-client

    width = int(width)
    port_s = socket.socket()
    port_s.bind(("127.0.0.1", 0))
    port = port_s.getsockname()[1]
    port_s.close()
    profile = tempfile.mkdtemp(prefix="ga-chrome-")
    chrome = subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
         f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
         f"--window-size={width},900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        targets = None
        while time.time() < deadline:
            try:
                _, body = http_get(f"http://127.0.0.1:{port}/json/list", 2)
                targets = [t for t in json.loads(body) if t.get("type") == "page"]
                if targets:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        if not targets:
            die("chromium: no DevTools page target within 30 s")
        ws = websocket.create_connection(targets[0]["webSocketDebuggerUrl"], timeout=60)
        ids = iter(range(1, 1 << 30))

        def call(method, **params):
            i = next(ids)
            ws.send(json.dumps({"id": i, "method": method, "params": params}))
            while True:
                msg = json.loads(ws.recv())
                if msg.get("id") == i:
                    if "error" in msg:
                        die(f"chromium: {method}: {msg['error']}")
                    return msg.get("result", {})

        def wait_event(name):
            while True:
                msg = json.loads(ws.recv())
                if msg.get("method") == name:
                    return msg

        call("Page.enable")
        call("Emulation.setDeviceMetricsOverride", width=width, height=900,
             deviceScaleFactor=1, mobile=False)
        call("Page.navigate", url=url)
        wait_event("Page.loadEventFired")

        def js(expr):
            return call("Runtime.evaluate", expression=expr, returnByValue=True)["result"]["value"]

        m = js("({sw: document.documentElement.scrollWidth, cw: document.documentElement.clientWidth,"
               " h: document.documentElement.scrollHeight, text: document.body.innerText,"
               " wide: Array.from(document.querySelectorAll('body *')).filter(e =>"
               "   e.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)"
               "   .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' +"
               "   Math.round(e.getBoundingClientRect().right))})")
        shot = call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                    clip={"x": 0, "y": 0, "width": width, "height": min(m["h"], 8000), "scale": 1})
        with open(png, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        ws.close()
    finally:
        chrome.terminate()
        try:
            chrome.wait(10)
        except subprocess.TimeoutExpired:
            chrome.kill()
    errs = []
    if m["sw"] > m["cw"]:
        errs.append(f"the document is {m['sw']} px wide in a {m['cw']} px window; "
                    f"elements past the edge: {m['wide']}")
    if text not in m["text"]:
        errs.append(f"text {text!r} not on the page")
    if errs:
        die(f"{url}:\n  " + "\n  ".join(errs))
    print(f"{url}: fits {m['cw']} px (document {m['sw']} px wide, {m['h']} px tall), "
          f"shows {text!r}; screenshot {png}")


def main():
    cmds = {
        "gen": (gen, 1), "free-port": (free_port, 0), "wait-port": (wait_port, 2),
        "create-topic": (create_topic, 3), "roundtrip": (roundtrip, 2), "count": (count, 4),
        "wait-ready": (wait_ready, 2), "wait-totals": (wait_totals, 3),
        "check-hand": (check_hand, 2), "compare": (compare, 2),
        "check-prom": (check_prom, 3), "check-dom": (check_dom, 2),
        "check-page": (check_page, 4),
    }
    if len(sys.argv) < 2 or sys.argv[1] not in cmds or len(sys.argv) - 2 != cmds[sys.argv[1]][1]:
        die(__doc__)
    cmds[sys.argv[1]][0](*sys.argv[2:])


if __name__ == "__main__":
    main()
