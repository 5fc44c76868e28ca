#!/bin/bash
# An idle grid: a scheduler and N runner processes (one slot each) with nothing to do. Prints
# the HTTP requests a second (every route, from /metrics) and the scheduler's CPU over SECONDS,
# after 8 s to start.
# usage: benches/scripts/idle-grid.sh SCHEDULER_BINARY RUNNER_BINARY N SECONDS
set -eu
scheduler=$1 runner=$2 n=$3 secs=$4
d=$(mktemp -d)
"$scheduler" serve --data-dir "$d/data" --listen 127.0.0.1:0 > "$d/addr" 2> "$d/log" &
spid=$!
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$d"' EXIT
for _ in $(seq 1 100); do [ -s "$d/addr" ] && break; sleep 0.1; done
url=$(head -1 "$d/addr" | grep -o "http://[0-9.:]*")
for k in $(seq 1 "$n"); do
  "$runner" --scheduler "$url" --owner "idle$k" --slots 1 --quiet --state-dir "$d/r$k" > /dev/null 2>&1 &
done
sleep 8
requests() { curl -s "$url/metrics" | awk '/^helio_http_requests_total/ {s += $2} END {print s}'; }
ticks() { awk '{print $14 + $15}' "/proc/$spid/stat"; }
r0=$(requests) c0=$(ticks)
sleep "$secs"
r1=$(requests) c1=$(ticks)
# One request less: the first /metrics read counts itself.
echo "$n idle runners: $(echo "($r1 - $r0 - 1) / $secs" | bc -l | cut -c1-6) requests/s, scheduler CPU $(echo "($c1 - $c0) / $secs" | bc -l | cut -c1-5)% of a core"
