#!/bin/sh
# snapnest read-only filter for host @HOST@, printed by `snapnest authorize`.
# It is the forced command of the backup box's SSH key: it runs only the exact commands
# snapnest issues for the folders configured when it was printed, read-only, and refuses
# everything else with a log line (syslog via logger, and stderr). When the folders change,
# print it again (`snapnest authorize @HOST@ --script`) and replace this file.
# Do not edit the values below by hand: they must equal what snapnest sends, byte for byte.

PROBE=@PROBE@
LIST=@LIST@
TAR=@TAR@
# Appended files: the old part's sha256, and the bytes after it (records on stdin).
HASH=@HASH@
TAIL=@TAIL@
# Names tar may read (from stdin, relative to /): under a configured folder.
NAMES=@NAMES@
# Prints, NUL-separated and relative to /, every non-folder find reaches under the folders
# without following a symlink below them: the only names tar may read.
REACHABLE=@REACHABLE@
# Non-empty in sudo mode: this file's own path, run again as root through `sudo -n`.
SUDO=@SUDO@

LC_ALL=C
export LC_ALL

refuse() {
    logger -t snapnest-filter -p auth.warning -- "refused for uid $(id -u): $1" 2>/dev/null
    printf 'snapnest-filter: refused: %s\n' "$1" >&2
    exit 126
}

if [ $# -gt 0 ]; then
    # The second hop (as root, through sudo): checked again below, like the first.
    cmd=$1
else
    cmd=${SSH_ORIGINAL_COMMAND-}
    [ -n "$cmd" ] || refuse "(no command: interactive login)"
    if [ -n "$SUDO" ]; then
        if [ "x$cmd" = "x$PROBE" ] || [ "x$cmd" = "x$LIST" ] || [ "x$cmd" = "x$TAR" ] ||
            [ "x$cmd" = "x$HASH" ] || [ "x$cmd" = "x$TAIL" ]; then
            exec sudo -n "$SUDO" "$cmd"
        fi
        refuse "$cmd"
    fi
fi

# Run our own copy of the command, never the received string.
if [ "x$cmd" = "x$PROBE" ]; then
    exec /bin/sh -c "$PROBE"
elif [ "x$cmd" = "x$LIST" ]; then
    exec /bin/sh -c "$LIST"
elif [ "x$cmd" = "x$TAR" ]; then
    # Only names under the folders and without empty, . or .. parts reach tar; others are
    # dropped (snapnest then reports them as not delivered). tar follows symlinks in a
    # name's middle parts (home/a/link/shadow with link -> /etc), so a name must also be one
    # that find reaches without following any: the intersection of both sorted lists (names
    # come sorted by bytes, so the order tar keeps is snapnest's). Needs GNU sort and uniq.
    {
        /bin/sh -c "$REACHABLE" 2>/dev/null | sort -z -u
        grep -z -E -e "$NAMES" | grep -z -v -E -e '(^|/)\.\.?(/|$)' -e '//' | sort -z -u
    } | sort -z | uniq -z -d | /bin/sh -c "$TAR"
    exit
elif [ "x$cmd" = "x$HASH" ] || [ "x$cmd" = "x$TAIL" ]; then
    # A record is three 20-digit numbers and spaces (63 bytes), then a name. Only records
    # whose name is one tar could get (find reaches it, see REACHABLE) go on: both lists
    # sorted by name (from byte 64; the reachable names get a dummy prefix), one record per
    # name, and a record is kept only when the same name follows it in the reachable list.
    {
        /bin/sh -c "$REACHABLE" 2>/dev/null | sort -z -u |
            sed -z 's/^/###############################################################/'
        grep -z -E -e '^[0-9]{20} [0-9]{20} [0-9]{20} ' | sort -z -t '\0' -k 1.64 -u
    } | sort -z -t '\0' -k 1.64 | uniq -z -s 63 -D | grep -z -E -e '^[0-9]' |
        if [ "x$cmd" = "x$HASH" ]; then /bin/sh -c "$HASH"; else /bin/sh -c "$TAIL"; fi
    exit
else
    refuse "$cmd"
fi
