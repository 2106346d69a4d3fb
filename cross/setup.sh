#!/usr/bin/env bash
# Install what cross/build.sh and cross/smoke.sh need, from the ordinary registries (PyPI,
# crates.io, rustup, Debian apt). Idempotent; safe to run on every CI run.
set -euo pipefail

# zig is the C cross compiler and linker for every target (musl libc included), so no
# per-target gcc toolchains are needed.
# cargo-zigbuild finds it as `python3 -m ziglang` when no `zig` is on PATH.
if ! python3 -m ziglang version >/dev/null 2>&1; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip
    fi
    # Debian's own python refuses plain `pip install` (PEP 668); nothing else uses ziglang.
    python3 -m pip install --quiet ziglang 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages ziglang
fi
python3 -m ziglang version
if ! command -v cargo-zigbuild >/dev/null 2>&1; then
    cargo install --locked cargo-zigbuild
fi
# Tier-2 targets ship a prebuilt std. Where rustup cannot fetch it (it happens: a 404 for
# armv7 on some dist mirrors), build.sh builds std from source with nightly instead.
for t in aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf x86_64-unknown-linux-musl; do
    rustup target add "$t" >/dev/null 2>&1 || echo "note: no prebuilt std for $t; build.sh will use -Zbuild-std"
done
# MIPS is tier 3: nightly builds std from source (rust-src).
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
rustup component add rust-src --toolchain nightly

if [ "${1:-}" = "--smoke" ]; then
    export DEBIAN_FRONTEND=noninteractive
    command -v qemu-mipsel-static >/dev/null 2>&1 ||
        apt-get install -y -qq qemu-user-static openssh-server openssh-client
fi
