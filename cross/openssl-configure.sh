#!/bin/sh
# Stand-in for perl when openssl-src runs `perl ./Configure ARGS` (build.sh points
# OPENSSL_SRC_PERL here): appends $SNAPNEST_OPENSSL_CONFIGURE, the Configure options
# openssl-src has no switch for (no-asm, and the algorithms SSH never uses).
# shellcheck disable=SC2086 # the options are words on purpose
exec perl "$@" $SNAPNEST_OPENSSL_CONFIGURE
