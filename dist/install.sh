#!/bin/sh
# dist/install.sh - a step of `meson install` (see dist/meson.build):
#   install.sh SAMPLE SYSCONFDIR SYSUSERS_FILE     (installed paths, without DESTDIR)
# The sample configuration (SAMPLE, installed with the documentation) becomes
# SYSCONFDIR/smtptap/smtptap.conf only when there is none, so an edited file survives a
# reinstall. When installing into the running system as root
# (no --destdir), systemd-sysusers then creates the smtptap user from SYSUSERS_FILE.
set -eu
sample=$1 sysconfdir=$2 sysusers_file=$3
say() { [ -n "${MESON_INSTALL_QUIET:-}" ] || echo "$@"; }

conf="${DESTDIR:-}$sysconfdir/smtptap/smtptap.conf"
if [ -e "$conf" ]; then
    say "Keeping $conf (the new sample is $sample)"
else
    say "Installing $sample to ${conf%/*}"
    install -D -m 0644 "${DESTDIR:-}$sample" "$conf"
fi

[ -z "${DESTDIR:-}" ] || exit 0 # a staged install: the package creates the user
if [ "$(id -u)" -ne 0 ] || ! command -v systemd-sysusers >/dev/null 2>&1; then
    say "Not creating the smtptap user (needs root and systemd-sysusers): run" \
        "systemd-sysusers $sysusers_file as root"
    exit 0
fi
say "Creating the smtptap user: systemd-sysusers $sysusers_file"
systemd-sysusers "$sysusers_file"
