# Shared by bin/*: make sure the project's virtualenv exists and matches setup.cfg.
# Sourced, not run. Sets VENV. Installs only when setup.cfg (or the wanted extras) changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DIM_VENV:-$ROOT/.venv}"

dim_ensure_venv() {
    local extras="${1:-}"
    local spec="$ROOT"
    [ -n "$extras" ] && spec="$ROOT[$extras]"
    local want
    want="$(cat "$ROOT/setup.cfg" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)-${extras:-base}"
    local stamp="$VENV/.dim-installed"
    if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && grep -qx -- "$want" "$stamp"; then
        return 0
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        echo "dim: creating the virtualenv in $VENV (first run)..." >&2
        local py="${PYTHON:-python3}"
        "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
            echo "dim: Python 3.11 or newer is needed ($py is $("$py" --version 2>&1))" >&2; exit 1; }
        "$py" -m venv "$VENV"
    fi
    echo "dim: installing dependencies${extras:+ (with $extras extras)}..." >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec" >&2
    # Installing a larger set of extras covers the smaller ones too.
    {
        cat "$stamp" 2>/dev/null || true
        echo "$want"
        if [ -n "$extras" ]; then echo "${want%-*}-base"; fi
    } | sort -u > "$stamp.new"
    mv "$stamp.new" "$stamp"
}
