# shellcheck shell=bash
# Source this to work in the project's environment by hand:
#   source scripts/env.sh && prefect server start
# It sets up the environment (with the dev extras) like scripts/test does, then activates it.
source "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"
aiorch_setup "dev,docs" && source "$AIORCH_VENV/bin/activate"
