#!/usr/bin/env python3
"""Check the Grafana dashboard (and the Prometheus rules) against the metrics
connector-ga-exporter exports.

  python3 deploy/check_dashboard.py [--dashboard FILE] [--rules FILE ...]

Fails (exit 1) when
  - the dashboard is not valid JSON, or not shaped like a dashboard;
  - a panel query or a template-variable query names a metric that is neither
    exported by the daemon (SPEC.md section 7 plus its self-metrics, listed
    below) nor recorded by a rule of the rules file(s);
  - a rule of the rules file(s) reads such an unknown metric;
  - panel ids repeat, or a query uses an undefined template variable.

Standard library only: the rules YAML is read with a small line parser that
understands what the rules file uses (`record:`, `alert:`, `expr:` inline or
as a `|` / `>` block).
"""

import argparse
import json
import os
import re
import sys

# SPEC.md sections 7, 11 and 12.
SPEC_METRICS = {
    "connector_requests_total",
    "connector_throttled_total",
    "connector_failures_total",
    "connector_availability_ratio",
    "connector_success_ratio",
    "connector_slo_ratio",
    "connector_latency_seconds",
    "connector_weekly_active_users",
    "connector_monthly_active_connections",
    "connector_ga_criterion_met",
    "connector_ga_status",
    "connector_ga_events_total",
    "connector_ga_events_rejected_total",
    "connector_ga_consumer_lag",
    "connector_ga_last_checkpoint_timestamp_seconds",
    # section 11
    "connector_ga_budget_remaining",
    "connector_ga_recovers_timestamp_seconds",
    "connector_ga_exception_opens_timestamp_seconds",
    # section 12
    "connector_ga_tasks_owned",
}
# Self-metrics of the daemon.
SELF_METRICS = {
    "connector_ga_kafka_connected",
    "connector_ga_build_info",
    "connector_ga_checkpoint_failures_total",
    # the standard process collector (prometheus crate, Linux)
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_virtual_memory_max_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
    "process_threads",
}
# Series Prometheus itself attaches to every scrape target.
SCRAPE_METRICS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

EXPORTED = SPEC_METRICS | SELF_METRICS | SCRAPE_METRICS

# Words of PromQL that look like identifiers but are not metric names.
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "offset", "bool", "inf", "nan", "atan2", "start", "end",
}
# Grafana's built-in variables.
GRAFANA_VARS = {
    "__rate_interval", "__interval", "__interval_ms", "__range", "__range_s",
    "__range_ms", "__dashboard", "__from", "__to", "__name", "__org", "__user",
    "timeFilter", "__timeFilter",
}

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DASHBOARD = os.path.join(HERE, "grafana", "connector-ga-dashboard.json")
DEFAULT_RULES = [os.path.join(HERE, "prometheus", "connector-ga-rules.yml")]

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r'__name__\s*=\s*"((?:[^"\\]|\\.)*)"')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\]")
_IDENT = re.compile(r"(?<![\w.:$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def metric_names(expr):
    """The metric names a PromQL expression reads (best effort, no parser)."""
    names = set(_NAME_MATCHER.findall(expr))
    text = _STRING.sub('""', expr)
    text = _GRAFANA_VAR.sub("1", text)
    text = _BRACES.sub("", text)
    text = _BRACKETS.sub("", text)
    text = _GROUPING.sub("", text)
    for match in _IDENT.finditer(text):
        word, call = match.group(1), match.group(2)
        if call or word in KEYWORDS:
            continue  # a function or aggregation, or an operator
        names.add(word)
    return names


def variable_refs(expr):
    refs = set()
    for m in re.finditer(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]", expr):
        refs.add(next(g for g in m.groups() if g))
    return refs


def template_query_exprs(query):
    """PromQL inside a Grafana Prometheus template-variable query."""
    query = query.strip()
    m = re.fullmatch(r"label_values\((.*)\)", query, re.S)
    if m:
        inner = m.group(1)
        # label_values(label) has no metric; label_values(expr, label) has one.
        depth, split = 0, None
        for i, ch in enumerate(inner):
            if ch in "({[":
                depth += 1
            elif ch in ")}]":
                depth -= 1
            elif ch == "," and depth == 0:
                split = i
        return [inner[:split]] if split is not None else []
    m = re.fullmatch(r"query_result\((.*)\)", query, re.S)
    if m:
        return [m.group(1)]
    if re.fullmatch(r"(label_names|metrics)\(.*\)", query, re.S):
        return []
    return [query]


def parse_rules(path):
    """[(kind, name, expr)] of a Prometheus rules YAML file, kind in record|alert."""
    rules = []
    lines = open(path, encoding="utf-8").read().splitlines()
    current = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^\s*-?\s*(record|alert):\s*(\S+)\s*$", line)
        if m:
            current = [m.group(1), m.group(2).strip("'\""), None]
            rules.append(current)
            i += 1
            continue
        m = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if m and current is not None:
            indent, rest = len(m.group(1)), m.group(2).strip()
            if rest and rest[0] in "|>":
                block = []
                i += 1
                while i < len(lines) and (not lines[i].strip()
                                          or len(lines[i]) - len(lines[i].lstrip()) > indent):
                    block.append(lines[i].strip())
                    i += 1
                current[2] = "\n".join(block)
                continue
            if rest[:1] in "\"'":
                rest = rest[1:-1]
            current[2] = rest
        i += 1
    return [tuple(r) for r in rules]


def walk_panels(panels):
    for panel in panels or []:
        yield panel
        yield from walk_panels(panel.get("panels"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dashboard", default=DEFAULT_DASHBOARD)
    ap.add_argument("--rules", nargs="+", default=DEFAULT_RULES)
    args = ap.parse_args()
    errors = []

    # ---- rules
    recorded = set()
    rules = []
    for path in args.rules:
        try:
            found = parse_rules(path)
        except OSError as e:
            errors.append(f"{path}: {e}")
            continue
        if not found:
            errors.append(f"{path}: no rules found")
        for kind, name, expr in found:
            if expr is None:
                errors.append(f"{path}: {kind} {name} has no expr")
                continue
            rules.append((path, kind, name, expr))
            if kind == "record":
                recorded.add(name)
    known = EXPORTED | recorded
    for path, kind, name, expr in rules:
        for metric in sorted(metric_names(expr) - known):
            errors.append(f"{os.path.basename(path)}: {kind} {name} reads unknown metric {metric}")

    # ---- dashboard
    try:
        with open(args.dashboard, encoding="utf-8") as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        errors.append(f"{args.dashboard}: not valid JSON: {e}")
        dash = None

    if dash is not None:
        if not isinstance(dash, dict) or not isinstance(dash.get("panels"), list):
            errors.append(f"{args.dashboard}: no 'panels' list")
            dash = {"panels": []}
        for key in ("title", "uid"):
            if not dash.get(key):
                errors.append(f"dashboard has no {key}")
        variables = {v.get("name") for v in dash.get("templating", {}).get("list", [])}
        defined_vars = variables | GRAFANA_VARS

        queries = []  # (where, expr)
        for var in dash.get("templating", {}).get("list", []):
            if var.get("type") != "query":
                continue
            q = var.get("query")
            q = q.get("query", "") if isinstance(q, dict) else (q or var.get("definition", ""))
            for expr in template_query_exprs(q):
                queries.append((f"variable ${var.get('name')}", expr))

        ids = {}
        panel_count = 0
        for panel in walk_panels(dash["panels"]):
            title = panel.get("title", "?")
            pid = panel.get("id")
            if pid in ids:
                errors.append(f"panel id {pid} used by '{ids[pid]}' and '{title}'")
            ids[pid] = title
            if panel.get("type") == "row":
                continue
            panel_count += 1
            targets = panel.get("targets") or []
            if not targets:
                errors.append(f"panel '{title}' has no query")
            for t in targets:
                expr = t.get("expr")
                if not expr:
                    errors.append(f"panel '{title}' target {t.get('refId')} has no expr")
                    continue
                queries.append((f"panel '{title}'", expr))
        if panel_count == 0:
            errors.append("dashboard has no panels")

        used = set()
        for where, expr in queries:
            names = metric_names(expr)
            if not names:
                errors.append(f"{where}: no metric in query {expr!r}")
            used |= names
            for metric in sorted(names - known):
                errors.append(f"{where}: unknown metric {metric} in {expr!r}")
            for var in sorted(variable_refs(expr) - defined_vars):
                errors.append(f"{where}: undefined variable ${var} in {expr!r}")

    for e in errors:
        print(f"ERROR: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"OK: {len(rules)} rules ({len(recorded)} recording), dashboard "
          f"{os.path.basename(args.dashboard)}: {len(queries)} queries over "
          f"{len(used)} metrics, all exported or recorded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
