# shellcheck shell=bash
# Shared by the scripts in this folder: find the project's invoke.
#
# The virtualenv: $PREDEPLOY_VENV, else .venv/ or venv/ in the project, else `invoke`
# on PATH. Prints the program's path; returns 1 when there is none.
find_invoke() {
    local root=$1 venv
    for venv in "${PREDEPLOY_VENV:-}" "$root/.venv" "$root/venv"; do
        if [ -n "$venv" ] && [ -x "$venv/bin/invoke" ]; then
            echo "$venv/bin/invoke"
            return 0
        fi
    done
    command -v invoke
}
