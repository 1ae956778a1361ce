#!/usr/bin/env bash
# Measures (measure.sh) and fails if any figure exceeds its budget (budget).
set -euo pipefail
cd "$(dirname "$0")"
figures=$(bash measure.sh 2>/dev/null)
status=0
while read -r name bytes; do
  limit=$(awk -v n="$name" '$1 == n { print $2 }' budget)
  if [ -z "$limit" ]; then
    echo "$name $bytes (no budget)"; status=1
  elif [ "$bytes" -gt "$limit" ]; then
    echo "$name $bytes OVER its budget of $limit"; status=1
  else
    echo "$name $bytes (budget $limit)"
  fi
done <<< "$figures"
exit $status
