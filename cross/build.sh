#!/usr/bin/env bash
# Build fully static (musl) router binaries with the size-tuned [profile.router].
#   cross/build.sh [TARGET...]     default: all five targets below
# Output: target/cross/snapnest-<target>. Prints each binary's size and build time and exits
# non-zero when a binary is over its budget or is not static. Run cross/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL=(mipsel-unknown-linux-musl mips-unknown-linux-musl armv7-unknown-linux-musleabihf
     aarch64-unknown-linux-musl x86_64-unknown-linux-musl)

# Size budgets in KiB: about 5% above what this tree measured (cross/README.md), so a
# dependency or profile change that grows the binary stops the build and gets a look. What a
# router pays is flash: on its compressed overlay (JFFS2/UBIFS) a binary costs roughly its
# gzip size (mipsel 3.4 MiB), which fits the free space of a 16 MiB-flash OpenWrt box; on
# an 8 MiB one it goes on the USB disk (Entware's /opt, or extroot). MIPS is larger: its
# code is less dense and OpenSSL runs without assembly there.
budget_kib() {
    case "$1" in
        mipsel-*) echo "${SNAPNEST_BUDGET_KIB:-8750}" ;;    # measured 8328
        mips-*) echo "${SNAPNEST_BUDGET_KIB:-8750}" ;;      # measured 8325
        aarch64-*) echo "${SNAPNEST_BUDGET_KIB:-6850}" ;;   # measured 6508
        x86_64-*) echo "${SNAPNEST_BUDGET_KIB:-8400}" ;;    # measured 8223
        armv7-*) echo "${SNAPNEST_BUDGET_KIB:-6300}" ;;     # measured 6012
        *) echo "${SNAPNEST_BUDGET_KIB:-8100}" ;;           # any other: as x86_64
    esac
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL[@]}")

out=target/cross
mkdir -p "$out"
# crt-static: the MIPS musl targets default to dynamic linking (OpenWrt's own musl); a
# static binary runs on any firmware version and on Entware's /opt alike.
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
nice=(nice -n 10)
# Call zig directly rather than as `python3 -m ziglang`, which costs a Python start for each
# of the ~1000 C files of OpenSSL and SQLite: point cargo-zigbuild at the binary inside the
# pip package and make its Python lookup (tried first) miss.
if ! command -v zig >/dev/null 2>&1; then
    zig=$(python3 -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
    [ -x "$zig" ] && export CARGO_ZIGBUILD_ZIG_PATH="$zig" CARGO_ZIGBUILD_PYTHON_PATH=/nonexistent/python3
fi

# OpenSSL is here only for libssh2, which guards every algorithm it uses: leave out what SSH
# never needs (and error strings), about 1 MiB of the provider tables' code. Configure
# options for every target (cross/openssl-configure.sh); SNAPNEST_OPENSSL_TRIM overrides.
OPENSSL_COMMON="${SNAPNEST_OPENSSL_TRIM-no-dsa no-md4 no-mdc2 no-rc2 no-rc4 no-bf no-cast no-des
    no-whirlpool no-rmd160 no-sm2 no-sm3 no-sm4 no-aria no-siphash no-scrypt no-ocb no-siv
    no-ec2m no-gost no-cms no-ts no-ocsp no-ct no-cmp no-http no-srp no-srtp no-quic
    no-ml-dsa no-slh-dsa no-lms no-argon2 no-err no-filenames}"
OPENSSL_COMMON=$(echo $OPENSSL_COMMON) # one line, for the stamp

# llvm-objcopy ships with every Rust toolchain as rust-objcopy (next to its libLLVM).
sysroot=$(rustc --print sysroot)
rust_objcopy() {
    LD_LIBRARY_PATH="$sysroot/lib" \
        "$sysroot/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/rust-objcopy" "$@"
}

report=()
failed=0
t_all=$(date +%s)
for t in "${targets[@]}"; do
    t0=$(date +%s)
    args=(zigbuild --locked --profile router --features vendored-openssl --target "$t")
    ossl_opts="$OPENSSL_COMMON"
    case "$t" in
        mips-* | mipsel-*)
            # 32-bit MIPS has no 64-bit atomics and zig has no libatomic: OpenSSL's own
            # switch makes it use locks instead of __atomic_is_lock_free & co.
            v="CFLAGS_${t//-/_}"
            export "$v=${!v:-} -DBROKEN_CLANG_ATOMICS"
            # OpenSSL's MIPS assembly, as zig's clang assembles it, crashes or computes
            # wrong hashes (SHA-1 segfaults, see cross/README.md): the SSH key exchange
            # failed. The C implementations are correct.
            ossl_opts="$ossl_opts no-asm"
            ;;
    esac
    # openssl-src has no switch for extra Configure options: it runs $OPENSSL_SRC_PERL
    # ./Configure, and our stand-in appends them. Cargo does not see that variable, so a
    # change of options cleans openssl-sys by hand (a stamp per target).
    export OPENSSL_SRC_PERL="$PWD/cross/openssl-configure.sh" SNAPNEST_OPENSSL_CONFIGURE="$ossl_opts"
    tdir="${CARGO_TARGET_DIR:-target}/$t/router"
    stamp="$tdir/.openssl-configure"
    if [ -d "$tdir" ] && [ "$(cat "$stamp" 2>/dev/null)" != "$ossl_opts" ]; then
        cargo clean --quiet --profile router --target "$t" -p openssl-sys
    fi
    if rustup target list --installed | grep -qx "$t"; then
        "${nice[@]}" cargo "${args[@]}"
    else
        # Tier 3 (MIPS), or no prebuilt std reachable: nightly builds std from source.
        # There are no prebuilt crt1.o & co. either: let zig's musl supply the start files.
        # zig's musl is 1.2: 64-bit time_t, the plain names (`utimensat`, `stat`...) kept only
        # as 32-bit-time shims for old binaries. The libc crate binds those shims unless told
        # musl is 1.2, while rustix (libc backend on MIPS) hands libc 64-bit timespecs: every
        # mtime set went wrong (the probe read back another time than it set). With this the
        # libc crate (std's too) binds the __*_time64 functions, as C code gets from musl's
        # headers, and file times are y2038-safe.
        # The libc inside std reads the environment variable; the crates.io libc takes the
        # cfg (a flag cargo tracks: an old target dir rebuilds instead of keeping time32).
        time64=0 flags="$RUSTFLAGS -C link-self-contained=no"
        case "$t" in
            mips-* | mipsel-* | armv7-*) time64=1 flags="$flags --cfg libc_unstable_musl_v1_2" ;;
        esac
        RUST_LIBC_UNSTABLE_MUSL_V1_2_3=$time64 RUSTFLAGS="$flags" \
            "${nice[@]}" cargo +nightly "${args[@]}" -Zbuild-std=std,panic_unwind
    fi
    mkdir -p "$tdir" && echo "$ossl_opts" > "$stamp"
    bin="$out/snapnest-$t"
    cp "$tdir/snapnest" "$bin"
    case "$t" in
        # MIPS objects carry a .pdr section (procedure descriptors for debuggers), about 700
        # KiB that is never loaded; `strip` keeps it. objcopy from the Rust toolchain drops it.
        mips-* | mipsel-*) rust_objcopy --remove-section=.pdr "$bin" ;;
    esac
    secs=$(($(date +%s) - t0))
    kib=$(( ($(stat -c %s "$bin") + 1023) / 1024 ))
    budget=$(budget_kib "$t")
    verdict=ok
    # Static (or static-pie): no program interpreter and no shared libraries needed.
    if readelf -l "$bin" | grep -q INTERP || readelf -d "$bin" | grep -q NEEDED; then
        verdict="NOT STATIC"
        failed=1
    elif [ "$kib" -gt "$budget" ]; then
        verdict="OVER BUDGET ($budget KiB)"
        failed=1
    fi
    report+=("$(printf '%-34s %6d KiB  budget %5d KiB  %4ds  %s' "$t" "$kib" "$budget" "$secs" "$verdict")")
done

echo
echo "snapnest router binaries (profile router, static musl) in $out/:"
printf '%s\n' "${report[@]}"
echo "total build time: $(($(date +%s) - t_all))s"
exit $failed
