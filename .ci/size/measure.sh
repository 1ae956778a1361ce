#!/usr/bin/env bash
# Prints one line per item, `NAME BYTES`: what the linker keeps (.text + .rodata) of a
# Cortex-M4 image (thumbv7em-none-eabihf, opt-level "z", LTO, panic = "abort",
# --gc-sections) that uses one part of the crate, and the size_of of three endpoint
# configurations on that target (see src/main.rs). The `*-own` lines leave out of the
# image before them what is not the crate's code: compiler_builtins (`memcpy`, `memset`,
# `memcmp`, which a C firmware takes from its libc, as nanocoap does) and the probe's
# `_start`. The largest functions of each image go to stderr. `.ci/size/check.sh`
# compares the figures with `budget`.
set -euo pipefail
cd "$(dirname "$0")"
rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || true
ELF=target/thumbv7em-none-eabihf/release/coap-size-probe
# The layout, and source paths remapped so that the panic locations in .rodata are the
# same length wherever the repository is checked out.
REPO=$(cd ../.. && pwd)
export RUSTFLAGS="-C link-arg=-Tprobe.x -C link-arg=--gc-sections --remap-path-prefix=$REPO=/coap-proto"
image() { # feature -> .text + .rodata bytes of the linked image
  cargo build -q --release --target thumbv7em-none-eabihf --features "$1"
  echo "== $1: largest functions" >&2
  readelf -s -W "$ELF" | awk '$4 == "FUNC" && $3 > 0 { print "  " $3 "\t" $8 }' | sort -rn | head -8 >&2
  elf section-bytes
}
elf() { # section-bytes | own-bytes | symbol NAME: read off the 32-bit ELF image
  python3 - "$ELF" "$@" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
shoff, = struct.unpack_from("<I", data, 0x20)
shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2e)
secs = [struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize) for i in range(shnum)]
names = secs[shstrndx]
def name(at, table):
    return data[table[4] + at:data.index(b"\0", table[4] + at)].decode()
kept = sum(s[5] for s in secs if name(s[0], names) in (".text", ".rodata"))
if sys.argv[2] == "section-bytes":
    print(kept)
    sys.exit()
symtab = next(s for s in secs if s[1] == 2)
strtab = secs[symtab[6]]
def symbols():
    for off in range(symtab[4], symtab[4] + symtab[5], 16):
        yield struct.unpack_from("<IIIBBH", data, off)
if sys.argv[2] == "own-bytes":
    # What the C runtime would give a nanocoap image (compiler_builtins: memcpy,
    # memset, memcmp, shifts) and the probe's `_start` are not the crate's code.
    theirs = {}
    for at, value, size, info, other, shndx in symbols():
        n = name(at, strtab)
        if size and ("compiler_builtins" in n or n.startswith("__aeabi_")
                     or n in ("memcpy", "memmove", "memset", "memcmp", "bcmp", "_start")):
            theirs[value & ~1] = size
    print(kept - sum(theirs.values()))
    sys.exit()
for at, value, size, info, other, shndx in symbols():
    if name(at, strtab) == sys.argv[3]:
        sec = secs[shndx]
        print(struct.unpack_from("<I", data, sec[4] + value - sec[3])[0])
        break
else:
    sys.exit("no symbol " + sys.argv[3])
PY
}
echo "codec-parse $(image codec-parse)"
echo "codec-build $(image codec-build)"
echo "codec $(image codec)"
echo "codec-own $(elf own-bytes)"
echo "codec-fmt $(image fmt)"
echo "endpoint-client $(image endpoint-client)"
echo "endpoint-server $(image endpoint-server)"
echo "endpoint $(image endpoint)"
echo "endpoint-own $(elf own-bytes)"
echo "endpoint-no-echo $(image endpoint,no-echo)"
echo "endpoint-client-no-echo $(image endpoint-client,no-echo)"
echo "endpoint-server-no-echo $(image endpoint-server,no-echo)"
echo "ram-small $(elf symbol RAM_SMALL)"
echo "ram-one $(elf symbol RAM_ONE)"
echo "ram-default $(elf symbol RAM_DEFAULT)"
