#!/usr/bin/env bash
# The runtime install's size, as the README states it: a fresh venv, `pip install .` (no extras), then du over
# site-packages, with the venv's own pip/setuptools counted apart and the largest packages listed. Also checks that
# a successful predict prints nothing on stderr.
#
#   bash benchmarks/install_size.sh            # PYTHON=python3 VENV=/tmp/edgedetect-size
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-/tmp/edgedetect-size}
rm -rf "$VENV" build
"$PYTHON" -m venv "$VENV"
site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
own=$(du -sk "$site" | cut -f1)                           # the empty venv: pip, setuptools
"$VENV/bin/pip" install -q . 2>&1 | grep -v "^WARNING: Location" || true
rm -rf build
total=$(du -sk "$site" | cut -f1)
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
echo "$("$PYTHON" --version), $(uname -m), $(date -u +%F)"
mb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k * 1024 / 1e6 }'; }
echo "site-packages: $(mib "$total") = $(mb "$total") (the empty venv's own pip/setuptools: $(mib "$own"); edgedetect brings $(mib $((total - own))))"
du -sk "$site"/* | sort -rn | head -8 | while read -r k path; do echo "  $(mib "$k")  $(basename "$path")"; done
stderr=$(cd /tmp && "$VENV/bin/edgedetect" predict "$OLDPWD/imgs/fake/5.jpg" 2>&1 >/dev/null)
echo "stderr of a successful predict: ${stderr:-(nothing)}"
