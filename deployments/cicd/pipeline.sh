#!/usr/bin/env bash
# The CI/CD pipeline for a project of aiorch flows, as a plain script: the GitHub Actions
# workflow beside it (github-actions.yml) runs the same stages, and any other CI system
# can call it as it is. Run it from the project's root (where prefect.yaml is).
#
#   deployments/cicd/pipeline.sh check            # lint, tests, the evaluation gate
#   deployments/cicd/pipeline.sh image            # build (and push) the flow image
#   deployments/cicd/pipeline.sh deploy staging   # environment, then prefect deploy
#   deployments/cicd/pipeline.sh all dev          # everything, in that order
#
# Settings (environment variables; defaults in brackets):
#   PIPELINE_LINT   lint command            [ruff check . && ruff format --check .]
#   PIPELINE_TEST   test command            [python -m pytest -q]
#   PIPELINE_EVAL   `aiorch eval run` arguments; the gate runs only when set, e.g.
#                   "evals/capitals.jsonl --agent geography --min-score 0.8"
#   PIPELINE_IMAGE  image tag to build from ./Dockerfile; no image stage when unset
#   PIPELINE_PUSH   1 to push PIPELINE_IMAGE after building                     [0]
#   PIPELINE_DEPLOY arguments of `prefect deploy`                  [--all]
# The target server comes from the environment's Prefect profile or PREFECT_API_URL with
# PREFECT_API_KEY / PREFECT_API_AUTH_STRING, as for any Prefect command.
set -euo pipefail

stage=${1:?usage: pipeline.sh check|image|deploy|all [ENVIRONMENT]}
environment=${2:-}

say() { printf '\n== pipeline: %s\n' "$*"; }

check() {
    say "lint"
    bash -c "${PIPELINE_LINT:-ruff check . && ruff format --check .}"
    say "tests"
    bash -c "${PIPELINE_TEST:-python -m pytest -q}"
    if [ -n "${PIPELINE_EVAL:-}" ]; then
        say "evaluation gate: aiorch eval run $PIPELINE_EVAL"
        # Exit codes 1-4 (gate failed, regression, errors, bad input) stop the pipeline.
        # shellcheck disable=SC2086  # the arguments are meant to split
        aiorch eval run $PIPELINE_EVAL
    else
        say "evaluation gate: skipped (PIPELINE_EVAL is not set)"
    fi
}

image() {
    if [ -z "${PIPELINE_IMAGE:-}" ]; then
        say "image: skipped (PIPELINE_IMAGE is not set)"
        return
    fi
    say "image: docker build -t $PIPELINE_IMAGE ."
    docker build -t "$PIPELINE_IMAGE" .
    if [ "${PIPELINE_PUSH:-0}" = 1 ]; then
        say "image: docker push $PIPELINE_IMAGE"
        docker push "$PIPELINE_IMAGE"
    fi
}

deploy() {
    [ -n "$environment" ] || { echo "pipeline: deploy needs an environment (dev, staging, prod)" >&2; exit 2; }
    say "environment: aiorch environment apply $environment"
    aiorch environment apply "$environment"
    say "deploy: prefect --no-prompt deploy ${PIPELINE_DEPLOY:---all}"
    # shellcheck disable=SC2086  # the arguments are meant to split
    prefect --no-prompt deploy ${PIPELINE_DEPLOY:---all}
}

case "$stage" in
    check) check ;;
    image) image ;;
    deploy) deploy ;;
    all) check; image; deploy ;;
    *) echo "pipeline: unknown stage '$stage' (check, image, deploy or all)" >&2; exit 2 ;;
esac
say "$stage: done"
