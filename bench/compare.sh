#!/usr/bin/env bash
# snapnest vs rsync, side by side, on the same tree, over the same loopback SSH server.
#
#   bench/compare.sh                 # 100,000 small files in ~1000 folders + a few large ones
#   FILES=20000 bench/compare.sh     # smaller tree; median of 3 runs (REPS=3 when FILES <= 20000)
#
# Knobs (environment):
#   FILES=100000       number of small files (0-16 KiB, mixed sizes)
#   PER_DIR=100        small files per folder (FILES/PER_DIR folders)
#   BIG_MB="16 64 256" sizes in MiB of the large files
#   CHANGE_PCT=1       percent of small files rewritten before the "1% change" case
#   REPS=1|3           runs per case, the median is reported (default 3 if FILES <= 20000)
#   KEEP=1             keep the temp folder (prints its path)
#
# Needs: cargo, OpenSSH server and client (/usr/sbin/sshd, ssh, ssh-keygen), rsync, perl,
# GNU find/tar (for snapnest's stream transfer), and GNU time at /usr/bin/time (Debian/Ubuntu
# package `time`; installed here if missing and we are root). Must run as root: sshd is
# started on 127.0.0.1 with PermitRootLogin prohibit-password and its own keys.
# Not run by CI. All traffic stays on 127.0.0.1.
#
# What is measured, per case: wall seconds and peak RSS (/usr/bin/time %e %M) of the local
# command. %M is the largest single process of the local tree (snapnest itself; for rsync the
# biggest of the local rsync processes and ssh); the remote side (find+tar, sftp-server,
# the server rsync) is not included for either tool. `sync` runs before every measured command
# so that no tool pays for another's dirty pages. Note that snapnest syncfs()es the storage
# filesystem before publishing each snapshot while rsync never syncs; the time of a `sync`
# right after each rsync run is printed separately as a hint of that cost.
set -euo pipefail

FILES=${FILES:-100000}
PER_DIR=${PER_DIR:-100}
BIG_MB=${BIG_MB:-"16 64 256"}
CHANGE_PCT=${CHANGE_PCT:-1}
if [[ -z ${REPS:-} ]]; then
    if ((FILES <= 20000)); then REPS=3; else REPS=1; fi
fi
KEEP=${KEEP:-0}

die() { echo "compare.sh: $*" >&2; exit 2; }

[[ $(id -u) == 0 ]] || die "run as root (the private sshd logs in as root)"
for tool in cargo rsync ssh ssh-keygen perl find tar shuf; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
[[ -x /usr/sbin/sshd ]] || die "/usr/sbin/sshd not found (install openssh-server)"
if [[ ! -x /usr/bin/time ]]; then
    echo "GNU time missing: installing the 'time' package" >&2
    { apt-get install -y time >/dev/null || { apt-get update >/dev/null && apt-get install -y time >/dev/null; }; } ||
        die "/usr/bin/time missing; install GNU time (apt-get install time)"
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "== building (cargo build --release)"
cargo build --release --quiet
SNAPNEST=$PWD/target/release/snapnest
[[ -x $SNAPNEST ]] || die "$SNAPNEST not built"

W=$(mktemp -d /tmp/snapnest-bench.XXXXXX)
SSHD_PID=
cleanup() {
    if [[ -n $SSHD_PID ]]; then
        kill "$SSHD_PID" 2>/dev/null || true
        wait "$SSHD_PID" 2>/dev/null || true
    fi
    if [[ $KEEP == 1 ]]; then
        echo "kept $W"
    else
        rm -rf "$W"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
SRC=$W/src
mkdir -p "$W/log" "$W/ssh" "$SRC"

# ---------------------------------------------------------------- the tree
echo "== creating $FILES small files in $(( (FILES + PER_DIR - 1) / PER_DIR )) folders + large files ($BIG_MB MiB) under $SRC"
t0=$SECONDS
# 64 MiB of random bytes; small files are random slices of it (incompressible, distinct).
head -c $((64 << 20)) /dev/urandom >"$W/pool"
perl -e '
    use strict; use warnings;
    my ($root, $files, $per_dir, $pool_file) = @ARGV;
    open(my $pf, "<:raw", $pool_file) or die "$pool_file: $!";
    local $/; my $pool = <$pf>; close $pf;
    my $plen = length $pool;
    srand(20261123);
    my $dirs = int(($files + $per_dir - 1) / $per_dir);
    for my $d (0 .. $dirs - 1) {
        # two levels: 32 groups, ~dirs/32 folders each
        my $dir = sprintf("%s/g%02d/d%05d", $root, $d % 32, $d);
        mkdir(sprintf("%s/g%02d", $root, $d % 32));
        mkdir($dir) or die "$dir: $!";
        my $last = ($d + 1) * $per_dir; $last = $files if $last > $files;
        for my $i ($d * $per_dir .. $last - 1) {
            # mixed sizes: 10% empty or tiny (< 64 B), 60% up to 4 KiB, 30% up to 16 KiB
            my $r = rand();
            my $size = $r < 0.10 ? int(rand(64)) : $r < 0.70 ? int(rand(4096)) : int(rand(16385));
            open(my $fh, ">:raw", sprintf("%s/f%07d.dat", $dir, $i)) or die "$dir/$i: $!";
            print $fh substr($pool, int(rand($plen - $size)), $size);
            close $fh or die "$dir/$i: $!";
        }
    }
' "$SRC" "$FILES" "$PER_DIR" "$W/pool"
mkdir -p "$SRC/big" "$SRC/links" "$SRC/empty/folder"
n=0
for mb in $BIG_MB; do
    n=$((n + 1))
    head -c $((mb << 20)) /dev/urandom >"$SRC/big/large-$n-${mb}MiB.bin"
done
ln -s ../g00 "$SRC/links/to-g00"
ln -s /etc/hostname "$SRC/links/abs"
ln -s missing "$SRC/links/dangling"
if [[ -d $SRC/g01 ]]; then chmod 0750 "$SRC/g01"; fi
rm -f "$W/pool"
sync
TREE_FILES=$(find "$SRC" -type f | wc -l)
TREE_DIRS=$(find "$SRC" -type d | wc -l)
TREE_MB=$(du -sm "$SRC" | cut -f1)
echo "   $TREE_FILES files, $TREE_DIRS folders, $TREE_MB MiB on disk ($((SECONDS - t0)) s)"

# ---------------------------------------------------------------- private sshd on 127.0.0.1
mkdir -p /run/sshd
S=$W/ssh
chmod 700 "$S"
ssh-keygen -q -t ed25519 -N '' -f "$S/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$S/client_key"
cp "$S/client_key.pub" "$S/authorized_keys"
PORT=$(perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0, Proto => "tcp")->sockport')
FINGERPRINT=$(ssh-keygen -lf "$S/host_key.pub" | awk '{print $2}')
cat >"$S/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $S/host_key
AuthorizedKeysFile $S/authorized_keys
PidFile $S/sshd.pid
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
Subsystem sftp internal-sftp
LogLevel ERROR
MaxStartups 100
EOF
/usr/sbin/sshd -D -e -f "$S/sshd_config" 2>"$S/sshd.log" &
SSHD_PID=$!
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    kill -0 "$SSHD_PID" 2>/dev/null || { cat "$S/sshd.log" >&2; die "sshd exited"; }
    sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || { cat "$S/sshd.log" >&2; die "sshd did not start"; }
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$S/host_key.pub")" >"$S/known_hosts"
SSH="ssh -F /dev/null -p $PORT -i $S/client_key -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile=$S/known_hosts -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes"
$SSH root@127.0.0.1 true || die "ssh to the private sshd failed: $(cat "$S/sshd.log")"
echo "== sshd on 127.0.0.1:$PORT (pid $SSHD_PID), host key $FINGERPRINT"

# ---------------------------------------------------------------- measuring
declare -A WALLS RSSES      # "case|tool" -> space-separated values, one per rep
declare -A SYNCS            # "case" -> sync-after-rsync seconds, one per rep
declare -A SUMMARY          # "case|tool" -> snapnest summary line of the last rep
FAILURES=()
CASES=("initial" "no-change" "${CHANGE_PCT}%-change")

# measure CASE TOOL REP CMD...: sync, then time CMD; records wall s and peak RSS KiB.
measure() {
    local case=$1 tool=$2 rep=$3
    shift 3
    local log="$W/log/$rep.$case.$tool.log" rc=0
    sync
    /usr/bin/time -f '%e %M' -o "$W/time.out" "$@" >"$log" 2>&1 || rc=$?
    local wall rss
    read -r wall rss < <(tail -n 1 "$W/time.out")
    if ((rc != 0)); then
        FAILURES+=("$case / $tool (rep $rep): exit $rc: $(tail -n 5 "$log" | tr '\n' ' ')")
        echo "   !! $case / $tool failed (exit $rc), see below" >&2
        tail -n 20 "$log" >&2
        wall="FAIL"
    fi
    WALLS["$case|$tool"]+="$wall "
    RSSES["$case|$tool"]+="$rss "
    if [[ $tool == snapnest* ]]; then
        SUMMARY["$case|$tool"]=$(grep -E '^laptop' "$log" | tail -n 1 || true)
    fi
    printf '   %-12s %-14s %8s s %8.1f MB\n' "$case" "$tool" "$wall" "$(awk -v k="$rss" 'BEGIN{print k/1024}')"
}

# The time of a `sync` right after an rsync run (rsync itself never syncs).
sync_after() {
    local case=$1 t0 t1
    t0=$(date +%s.%N)
    sync
    t1=$(date +%s.%N)
    SYNCS["$case"]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') "
}


# Rewrite CHANGE_PCT% of the small files with new random content (new size and mtime).
change_files() {
    local count=$(( FILES * CHANGE_PCT / 100 ))
    ((count > 0)) || count=1
    find "$SRC" -path "$SRC/big" -prune -o -type f -name 'f*.dat' -print | shuf -n "$count" >"$W/changed.list"
    perl -e '
        use strict; use warnings;
        while (my $f = <STDIN>) {
            chomp $f;
            my $size = 1 + int(rand(16384));
            open(my $fh, ">:raw", $f) or die "$f: $!";
            open(my $ur, "<:raw", "/dev/urandom") or die;
            read($ur, my $buf, $size); close $ur;
            print $fh $buf; close $fh or die "$f: $!";
        }
    ' <"$W/changed.list"
    sync
    echo "   rewrote $(wc -l <"$W/changed.list") files"
}

# Same names, types, content, modes, owners, mtimes, symlink targets? (rsync dry run, checksums)
verify() { # verify LABEL COPY [ORIGINAL]
    local out
    out=$(rsync -anic --delete "${3:-$SRC}/" "$2/" 2>&1 | grep -v '^\.d\.\.t\.\.\.\.\.\. \./$' || true)
    if [[ -n $out ]]; then
        FAILURES+=("verify $1: copy differs from the source: $(echo "$out" | head -n 5 | tr '\n' ' ')")
        echo "   !! $1 differs from the source:" >&2
        echo "$out" | head -n 20 >&2
    else
        echo "   verified $1: identical to the source (rsync -anic)"
    fi
}

for rep in $(seq "$REPS"); do
    R=$W/run$rep
    mkdir -p "$R/store" "$R/dest"
    CFG=$R/snapnest.toml
    cat >"$CFG" <<EOF
[storage]
path = "$R/store"

[[host]]
name = "laptop"
address = "127.0.0.1"
port = $PORT
user = "root"
identity = "$S/client_key"
host_key = "$FINGERPRINT"
folders = ["$SRC"]

[[host]]
name = "laptop-sftp"
address = "127.0.0.1"
port = $PORT
user = "root"
identity = "$S/client_key"
host_key = "$FINGERPRINT"
folders = ["$SRC"]
transfer = "sftp"
EOF
    "$SNAPNEST" --config "$CFG" init >/dev/null
    echo "== run $rep of $REPS"
    # Alternate which tool goes first, in case order matters (it should not: all is cached).
    if ((rep % 2 == 1)); then order=(snapnest rsync); else order=(rsync snapnest); fi

    for tool in "${order[@]}"; do
        if [[ $tool == snapnest ]]; then
            measure initial snapnest "$rep" "$SNAPNEST" --config "$CFG" backup laptop
        else
            measure initial rsync "$rep" rsync -a --delete -e "$SSH" "root@127.0.0.1:$SRC/" "$R/dest/1/"
            sync_after initial
        fi
    done
    for tool in "${order[@]}"; do
        if [[ $tool == snapnest ]]; then
            measure no-change snapnest "$rep" "$SNAPNEST" --config "$CFG" backup laptop
        else
            measure no-change rsync "$rep" rsync -a --delete --link-dest=../1 -e "$SSH" "root@127.0.0.1:$SRC/" "$R/dest/2/"
            sync_after no-change
        fi
    done
    measure initial snapnest-sftp "$rep" "$SNAPNEST" --config "$CFG" backup laptop-sftp
    measure no-change snapnest-sftp "$rep" "$SNAPNEST" --config "$CFG" backup laptop-sftp

    change_files
    for tool in "${order[@]}"; do
        if [[ $tool == snapnest ]]; then
            measure "${CASES[2]}" snapnest "$rep" "$SNAPNEST" --config "$CFG" backup laptop
        else
            measure "${CASES[2]}" rsync "$rep" rsync -a --delete --link-dest=../2 -e "$SSH" "root@127.0.0.1:$SRC/" "$R/dest/3/"
            sync_after "${CASES[2]}"
        fi
    done

    # Untimed checks: the last snapshots hold exactly the (changed) source tree.
    snaps=("$R"/store/laptop/20*)
    verify "snapnest latest" "${snaps[-1]}$SRC"
    verify "rsync dest/3" "$R/dest/3"
    # The sftp snapshots predate the change: compare with snapnest's (stream) no-change one.
    verify "snapnest-sftp latest" "$(readlink -f "$R/store/laptop-sftp/latest")$SRC" "${snaps[-2]}$SRC"
    if ((rep == REPS)); then
        DU_SNAP=$(cd "$R/store/laptop" && du -sm 20* | awk '{printf "%s=%s MiB  ", $2, $1}')
        DU_RSYNC=$(cd "$R/dest" && du -sm 1 2 3 | awk '{printf "%s=%s MiB  ", $2, $1}')
        "$SNAPNEST" --config "$CFG" list >"$W/list.txt" 2>&1 || true
    fi
    if ((rep < REPS)); then rm -rf "$R"; fi
done

# ---------------------------------------------------------------- report
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END{if (NR==0) print "-"; else print v[int((NR+1)/2)]}'; }
# A FAIL anywhere makes the case FAIL.
median_wall() { local v="$1"; if [[ $v == *FAIL* ]]; then echo FAIL; else echo "$v" | median; fi; }

echo
echo "== results ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, kernel $(uname -r))"
echo "tree: $TREE_FILES files ($FILES small 0-16 KiB in $(( (FILES + PER_DIR - 1) / PER_DIR )) folders + large: $BIG_MB MiB), $TREE_DIRS folders, $TREE_MB MiB"
echo "rsync: $(rsync --version | head -n 1)"
echo "ssh:   $(ssh -V 2>&1)"
echo "snapnest: $("$SNAPNEST" --version), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n $(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] && echo ' + uncommitted changes in src') (target/release, stream = GNU find+tar over libssh2; sftp = libssh2 SFTP)"
echo "runs per case: $REPS$( ((REPS > 1)) && echo ' (median shown)')"
echo
fmt='%-12s | %-14s | %8s | %11s | %18s | %17s\n'
printf "$fmt" "case" "tool" "wall s" "peak RSS MB" "wall ratio sn/rsync" "RSS ratio sn/rsync"
printf '%s\n' "-------------+----------------+----------+-------------+--------------------+-------------------"
for case in "${CASES[@]}"; do
    rw=$(median_wall "${WALLS["$case|rsync"]:-}")
    rr=$(echo "${RSSES["$case|rsync"]:-}" | median)
    for tool in rsync snapnest snapnest-sftp; do
        [[ -n ${WALLS["$case|$tool"]:-} ]] || continue
        w=$(median_wall "${WALLS["$case|$tool"]}")
        r=$(echo "${RSSES["$case|$tool"]}" | median)
        if [[ $tool == rsync ]]; then
            ratio_w="1.00"
            ratio_r="1.00"
        else
            ratio_w=$(awk -v a="$w" -v b="$rw" 'BEGIN{ if (a == "FAIL" || b == "FAIL" || b + 0 == 0) print "-"; else printf "%.2f", a / b }')
            ratio_r=$(awk -v a="$r" -v b="$rr" 'BEGIN{ if (b + 0 == 0) print "-"; else printf "%.2f", a / b }')
        fi
        printf "$fmt" "$case" "$tool" "$w" "$(awk -v k="$r" 'BEGIN{printf "%.1f", k / 1024}')" "$ratio_w" "$ratio_r"
    done
done
echo
echo "notes:"
echo "  - ratio > 1 means snapnest is slower / bigger. Absolute times are noisy; compare ratios."
echo "  - rsync never syncs; a 'sync' right after each rsync run took (s): $(for c in "${CASES[@]}"; do printf '%s: %s  ' "$c" "$(echo "${SYNCS[$c]:-}" | median)"; done)"
echo "    snapnest syncfs()es before publishing, inside its measured time."
echo "  - peak RSS is the local side only (largest local process); remote find/tar/sftp-server/rsync not counted."
echo "  - disk use, snapnest snapshots (du, hard links counted once): $DU_SNAP"
echo "  - disk use, rsync --link-dest copies:                          $DU_RSYNC"
echo "  - snapnest summaries (last run):"
for case in "${CASES[@]}"; do
    for tool in snapnest snapnest-sftp; do
        [[ -n ${SUMMARY["$case|$tool"]:-} ]] && echo "      $case / $tool: ${SUMMARY["$case|$tool"]}"
    done
done
echo "  - snapnest list:"
sed 's/^/      /' "$W/list.txt"
if ((${#FAILURES[@]} > 0)); then
    echo
    echo "FAILURES:"
    printf '  - %s\n' "${FAILURES[@]}"
    exit 1
fi
