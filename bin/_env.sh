# Shared by bin/*: make sure the project's virtualenv exists and holds exactly the lock's versions.
# Sourced, not run. Sets VENV. Installs only when the lock (or the wanted extras) changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DIM_VENV:-$ROOT/.venv}"

# dim_ensure_venv [EXTRAS]: EXTRAS is a comma-separated list of setup.cfg extras ("test,desktop").
# Every package comes from requirements/ (bin/lock writes it from setup.cfg) with its hash checked,
# builds use the lock's setuptools (no build isolation, so nothing unlocked is downloaded), and the
# project itself is installed editable without dependencies.
dim_ensure_venv() {
    local extras="${1:-}"
    local req="$ROOT/requirements"
    local locks=("$req/base.txt")
    local extra
    for extra in ${extras//,/ }; do
        [ -f "$req/$extra.txt" ] || { echo "dim: no lock for the extra '$extra' (run bin/lock)" >&2; exit 1; }
        locks+=("$req/$extra.txt")
    done
    local want
    want="$(cat "$ROOT/setup.cfg" "$ROOT/pyproject.toml" "$req"/*.txt | sha256sum | cut -c1-16)-${extras:-base}"
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
    echo "dim: installing the locked dependencies${extras:+ (with the $extras extras)}..." >&2
    local pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps)
    "${pip[@]}" -r "$req/build.txt" >&2
    local args=() lock
    for lock in "${locks[@]}"; do args+=(-r "$lock"); done
    "${pip[@]}" --no-build-isolation "${args[@]}" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
        -e "$ROOT" >&2
    # Installing a larger set of extras covers the smaller ones too.
    {
        cat "$stamp" 2>/dev/null || true
        echo "$want"
        if [ -n "$extras" ]; then echo "${want%-*}-base"; fi
    } | sort -u > "$stamp.new"
    mv "$stamp.new" "$stamp"
}
