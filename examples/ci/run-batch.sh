#!/usr/bin/env bash
# Runs one batch on a Helio grid from a CI pipeline: upload, submit, wait, download.
#
#   run-batch.sh BATCH_DIR s3://BUCKET/PREFIX
#
# BATCH_DIR holds batch.json and the module and inputs it names by relative URIs (what
# `helio pack --out BATCH_DIR` writes). It is uploaded under PREFIX, submitted from there,
# and once every task is accepted the outputs and results.json are written to
# PREFIX/results/.
#
# Settings come from the environment: HELIO_SCHEDULER and HELIO_TOKEN for the scheduler;
# the standard AWS variables or files for the bucket (AWS_ENDPOINT_URL for an S3-compatible
# store; aws-cli 1.29.58 or 2.13 and later read it); HELIO and AWS name other binaries.
#
# Exit status is helio's, for the pipeline to branch on:
#   0 every task accepted and succeeded    1 accepted, but some task failed
#   2 the manifest, or an object it names, is wrong (missing, hash mismatch)
#   3 scheduler unreachable    4 scheduler refused (token, role)
#   5 results could not be written    6 object storage unreachable or access denied
# Results are downloaded for 0 and 1 alike: a failed task's results.json entry says why.
set -euo pipefail

if [ $# -ne 2 ] || [ ! -f "$1/batch.json" ] || [[ "$2" != s3://* ]]; then
    echo "usage: $0 BATCH_DIR s3://BUCKET/PREFIX  (BATCH_DIR holds batch.json)" >&2
    exit 2
fi
dir=$1
prefix=${2%/}
helio=${HELIO:-helio}
aws=${AWS:-aws}

echo "uploading $dir to $prefix/" >&2
if ! "$aws" s3 sync "$dir" "$prefix/" --only-show-errors; then
    echo "cannot upload $dir to $prefix/" >&2
    exit 6
fi

"$helio" validate "$prefix/batch.json" >&2

# The batch id is the first line helio prints, as soon as the batch is submitted; progress
# goes to standard error.
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
"$helio" submit "$prefix/batch.json" --wait >"$out"
status=$?
set -e
batch=$(head -n 1 "$out")
if [ -z "$batch" ] || { [ "$status" -ne 0 ] && [ "$status" -ne 1 ]; }; then
    exit "$status"
fi

# helio results exits 1 too when some task failed; anything above 1 is a real failure.
fetched=0
"$helio" results "$batch" --out "$prefix/results/" >&2 || fetched=$?
if [ "$fetched" -gt 1 ]; then
    exit "$fetched"
fi
echo "batch $batch: results in $prefix/results/ (exit status $status)" >&2
exit "$status"
