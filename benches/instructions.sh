#!/usr/bin/env bash
# Instructions per message for the codec, counted by callgrind: each operation runs
# N1 and N2 times and the difference is divided by N2 - N1, so start-up cost cancels.
# Usage: benches/instructions.sh   (needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench codec --no-run 2>/dev/null
bin=$(ls -t target/release/deps/codec-* | grep -v '\.d$' | head -n1)
N1=1000 N2=11000
count() { # op fixture n -> instructions
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" count "$1" "$2" "$3" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
printf '%-8s %-8s %12s\n' op fixture instr/msg
for op in parse minimal build; do
  for fx in a b c; do
    a=$(count "$op" "$fx" $N1); b=$(count "$op" "$fx" $N2)
    printf '%-8s %-8s %12.1f\n' "$op" "$fx" "$(echo "($b - $a) / ($N2 - $N1)" | bc -l)"
  done
done
