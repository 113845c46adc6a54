#!/usr/bin/env bash
# Checks everything under deploy/. Runs from any working directory:
#   deploy/check.sh
# Needs promtool, python3 and the release binary (cargo build --release, or
# CONNECTOR_GA_BIN=PATH); systemd-analyze and kubectl are used when present.
set -euo pipefail

deploy="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$deploy/.."   # the repository root, so messages show deploy/... paths
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

step() { printf '\n== %s\n' "$*"; }

command -v promtool >/dev/null || { echo "promtool not found (apt-get install prometheus)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 not found" >&2; exit 1; }

# The rule file is generated (`connector-ga-exporter rules`, SPEC section 11):
# the committed one must be exactly the output for the default config.
bin="${CONNECTOR_GA_BIN:-target/release/connector-ga-exporter}"
[ -x "$bin" ] || { echo "$bin not found: run cargo build --release first (or set CONNECTOR_GA_BIN)" >&2; exit 1; }

step "rules: deploy/prometheus/connector-ga-rules.yml is the output of \`rules\` for the default config"
# env -i: no CONNECTOR_GA__* variable of the caller may change the thresholds.
env -i PATH="$PATH" "$bin" rules >"$tmp/connector-ga-rules.yml"
if ! diff -u deploy/prometheus/connector-ga-rules.yml "$tmp/connector-ga-rules.yml"; then
  echo "deploy/prometheus/connector-ga-rules.yml is stale: regenerate it with" >&2
  echo "  $bin rules > deploy/prometheus/connector-ga-rules.yml" >&2
  exit 1
fi
echo "OK: identical"

step "rules: promtool check rules on the output for a non-default config"
cat >"$tmp/custom.toml" <<'TOML'
[criteria]
window_days = 7
availability = 0.999
success_rate = 0.95
exception_success_rate = 0.9
success_rate_formula = "isv"
[state]
checkpoint_interval_seconds = 600
TOML
env -i PATH="$PATH" "$bin" rules --config "$tmp/custom.toml" >"$tmp/custom-rules.yml"
grep -q 'connector_cloud:availability_error_ratio:rate1h / 0.001$' "$tmp/custom-rules.yml" ||
  { echo "the custom config's availability budget (1 - 0.999 = 0.001) is not in its rules" >&2; exit 1; }
promtool check rules "$tmp/custom-rules.yml"

step "promtool check rules"
promtool check rules deploy/prometheus/*rules.yml

step "promtool test rules"
promtool test rules deploy/prometheus/*test.yml

step "promtool check config (example prometheus.yml; rule_files resolve next to it)"
promtool check config deploy/prometheus/prometheus.yml

step "dashboard: JSON, metrics exported or recorded"
python3 deploy/check_dashboard.py

step "systemd units"
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify needs an executable ExecStart: point it at a dummy one in a copy.
  printf '#!/bin/sh\nexit 0\n' >"$tmp/connector-ga-exporter"
  chmod +x "$tmp/connector-ga-exporter"
  # The template is verified as one instance of it (member 9795).
  for pair in connector-ga-exporter.service:connector-ga-exporter.service \
              connector-ga-exporter@.service:connector-ga-exporter@9795.service; do
    src="${pair%%:*}" unit="${pair##*:}"
    sed "s#/usr/local/bin/connector-ga-exporter#$tmp/connector-ga-exporter#g" \
      "deploy/systemd/$src" >"$tmp/$unit"
    status=0
    out="$(systemd-analyze verify "$tmp/$unit" 2>&1)" || status=$?
    [ -z "$out" ] || printf '%s\n' "$out"
    # verify exits 0 on unknown keys or bad values, so read what it says about
    # our unit; other messages (no systemd as PID 1, other units) do not count.
    if printf '%s\n' "$out" | grep -qF "$unit"; then
      echo "systemd-analyze verify reported problems with deploy/systemd/$src" >&2
      exit 1
    fi
    if [ "$status" -ne 0 ] && [ -z "$out" ]; then
      echo "systemd-analyze verify failed on deploy/systemd/$src (exit $status)" >&2
      exit 1
    fi
    [ "$status" -eq 0 ] || echo "(systemd-analyze exited $status, not about the unit: tolerated)"
    echo "OK: deploy/systemd/$src"
  done
else
  echo "SKIP: systemd-analyze not installed"
fi

step "Kubernetes manifests parse; ConfigMap matches config.example.toml"
if ! python3 -c 'import yaml' 2>/dev/null; then
  python3 -m pip install --quiet pyyaml
fi
python3 - "$deploy" <<'PY'
import glob, os, sys, tomllib, yaml
deploy = sys.argv[1]
errors = []
docs_by_kind = {}
for path in sorted(glob.glob(os.path.join(deploy, "kubernetes", "*.y*ml"))):
    name = os.path.relpath(path, os.path.dirname(deploy))
    try:
        docs = [d for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d is not None]
    except yaml.YAMLError as e:
        errors.append(f"{name}: {e}")
        continue
    if not docs:
        errors.append(f"{name}: empty")
    for d in docs:
        if not isinstance(d, dict) or "apiVersion" not in d or "kind" not in d:
            errors.append(f"{name}: a document without apiVersion/kind")
            continue
        docs_by_kind.setdefault(d["kind"], []).append(d)
    print(f"OK: {name} ({', '.join(d.get('kind', '?') for d in docs if isinstance(d, dict))})")

kust = docs_by_kind.get("Kustomization", [{}])[0]
listed = set(kust.get("resources", []))
present = {os.path.basename(p) for p in glob.glob(os.path.join(deploy, "kubernetes", "*.y*ml"))}
present.discard("kustomization.yaml")
for missing in sorted(present - listed):
    errors.append(f"kustomization.yaml does not list {missing}")
for absent in sorted(listed - present):
    errors.append(f"kustomization.yaml lists missing {absent}")

example = open(os.path.join(deploy, "config.example.toml"), encoding="utf-8").read()
try:
    tomllib.loads(example)
except tomllib.TOMLDecodeError as e:
    errors.append(f"config.example.toml: {e}")
cms = docs_by_kind.get("ConfigMap", [])
if not cms or cms[0].get("data", {}).get("config.toml") != example:
    errors.append("kubernetes/configmap.yaml config.toml differs from config.example.toml")

sts = docs_by_kind.get("StatefulSet", [{}])[0]
env = sts.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])[0].get("env", [])
if not any(e.get("name") == "CONNECTOR_GA__KAFKA__GROUP_INSTANCE_ID"
           and e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name"
           for e in env):
    errors.append("statefulset.yaml: CONNECTOR_GA__KAFKA__GROUP_INSTANCE_ID must come from metadata.name")

# Several members share one state store (SPEC section 12): no per-pod
# ReadWriteOnce volume, and the store named (an object store URL, or a
# ReadWriteMany claim mounted as the state directory).
pod = sts.get("spec", {}).get("template", {}).get("spec", {})
if sts.get("spec", {}).get("volumeClaimTemplates"):
    errors.append("statefulset.yaml: volumeClaimTemplates give each member its own state; the store must be shared")
shared_claim = any(v.get("persistentVolumeClaim") for v in pod.get("volumes", []) if v.get("name") == "state")
if not shared_claim and not any(e.get("name") == "CONNECTOR_GA__STATE__URL" for e in env):
    errors.append("statefulset.yaml: name the shared state store (CONNECTOR_GA__STATE__URL, or a ReadWriteMany claim as volume `state`)")
if sts.get("spec", {}).get("replicas", 1) > 1:
    pdb = docs_by_kind.get("PodDisruptionBudget", [{}])[0].get("spec", {})
    if pdb.get("maxUnavailable") != 1:
        errors.append("pdb.yaml: maxUnavailable 1 (one member evicted at a time)")

for e in errors:
    print(f"ERROR: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY

if command -v kubectl >/dev/null 2>&1; then
  step "kubectl kustomize (offline build)"
  kubectl kustomize deploy/kubernetes >"$tmp/kustomized.yaml"
  echo "OK: $(grep -c '^kind:' "$tmp/kustomized.yaml") objects"
fi

printf '\nAll deploy checks passed.\n'
