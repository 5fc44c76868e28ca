#!/bin/bash
# A batch submitted to warm, idle runners: 8 runner processes (2 slots each) idle for 10 s,
# then the example batch MANIFEST submitted; prints the time from the submission's answer
# until every task is accepted (`helio status --json` every 20 ms).
# usage: benches/scripts/batch-start.sh SCHEDULER_BINARY RUNNER_BINARY HELIO_BINARY MANIFEST
set -eu
scheduler=$1 runner=$2 helio=$3 manifest=$4
d=$(mktemp -d)
"$scheduler" serve --data-dir "$d/data" --listen 127.0.0.1:0 > "$d/addr" 2> "$d/log" &
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$d"' EXIT
for _ in $(seq 1 100); do [ -s "$d/addr" ] && break; sleep 0.1; done
url=$(head -1 "$d/addr" | grep -o "http://[0-9.:]*")
token=$("$scheduler" token create --role submitter --data-dir "$d/data" 2> /dev/null | tail -1)
for k in $(seq 1 8); do
  "$runner" --scheduler "$url" --owner "s$k" --slots 2 --quiet --state-dir "$d/r$k" > /dev/null 2>&1 &
done
sleep 10
batch=$("$helio" submit "$manifest" --scheduler "$url" --token "$token" --json \
  | python3 -c "import json, sys; print(json.load(sys.stdin)['batch'])")
t0=$(date +%s.%N)
until "$helio" status "$batch" --scheduler "$url" --token "$token" --json | python3 -c \
  "import json, sys; s = json.load(sys.stdin); sys.exit(0 if s['succeeded'] + s['failed'] == s['tasks'] else 1)"; do
  sleep 0.02
done
t1=$(date +%s.%N)
echo "every task accepted $(echo "$t1 - $t0" | bc | cut -c1-5) s after the submission's answer"
