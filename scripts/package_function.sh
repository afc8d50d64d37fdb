#!/usr/bin/env bash
# Assemble the Cloud Function's source: trigger/*.py at the top (main.py is the entry point),
# the light rooms of the workers package it shares with the services (workers/core: contracts,
# job identity, settings, ports, logs; workers/adapters; the composition root, which imports
# engines only when a service asks for them), the JSON Schemas the contracts name, and a
# requirements.txt with only what the trigger needs. Nothing is copied to be deleted again.
#
#   scripts/package_function.sh [OUT_DIR] [ZIP]
#
# OUT_DIR defaults to infra/terraform/build/function, where Terraform zips it from. With ZIP,
# a zip of OUT_DIR is written too (for `gcloud functions deploy --source`).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$repo/infra/terraform/build/function}"
zip_path="${2:+$(realpath -m "$2")}"

if [[ ! -f "$repo/trigger/main.py" ]]; then
  echo "package_function: $repo/trigger/main.py not found" >&2
  exit 1
fi

rm -rf "$out"
mkdir -p "$out"
cp "$repo"/trigger/*.py "$out/"
mkdir -p "$out/workers"
cp "$repo/workers/__init__.py" "$repo/workers/composition.py" "$out/workers/"
cp -R "$repo/workers/core" "$repo/workers/adapters" "$out/workers/"
find "$out" \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +
mkdir -p "$out/schemas"
cp "$repo"/schemas/*.json "$out/schemas/"
cp "$repo/docker/requirements-trigger.txt" "$out/requirements.txt"

if [[ -n "$zip_path" ]]; then
  rm -f "$zip_path"
  (cd "$out" && python3 -m zipfile -c "$zip_path" ./*)
fi
echo "function source: $out${zip_path:+ ($zip_path)}"
