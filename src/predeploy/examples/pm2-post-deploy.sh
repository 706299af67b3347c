#!/usr/bin/env bash
# pm2-post-deploy.sh [ENV] [predeploy deploy options...]
#
# For setups without pm2's deploy section (a CI job, a git hook, a hand-run
# `git pull`): once the new code is in place, does what ecosystem.config.js's
# post-deploy hook does: `npm ci --omit=dev` (when package-lock.json exists), then
# `predeploy deploy --env ENV --yes` (migrate with a verified backup, pm2 reload
# PREDEPLOY_PM2_APP, wait until it is healthy). ENV defaults to prod. Exits with predeploy's
# exit code (README): 0 deployed, 5 migration failed, 7 unhealthy after the reload.
#
#   scripts/pm2-post-deploy.sh                 prod
#   scripts/pm2-post-deploy.sh staging --restart
#
# The virtualenv: $PREDEPLOY_VENV, else .venv/ or venv/ in the project, else `predeploy` on PATH.
set -euo pipefail

env_name=prod
if [ $# -ge 1 ] && [ "${1#-}" = "$1" ]; then
    env_name=$1
    shift
fi
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
    echo "pm2-post-deploy: predeploy not found (not in $root/.venv/bin, $root/venv/bin, \$PREDEPLOY_VENV/bin or on PATH): install it into the project: python3 -m venv .venv && .venv/bin/pip install /opt/predeploy (a checkout or wheel of predeploy)" >&2
    exit 2
fi
if [ -f package-lock.json ]; then
    npm ci --omit=dev --no-audit --no-fund
fi
exec "$program" deploy --env "$env_name" --yes "$@"
