#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the demo on the bundled real data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/pyclams demo -o "${1:-pyclams_demo}"
