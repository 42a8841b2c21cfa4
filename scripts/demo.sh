#!/usr/bin/env bash
# The README's main-job command: the recipe lives in recipes/main_job/ (run.sh, its report, its README).
exec bash "$(dirname "${BASH_SOURCE[0]}")/../recipes/main_job/run.sh" "$@"
