# shellcheck shell=bash
# Sourced by scripts/demo, scripts/test and scripts/env.sh: finds a Python >= 3.12,
# creates the project's virtual environment, installs the project into it, and exports
# the embedded-Prefect defaults. Installing is skipped when nothing it depends on changed.

AIORCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
AIORCH_VENV=${AIORCH_VENV:-$AIORCH_ROOT/.venv}
AIORCH_STAMP=$AIORCH_VENV/.aiorch-installed

# Prefect keeps its SQLite database, profiles and results under the project unless the
# user chose a home or a server; telemetry calls fail offline and slow every start.
export PREFECT_HOME=${PREFECT_HOME:-$AIORCH_ROOT/.prefect}
export PREFECT_SERVER_ANALYTICS_ENABLED=${PREFECT_SERVER_ANALYTICS_ENABLED:-false}

aiorch_say() { printf 'aiorch: %s\n' "$*" >&2; }

# Succeeds when $1 runs a Python >= 3.12 that can create virtual environments with pip.
aiorch_python_ok() {
    "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}

aiorch_find_python() {
    local candidate root
    if [ -n "${AIORCH_PYTHON:-}" ]; then
        if aiorch_python_ok "$AIORCH_PYTHON"; then
            echo "$AIORCH_PYTHON"
            return 0
        fi
        aiorch_say "AIORCH_PYTHON=$AIORCH_PYTHON is not a Python >= 3.12 with venv and ensurepip; unset it or point it at one"
        return 1
    fi
    for candidate in python3.13 python3.12 python3.14 python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 && aiorch_python_ok "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    # pyenv's shims only expose the selected version; its other versions are still usable.
    if command -v pyenv >/dev/null 2>&1 && root=$(pyenv root 2>/dev/null); then
        for candidate in $(ls -d "$root"/versions/3.1[2-9]* 2>/dev/null | sort -rV); do
            if aiorch_python_ok "$candidate/bin/python3"; then
                echo "$candidate/bin/python3"
                return 0
            fi
        done
    fi
    if command -v uv >/dev/null 2>&1; then
        if candidate=$(uv python find '>=3.12' 2>/dev/null) && aiorch_python_ok "$candidate"; then
            echo "$candidate"
            return 0
        fi
        aiorch_say "no Python >= 3.12 found; installing one with uv (uv python install 3.13)"
        uv python install 3.13 >&2 && candidate=$(uv python find 3.13) && echo "$candidate" && return 0
    fi
    cat >&2 <<'HELP'
aiorch: no Python >= 3.12 (with venv and ensurepip) was found on PATH, in pyenv or via uv.
aiorch needs one because fast-agent-mcp 0.10 requires Python 3.12 or newer. Any of these works:
  - pyenv install 3.13 (the script finds pyenv versions by itself)
  - uv python install 3.13
  - Debian/Ubuntu: apt-get install python3.12 python3.12-venv; macOS: brew install python@3.13
  - or point AIORCH_PYTHON at an interpreter: AIORCH_PYTHON=/path/to/python3.13 scripts/demo
HELP
    return 1
}

aiorch_fingerprint() {
    cat "$AIORCH_ROOT/pyproject.toml" "$AIORCH_ROOT/constraints.txt" | sha256sum | cut -c1-16
}

# aiorch_setup EXTRAS: make .venv hold the project with the comma-separated EXTRAS.
aiorch_setup() {
    local extras=$1 python fingerprint target
    fingerprint=$(aiorch_fingerprint)
    if [ -x "$AIORCH_VENV/bin/python" ] && [ -f "$AIORCH_STAMP" ] && aiorch_python_ok "$AIORCH_VENV/bin/python"; then
        local stamp_fingerprint stamp_extras
        read -r stamp_fingerprint stamp_extras <"$AIORCH_STAMP"
        if [ "$stamp_fingerprint" = "$fingerprint" ] && aiorch_extras_cover "${stamp_extras:-}" "$extras"; then
            aiorch_say "environment up to date ($AIORCH_VENV)"
            return 0
        fi
    fi
    if ! [ -x "$AIORCH_VENV/bin/python" ] || ! aiorch_python_ok "$AIORCH_VENV/bin/python"; then
        python=$(aiorch_find_python) || return 1
        aiorch_say "creating $AIORCH_VENV with $python ($("$python" -V 2>&1))"
        rm -rf "$AIORCH_VENV"
        "$python" -m venv "$AIORCH_VENV" || return 1
    fi
    target="$AIORCH_ROOT"
    [ -n "$extras" ] && target="$AIORCH_ROOT[$extras]"
    aiorch_say "installing ${target#"$AIORCH_ROOT"} into $AIORCH_VENV (a minute on a fresh machine)"
    rm -f "$AIORCH_STAMP"
    # llama.cpp (the model extra) compiles from source; portable flags, both cores.
    export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF}"
    export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"
    local progress=
    if [[ ",$extras," == *",model,"* ]] && ! "$AIORCH_VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
        aiorch_say "the model extra compiles llama.cpp from source: about 8 min on a 2-core machine the first time (seconds once pip has cached the wheel)"
        aiorch_progress &
        progress=$!
    fi
    # Machines whose pip config lists absent local indexes warn once per package; drop
    # just those lines so real warnings stay readable.
    local status=0
    "$AIORCH_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -c "$AIORCH_ROOT/constraints.txt" -e "$target" 2>&1 |
        { grep -v "^WARNING: Location 'file://.*' is ignored" || true; } >&2 || status=1
    if [ -n "$progress" ]; then
        kill "$progress" 2>/dev/null || true
        wait "$progress" 2>/dev/null || true
    fi
    [ "$status" -eq 0 ] || return 1
    echo "$fingerprint $extras" >"$AIORCH_STAMP"
}

# Say every 30 s that the install still runs (until killed).
aiorch_progress() {
    local started=$SECONDS nap=
    trap '[ -n "$nap" ] && kill "$nap" 2>/dev/null; exit 0' TERM
    while true; do
        sleep 30 &
        nap=$!
        wait "$nap"
        aiorch_say "still installing ($(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s so far)"
    done
}

# Succeeds when the installed extras ($1) include every requested one ($2).
aiorch_extras_cover() {
    local wanted
    for wanted in ${2//,/ }; do
        case ",$1," in *",$wanted,"*) ;; *) return 1 ;; esac
    done
}
