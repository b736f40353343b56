#!/bin/sh
# Install what the test suite drives besides cargo: rsync (the fidelity
# oracle), acl and attr (setfacl, setfattr), faketime (a clock set back or
# fixed), restic (the retention oracle), fuse3 (fusermount3 for `strata
# mount`), util-linux (setpriv, for the unprivileged-attacker tests),
# systemd (systemd-analyze: `calendar --base-time` is the oracle for the
# exported timers, `verify` checks the units; the package installs and
# configures in a container without systemd running as PID 1).
#
# moto's S3 server (moto_server, from PyPI's moto[server]) is the object
# store the object-store tests run against, on 127.0.0.1 only: used from
# PATH when there, else installed into a virtualenv of its own in
# ~/.cache/strata-test/moto (python3 -m venv, with Debian's python3-venv
# when the venv module is missing), where tests/common/s3.rs finds it.
#
# Called by `make test`. Installs with Debian's apt-get when running as root
# and something is missing; otherwise says what is missing, and the tests
# that need it skip with a printed reason.
set -u

need=""
for pair in rsync:rsync setfacl:acl setfattr:attr faketime:faketime \
            restic:restic fusermount3:fuse3 setpriv:util-linux \
            systemd-analyze:systemd; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || need="$need $pkg"
done

install_moto() {
    command -v moto_server >/dev/null 2>&1 && return 0
    venv="$HOME/.cache/strata-test/moto"
    [ -x "$venv/bin/moto_server" ] && return 0
    command -v python3 >/dev/null 2>&1 || {
        echo "test-deps: no python3; the object-store tests skip" >&2
        return 0
    }
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                python3-venv >/dev/null 2>&1 || {
                apt-get update -q >/dev/null 2>&1
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                    python3-venv >/dev/null 2>&1
            }
        fi
    fi
    echo "test-deps: installing moto[server] into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >/dev/null 2>&1 &&
        "$venv/bin/pip" install -q "moto[server]>=5.1" >/dev/null 2>&1 ||
        echo "test-deps: could not install moto[server]; the object-store tests skip" >&2
}
install_moto

[ -z "$need" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test-deps: installing$need" >&2
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $need >/dev/null 2>&1 || {
        apt-get update -q >/dev/null 2>&1
        apt-get install -y -q --no-install-recommends $need >/dev/null 2>&1
    } || echo "test-deps: could not install$need; the tests that need them skip" >&2
else
    echo "test-deps: missing$need (not root, or no apt-get); the tests that need them skip" >&2
fi
exit 0
