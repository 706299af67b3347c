#!/usr/bin/env bash
# run-migrations.sh ENV [predeploy migrate options...]
#
# For operators used to runbook scripts: runs `predeploy migrate --env ENV` from the
# project root (this script's parent folder) with the project's virtualenv, passing
# every other argument through, and exits with predeploy's exit code (see README).
#
#   scripts/run-migrations.sh prod             asks for the database name on a terminal
#   scripts/run-migrations.sh prod --yes       confirmed in advance (logged with your name)
#   scripts/run-migrations.sh staging --dry-run
#
# The virtualenv: $PREDEPLOY_VENV, else .venv/ or venv/ in the project, else `predeploy` on PATH.
set -euo pipefail

if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
env_name=$1
shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
program=
for venv in "${PREDEPLOY_VENV:-}" "$root/.venv" "$root/venv"; do
    if [ -n "$venv" ] && [ -x "$venv/bin/predeploy" ]; then
        program="$venv/bin/predeploy"
        break
    fi
done
program=${program:-$(command -v predeploy || true)}
if [ -z "$program" ]; then
    echo "run-migrations: predeploy not found (not in $root/.venv/bin, $root/venv/bin, \$PREDEPLOY_VENV/bin or on PATH): install it into the project: python3 -m venv .venv && .venv/bin/pip install /opt/predeploy (a checkout or wheel of predeploy)" >&2
    exit 2
fi
exec "$program" migrate --env "$env_name" "$@"
