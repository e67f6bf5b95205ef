#!/usr/bin/env bash
# Installs nginx and Nchan (Debian's libnginx-mod-nchan dynamic module) when missing, then prints
# their versions. Idempotent and quiet; runs as root or through sudo. Nothing is started: the
# packages' own service is not used (start.sh runs a private nginx as the current user).
set -euo pipefail

MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so

die() { echo "nchan/install.sh: $*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        die "need root (or password-less sudo) to run: $*"
    fi
}

# nginx must be able to load dynamic modules: Debian's nginx binary is built --with-compat and
# --modules-path=/usr/lib/nginx/modules, whichever flavour (nginx, nginx-light, nginx-core, ...)
# pulled it in. libnginx-mod-nchan depends on the matching nginx-abi-* and pulls nginx in if absent.
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -f "$MODULE" ] || missing+=(libnginx-mod-nchan)

if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install ${missing[*]} by hand"
    # The package lists may be empty or stale on a fresh machine.
    if ! apt-cache show libnginx-mod-nchan >/dev/null 2>&1; then
        as_root apt-get update -qq >/dev/null
    fi
    # Installing nginx on Debian tries to start the system service; on machines without systemd
    # (containers) that fails harmlessly, and policy-rc.d is not touched here.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
fi

NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "nginx is still missing after the install"
[ -f "$MODULE" ] || die "$MODULE is still missing after the install"
"$NGINX" -V 2>&1 | grep -q -- '--with-compat' \
    || die "$NGINX was not built --with-compat: it cannot load Debian's dynamic modules"

nginx_version=$("$NGINX" -v 2>&1 | sed 's|.*nginx/||')
nchan_version=$(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo unknown)
echo "nginx $nginx_version ($NGINX)"
echo "nchan $nchan_version ($MODULE)"
