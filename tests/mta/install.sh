#!/usr/bin/env bash
# tests/mta/install.sh - put the real MTAs used by tests/integration/mta.py on a Debian 12
# machine (root).  Idempotent; prints nothing when everything is already in place.
#
#   Postfix      the installed `postfix` package (a second instance, own config dir)
#                + Cyrus SASL (sasldb) for its AUTH
#   Exim 4       exim4-daemon-light, NOT installed as a package (it conflicts with
#                postfix): `apt-get download` + `dpkg -x` into $MTA_ROOT/exim4
#   OpenSMTPD    opensmtpd 6.8, the same way, into $MTA_ROOT/opensmtpd; its helpers are
#                linked to the compiled-in /usr/libexec/opensmtpd
#
# MTA_ROOT defaults to /opt/smtptap-test-mtas (mta.py reads $SMTPTAP_MTA_ROOT, same default).
set -euo pipefail

MTA_ROOT=${SMTPTAP_MTA_ROOT:-/opt/smtptap-test-mtas}
# Installed normally: postfix and SASL, the shared libraries the two extracted daemons link
# against, and the clients the fixture tests use.
# (unshare and mount, for OpenSMTPD's private mount namespace, are in every Debian system.)
PKGS=(postfix libsasl2-2 libsasl2-modules libsasl2-modules-db sasl2-bin
      swaks libnet-ssleay-perl openssl
      libdb5.3 libgnutls30 libgnutls-dane0 libidn12 libidn2-0 libnsl2 libpcre2-8-0 libcrypt1
      libevent-2.1-7 libpam0g libssl3 zlib1g)

[ "$(id -u)" -eq 0 ] || { echo "install.sh: must run as root" >&2; exit 1; }

updated=
apt_update() {
    [ -n "$updated" ] && return 0
    apt-get update -qq >&2
    updated=1
}

# One dpkg-query for all: the packages installed now, then what is not among them.
mapfile -t have < <(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "${PKGS[@]}" 2>/dev/null |
                    awk '$1 == "ii" { print $2 }')
missing=()
for p in "${PKGS[@]}"; do
    [[ " ${have[*]} " == *" $p "* ]] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install.sh: installing ${missing[*]}" >&2
    apt_update
    # postfix must not set up (or start) a system mail server here.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

extract() { # extract NAME DEB_PACKAGE...: apt-get download + dpkg -x into $MTA_ROOT/NAME
    local name=$1 dl
    shift
    echo "install.sh: extracting $* into $MTA_ROOT/$name" >&2
    dl=$(mktemp -d)
    chmod 755 "$dl" # apt's _apt user downloads into it
    if ! (cd "$dl" && apt-get download -qq "$@" >/dev/null 2>&1); then
        apt_update
        (cd "$dl" && apt-get download -qq "$@" >/dev/null)
    fi
    rm -rf "$MTA_ROOT/$name.new"
    mkdir -p "$MTA_ROOT/$name.new"
    for deb in "$dl"/*.deb; do dpkg -x "$deb" "$MTA_ROOT/$name.new"; done
    rm -rf "$dl" "${MTA_ROOT:?}/$name"
    mv "$MTA_ROOT/$name.new" "$MTA_ROOT/$name"
    # A library the unpacked daemon needs but PKGS lacks shows up here, not in a test.
    if find "$MTA_ROOT/$name/usr/sbin" -type f -exec ldd {} + 2>/dev/null | grep 'not found' >&2; then
        echo "install.sh: $name needs the libraries above; add their packages to PKGS" >&2
        exit 1
    fi
}

[ -x "$MTA_ROOT/exim4/usr/sbin/exim4" ] || extract exim4 exim4-daemon-light
[ -x "$MTA_ROOT/opensmtpd/usr/sbin/smtpd" ] || extract opensmtpd opensmtpd

# Users, as the Debian packages' maintainer scripts would create them.
if ! getent passwd Debian-exim >/dev/null; then
    useradd --system --user-group --home-dir /var/spool/exim4 --no-create-home \
        --shell /usr/sbin/nologin Debian-exim
fi
for u in opensmtpd opensmtpq; do
    getent group "$u" >/dev/null || groupadd --system "$u"
    getent passwd "$u" >/dev/null ||
        useradd --system --gid "$u" --home-dir /var/lib/opensmtpd/empty --no-create-home \
            --shell /usr/sbin/nologin "$u"
done

# OpenSMTPD's compiled-in paths: helpers, chroot, queue.
if [ "$(readlink /usr/libexec/opensmtpd 2>/dev/null)" != "$MTA_ROOT/opensmtpd/usr/libexec/opensmtpd" ]; then
    mkdir -p /usr/libexec
    rm -rf /usr/libexec/opensmtpd
    ln -s "$MTA_ROOT/opensmtpd/usr/libexec/opensmtpd" /usr/libexec/opensmtpd
fi
[ -d /var/lib/opensmtpd/empty ] || install -d -m 755 /var/lib/opensmtpd/empty
[ -d /var/spool/smtpd ] || install -d -m 711 /var/spool/smtpd
exit 0
