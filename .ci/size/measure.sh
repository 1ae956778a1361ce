#!/usr/bin/env bash
# Prints the .text bytes the codec and the whole endpoint take on thumbv7em-none-eabihf
# at opt-level "z" with LTO and panic = "abort": the codec without and with the Display
# impls, and a SmallEndpoint driven through every entry point (both roles, block-wise).
set -euo pipefail
cd "$(dirname "$0")"
rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || true
measure() { # cargo feature args -> text bytes of the probe's own (LTO) object
  cargo build -q --release --target thumbv7em-none-eabihf "$@"
  local dir; dir=$(mktemp -d)
  (cd "$dir" && ar x "$OLDPWD/target/thumbv7em-none-eabihf/release/libcoap_size_probe.a")
  # LTO folds the crate, the probe and the parts of core they use into one object;
  # compiler_builtins stays apart and is not counted.
  local obj; obj=$(ls "$dir"/coap_size_probe*.o | head -n1)
  local total=0 size
  for size in $(readelf -S -W "$obj" | awk '$2 ~ /^\.text/ { print $6 }'); do total=$((total + 16#$size)); done
  echo "$total"
  echo "symbols:" >&2
  readelf -s -W "$obj" | awk '$4 == "FUNC" && $3 > 0 { print "  " $3 "\t" $8 }' | sort -rn | head -12 >&2
  rm -rf "$dir"
}
echo "parse + option walk + typed getters:            $(measure --features only-parse) bytes of .text"
echo "builder with typed setters:                     $(measure --features only-build) bytes of .text"
echo "codec (parse + walk + getters + typed builder): $(measure) bytes of .text"
echo "with Display (links core::fmt):                 $(measure --features fmt) bytes of .text"
echo "endpoint (SmallEndpoint<u8>, both roles, block-wise): $(measure --features endpoint) bytes of .text"
echo "endpoint with Observe used in both roles:             $(measure --features observe) bytes of .text"
