#!/usr/bin/env bash
# Build an .ipk the way OpenWrt's scripts/ipkg-build does: a gzip'd tar holding
# ./debian-binary ("2.0"), ./data.tar.gz and ./control.tar.gz, in that order, owned by root,
# reproducible (sorted, fixed mtime, gzip -n).
#   packaging/build-ipk.sh BINARY TARGET openwrt|entware [OUTDIR]
# TARGET is the Rust target triple the binary was built for (cross/build.sh); it picks the
# opkg architecture name (override with SNAPNEST_IPK_ARCH for another subtarget).
# Prints the path of the package.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"

[ $# -ge 3 ] || { sed -n '5,8p' "$0" >&2; exit 2; }
binary=$1 target=$2 flavour=$3 outdir=${4:-$root/target/ipk}
[ -f "$binary" ] || { echo "no binary at $binary" >&2; exit 2; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}

# The binaries are static, so one package fits every subtarget of an architecture; these are
# the commonest opkg names (OpenWrt: ramips/mt7621, ath79, cortex-a7 boards, a53 boards, x86;
# Entware: its generic builds).
arch_for() {
    case "$flavour:$target" in
        openwrt:mipsel-*) echo mipsel_24kc ;;
        openwrt:mips-*) echo mips_24kc ;;
        openwrt:armv7-*) echo arm_cortex-a7_neon-vfpv4 ;;
        openwrt:aarch64-*) echo aarch64_cortex-a53 ;;
        openwrt:x86_64-*) echo x86_64 ;;
        entware:mipsel-*) echo mipselsf-k3.4 ;;
        entware:mips-*) echo mipssf-k3.4 ;;
        entware:armv7-*) echo armv7sf-k3.2 ;;
        entware:aarch64-*) echo aarch64-k3.10 ;;
        entware:x86_64-*) echo x64-k3.2 ;;
        *) echo "no opkg architecture for flavour '$flavour' and target '$target'" >&2; return 2 ;;
    esac
}
arch=${SNAPNEST_IPK_ARCH:-$(arch_for)}

case "$flavour" in
    openwrt) prefix="" bindir=/usr/bin initscript=/etc/init.d/snapnest ;;
    entware) prefix=/opt bindir=/opt/bin initscript=/opt/etc/init.d/S90snapnest ;;
esac
conf="$prefix/etc/snapnest/snapnest.toml"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data="$work/data" ctrl="$work/control"
mkdir -p "$data$bindir" "$data$(dirname "$conf")" "$data$(dirname "$initscript")" "$ctrl"

install -m 0755 "$binary" "$data$bindir/snapnest"
if [ "$flavour" = openwrt ]; then
    install -m 0755 "$here/openwrt/snapnest.init" "$data$initscript"
    install -m 0600 "$root/examples/snapnest.toml" "$data$conf"
else
    install -m 0755 "$here/entware/S90snapnest" "$data$initscript"
    # Entware lives under /opt; rc.func discards stderr, so the daemon logs to syslog.
    sed -e 's|/etc/snapnest/|/opt/etc/snapnest/|g' \
        -e 's|state_dir = "/var/lib/snapnest"|state_dir = "/opt/var/lib/snapnest"|' \
        -e 's|^log = "stderr" *|log = "syslog"             |' \
        "$root/examples/snapnest.toml" > "$data$conf"
    chmod 0600 "$data$conf"
fi
# The config holds key paths and host names: root-only, and a conffile so upgrades keep it.
echo "$conf" > "$ctrl/conffiles"
install -m 0755 "$here/$flavour/postinst" "$ctrl/postinst"
install -m 0755 "$here/$flavour/prerm" "$ctrl/prerm"
chmod 0644 "$ctrl/conffiles"

size=$(find "$data" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
cat > "$ctrl/control" <<CTRL
Package: snapnest
Version: $version-1
Source: snapnest
SourceName: snapnest
License: MIT OR Apache-2.0
Section: utils
SourceDateEpoch: $epoch
Architecture: $arch
Installed-Size: $size
Description: Backup pull server: pulls machines over SSH into dated, hard-linked snapshots
 on a USB disk, with a daemon for schedules, presence, retention and hooks. Static binary.
CTRL
chmod 0644 "$ctrl/control"

tarc() { tar --format=gnu --numeric-owner --owner=0 --group=0 --sort=name --mtime="@$epoch" "$@"; }
(cd "$data" && tarc -cf - .) | gzip -n -9 > "$work/data.tar.gz"
(cd "$ctrl" && tarc -cf - .) | gzip -n -9 > "$work/control.tar.gz"
echo "2.0" > "$work/debian-binary"
mkdir -p "$outdir"
pkg="$outdir/snapnest_${version}-1_${arch}.ipk"
(cd "$work" && tarc -cf - ./debian-binary ./data.tar.gz ./control.tar.gz) | gzip -n -9 > "$pkg"
echo "$pkg"
