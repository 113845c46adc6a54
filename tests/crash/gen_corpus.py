#!/usr/bin/env python3
"""Generate a deterministic NDJSON corpus of connector events (SPEC section 2).

Every line is exactly one event as far as connector_ga_events_total is
concerned: a valid event, an invalid-but-JSON-object event (one rejection), or
a malformed line (one malformed_json rejection). No JSON arrays, no blank
lines, so `events_total == number of lines`.

Timestamps lie in [now - days, now - 120 s], so nothing is too_old or
from_future however long the test takes (well under the 5-minute skew).

Profiles:
  normal   several connectors/clouds, a few thousand users and connections,
           429 / 5xx / backend faults, ~--malformed of malformed lines and a
           few other rejections (unknown_cloud, invalid_status, ...).
  hostile  --malformed of lines malformed, --connector-ids random connector
           ids (more than max_series) with --events-per-connector valid
           events each, random user / connection ids from big pools.

Prints a JSON summary (lines, expected rejections by reason where the corpus
alone decides it) on stdout.
"""
import argparse
import json
import random
import sys
import time
from datetime import datetime, timezone

CLOUDS = ["public", "gcc", "gcc-high", "dod", "azure-government", "mooncake"]
CLOUD_W = [70, 10, 6, 4, 6, 4]
CONNECTORS = ["shared_contoso", "shared_fabrikam", "shared_adatum",
              "shared_tailspin", "shared_wingtip"]
CONNECTOR_W = [40, 25, 15, 12, 8]
OPS = ["ListItems", "GetItem", "CreateItem", "UpdateItem", "DeleteItem"]


def iso(ms):
    dt = datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def malformed(rng, ts_ms):
    k = rng.randrange(8)
    if k == 0:
        return b"not json at all"
    if k == 1:  # truncated object
        return ('{"ts":"%s","connector":"shared_contoso","status":2' % iso(ts_ms)).encode()
    if k == 2:  # valid JSON, not an object
        return str(rng.randrange(10**6)).encode()
    if k == 3:
        return b'"just a string"'
    if k == 4:  # invalid UTF-8 bytes
        return b'{"ts":"\xff\xfe","connector":"x"}'
    if k == 5:  # trailing garbage after an object
        return ('{"ts":%d,"connector":"shared_fabrikam"} trailing' % ts_ms).encode()
    if k == 6:
        return b"{]"
    return ('{"ts":"%s","connector":"shared_adatum","status":200,,}' % iso(ts_ms)).encode()


def other_reject(rng, ts_ms):
    """A JSON object rejected for a reason other than malformed_json."""
    k = rng.randrange(5)
    if k == 0:
        return {"connector": "shared_contoso", "status": 200}, "missing_field"
    if k == 1:
        return {"ts": iso(ts_ms), "connector": "shared_contoso", "cloud": "mars"}, "unknown_cloud"
    if k == 2:
        return {"ts": iso(ts_ms), "connector": "shared_contoso", "status": "200"}, "invalid_status"
    if k == 3:
        return {"ts": iso(ts_ms), "connector": "bad connector!"}, "invalid_connector"
    return {"ts": 1.5, "connector": "shared_contoso"}, "invalid_timestamp"


def normal_event(rng, ts_ms, users, conns):
    conn_i = rng.randrange(conns)
    # A few "bad" connections fail a lot, so SLO is neither 0 nor 1.
    bad_conn = conn_i % 97 == 0
    r = rng.random()
    fault = None
    if r < 0.03:
        status = 429
    elif r < (0.06 if bad_conn else 0.038):
        status = rng.choice([500, 502, 503, 504])
        f = rng.random()
        if f < 0.4:
            fault = "backend"
        elif f < 0.55:
            fault = "connector"
    elif r < 0.048:
        status = rng.choice([400, 401, 403, 404])
        if rng.random() < 0.1:
            fault = "connector"
    elif r < 0.050:
        status = rng.choice([0, None])
    else:
        status = rng.choice([200, 200, 200, 201, 204, 302])
    ev = {
        "ts": iso(ts_ms) if rng.random() < 0.8 else ts_ms,
        "connector": rng.choices(CONNECTORS, CONNECTOR_W)[0],
    }
    if rng.random() < 0.95:
        ev["cloud"] = rng.choices(CLOUDS, CLOUD_W)[0]
    if status is not None or rng.random() < 0.5:
        ev["status"] = status
    if fault is not None:
        ev["fault"] = fault
    elif rng.random() < 0.01:
        ev["fault"] = None
    if rng.random() < 0.9:
        ev["latency_ms"] = round(rng.lognormvariate(5.0, 0.8), 1)
    if rng.random() < 0.97:
        ev["user"] = "u-%05d" % (int(rng.paretovariate(0.8) * 3) % users)
    if rng.random() < 0.97:
        ev["connection"] = "c-%05d" % conn_i
    ev["operation"] = rng.choice(OPS)
    if rng.random() < 0.01:
        ev["extra_unknown_field"] = {"nested": [1, 2, 3]}
    return ev


def hostile(a, rng, out, lo, hi):
    """--connector-ids random ids, each with exactly --events-per-connector
    valid events (so however the consumer interleaves partitions, exactly
    max_series ids are admitted and series_limit = (ids - max_series) x
    per-connector events), shuffled, with --malformed of all lines malformed;
    users and connections random from pools of --users / --connections."""
    ids = set()
    while len(ids) < a.connector_ids:
        ids.add("h-%012x" % rng.getrandbits(48))
    ids = sorted(ids)
    order = [i for i in range(len(ids)) for _ in range(a.events_per_connector)]
    rng.shuffle(order)
    malformed_n = 0
    lines = 0
    buf = []
    k = 0
    while k < len(order):
        ts_ms = rng.randrange(lo, hi)
        if lines > 0 and rng.random() < a.malformed:
            buf.append(malformed(rng, ts_ms))
            malformed_n += 1
        else:
            status = 200 if rng.random() < 0.95 else 503
            buf.append(('{"ts":%d,"connector":"%s","cloud":"public","status":%d,'
                        '"latency_ms":%d,"user":"u%x","connection":"c%x"}'
                        % (ts_ms, ids[order[k]], status, rng.randrange(1, 5000),
                           rng.randrange(a.users), rng.randrange(a.connections))).encode())
            k += 1
        lines += 1
        if len(buf) >= 10000:
            out.write(b"\n".join(buf) + b"\n")
            buf = []
    if buf:
        out.write(b"\n".join(buf) + b"\n")
    return lines, malformed_n, len(order)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--now-ms", type=int, default=None, help="default: wall clock")
    ap.add_argument("--days", type=float, default=20.0)
    ap.add_argument("--profile", choices=["normal", "hostile"], default="normal")
    ap.add_argument("--malformed", type=float, default=0.01, help="share of malformed lines")
    ap.add_argument("--other-rejects", type=float, default=0.004)
    ap.add_argument("--users", type=int, default=4000)
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--connector-ids", type=int, default=2500, help="hostile")
    ap.add_argument("--events-per-connector", type=int, default=600, help="hostile")
    a = ap.parse_args()

    rng = random.Random(a.seed)
    now_ms = a.now_ms if a.now_ms is not None else int(time.time() * 1000)
    hi = now_ms - 120_000
    lo = now_ms - int(a.days * 86_400_000)
    rejects = {}
    lines = 0
    if a.profile == "hostile":
        with open(a.out, "wb") as out:
            lines, bad, valid = hostile(a, rng, out, lo, hi)
        json.dump({"lines": lines, "now_ms": now_ms, "valid": valid,
                   "connector_ids": a.connector_ids,
                   "events_per_connector": a.events_per_connector,
                   "rejects": {"malformed_json": bad}}, sys.stdout)
        print()
        return
    with open(a.out, "wb") as out:
        for i in range(a.events):
            ts_ms = rng.randrange(lo, hi)
            if i > 0 and rng.random() < a.malformed:  # line 0 stays valid
                out.write(malformed(rng, ts_ms) + b"\n")
                rejects["malformed_json"] = rejects.get("malformed_json", 0) + 1
            elif a.profile == "normal":
                if rng.random() < a.other_rejects:
                    ev, why = other_reject(rng, ts_ms)
                    rejects[why] = rejects.get(why, 0) + 1
                else:
                    ev = normal_event(rng, ts_ms, a.users, a.connections)
                out.write(json.dumps(ev, separators=(",", ":")).encode() + b"\n")
            else:
                raise AssertionError("hostile lines are written by hostile()")
            lines += 1
    summary = {"lines": lines, "now_ms": now_ms, "rejects": rejects}
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
