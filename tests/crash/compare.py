#!/usr/bin/env python3
"""Compare the daemon's /api/v1/criteria JSON with `report --format json`.

Every key of every scope must match: integers and booleans exactly, floats
(availability, success_rate, slo) to 1e-9, the rejected map exactly, the
scope list (connector, cloud) exactly. Latency quantiles are compared exactly
too; a difference within SPEC section 5's 1% is reported separately as a
warning (--latency-tolerance) rather than hidden.

Optionally also checks the rejected map against the generator's expectation
(--expected-rejects, the generator's JSON summary) for the reasons the corpus
alone decides (malformed_json, missing_field, ...).
Exit 0 on match, 1 on mismatch; prints every difference.
"""
import argparse
import json
import math
import sys

FLOAT_TOL = 1e-9


def diff(path, a, b, out, lat_warn, lat_tol):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'daemon' if k in a else 'report'}")
                continue
            diff(f"{path}.{k}", a[k], b[k], out, lat_warn, lat_tol)
        return
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: length {len(a)} != {len(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            diff(f"{path}[{i}]", x, y, out, lat_warn, lat_tol)
        return
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None \
            or isinstance(a, str) or isinstance(b, str):
        if a != b:
            out.append(f"{path}: daemon {a!r} != report {b!r}")
        return
    if isinstance(a, int) and isinstance(b, int):
        if a != b:
            out.append(f"{path}: daemon {a} != report {b}")
        return
    # floats
    if ".latency_ms." in path:
        if a != b:
            rel = abs(a - b) / max(abs(b), 1e-12)
            msg = f"{path}: daemon {a} != report {b} (rel {rel:.2e})"
            if rel <= lat_tol:
                lat_warn.append(msg)
            else:
                out.append(msg)
        return
    if not (math.isfinite(a) and math.isfinite(b)) or abs(a - b) > FLOAT_TOL:
        out.append(f"{path}: daemon {a!r} != report {b!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("daemon_json")
    ap.add_argument("report_json")
    ap.add_argument("--expected-rejects", help="generator summary JSON file")
    ap.add_argument("--latency-tolerance", type=float, default=0.01)
    a = ap.parse_args()
    d = json.load(open(a.daemon_json))
    r = json.load(open(a.report_json))
    out, lat_warn = [], []

    if d.get("now") != r.get("now"):
        out.append(f"now: daemon {d.get('now')} != report {r.get('now')}")
    for k in ("criteria_window_days",):
        if d.get(k) != r.get(k):
            out.append(f"{k}: daemon {d.get(k)} != report {r.get(k)}")
    diff("rejected", d.get("rejected"), r.get("rejected"), out, lat_warn, a.latency_tolerance)

    key = lambda s: (s["connector"], s["cloud"])
    ds = {key(s): s for s in d["scopes"]}
    rs = {key(s): s for s in r["scopes"]}
    if [key(s) for s in d["scopes"]] != [key(s) for s in r["scopes"]]:
        out.append(f"scope lists differ: only daemon {sorted(set(ds) - set(rs))[:10]}, "
                   f"only report {sorted(set(rs) - set(ds))[:10]}")
    for k in sorted(set(ds) & set(rs)):
        diff(f"scopes[{k[0]}/{k[1]}]", ds[k], rs[k], out, lat_warn, a.latency_tolerance)

    if a.expected_rejects:
        exp = json.load(open(a.expected_rejects))["rejects"]
        got = {k: v for k, v in d.get("rejected", {}).items() if v}
        for reason in sorted(set(exp) | set(got)):
            if exp.get(reason, 0) != got.get(reason, 0):
                out.append(f"rejected[{reason}]: daemon {got.get(reason, 0)} != "
                           f"corpus {exp.get(reason, 0)}")

    nscopes = len(ds)
    nvalues = sum(len(s) for s in d["scopes"])
    print(f"compared {nscopes} scopes ({nvalues} top-level values), "
          f"rejected={json.dumps(d.get('rejected'), sort_keys=True)}")
    for w in lat_warn:
        print("  latency within tolerance but not identical:", w)
    for o in out[:60]:
        print("  MISMATCH", o)
    if len(out) > 60:
        print(f"  ... {len(out) - 60} more mismatches")
    sys.exit(1 if out else 0)


if __name__ == "__main__":
    main()
