#!/usr/bin/env bash
# Install ganeti-cookbooks for production on a Debian host, or remove that install again.
#   packaging/install.sh install   [--root DIR]   (what `./dev install` runs)
#   packaging/install.sh uninstall [--root DIR]   (what `./dev uninstall` runs)
# Every path install creates is listed in OPT/install-manifest (kept across installs, written also when an
# install stops half way); uninstall removes exactly those and keeps
# the configuration (/etc/ganeti-cookbooks) and a log directory that holds logs or audit records.
# --root DIR installs below DIR (tests, images): the venv and the configuration name DIR's paths, so the
# result works in place there and is not meant to be moved.
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
SECURE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin   # Debian's sudoers secure_path
SCRIPTS=(cookbook cookbook-hooks-agent cookbook-chatops)                   # not cookbook-lab: the lab stays a dev tool
PYTHON="${PYTHON:-/usr/bin/python3}"   # Debian's: the venv must not lean on an interpreter in root's home

usage() {
    echo "usage: $0 install|uninstall [--root DIR]" >&2
    exit 2
}

ACTION="${1:-}"
[ $# -gt 0 ] && shift
ROOT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || usage; ROOT="$(realpath -m "$2")"; shift 2 ;;
        --root=*) ROOT="$(realpath -m "${1#--root=}")"; shift ;;
        *) usage ;;
    esac
done
[ "$ROOT" = / ] && ROOT=""

OPT="$ROOT/opt/ganeti-cookbooks"                        # the venv
BIN="$ROOT/usr/local/bin"                               # on sudo's secure_path
SHARE="$ROOT/usr/local/share/ganeti-cookbooks"          # cookbooks_base_dirs: cookbooks/, hooks/, examples
ETC="$ROOT/etc/ganeti-cookbooks"
LOGS="$ROOT/var/log/ganeti-cookbooks"
UNITS="$ROOT/etc/systemd/system"
LOGROTATE="$ROOT/etc/logrotate.d/ganeti-cookbooks"
COMPLETION="$ROOT/usr/local/share/bash-completion/completions/cookbook"
TMPFILES="$ROOT/etc/tmpfiles.d/ganeti-cookbooks.conf"
MANIFEST="$OPT/install-manifest"

CREATED=()  # paths this run created, in creation order
BUILD=""    # temporary copy of the package being built

record() { CREATED+=("$1"); }

# Add what this run created to the manifest, also when it stops half way, so that uninstall removes it.
finish() {
    [ -n "$BUILD" ] && rm -rf "$BUILD"
    [ -d "$OPT" ] || return 0
    { [ -f "$MANIFEST" ] && cat "$MANIFEST"; printf '%s\n' "${CREATED[@]}"; } | awk 'NF && !seen[$0]++' \
        >"$MANIFEST.new"
    mv "$MANIFEST.new" "$MANIFEST"
}

# Create a directory and its missing parents (root:root, mode for the last one), recording those created.
make_dir() {
    local dir="$1" mode="$2" missing=() parent
    parent="$dir"
    while [ ! -e "$parent" ]; do
        missing=("$parent" "${missing[@]}")
        parent="$(dirname "$parent")"
    done
    for parent in "${missing[@]}"; do
        install -d -m 0755 -o root -g root "$parent"
        record "$parent"
    done
    chmod "$mode" "$dir"
    chown root:root "$dir"
}

# Install one file (root:root, mode), recording it when it did not exist.
put_file() {
    local src="$1" dst="$2" mode="$3"
    [ -e "$dst" ] || record "$dst"
    install -m "$mode" -o root -g root "$src" "$dst"
}

# Copy a source tree (without caches) to dst, replacing what a previous install put there.
put_tree() {
    local src="$1" dst="$2"
    [ -e "$dst" ] || record "$dst"
    rm -rf "$dst"
    cp -r "$src" "$dst"
    find "$dst" -name __pycache__ -prune -exec rm -rf {} +
    chown -R root:root "$dst"
    chmod -R u=rwX,go=rX "$dst"
}

do_install() {
    [ "$(id -u)" -eq 0 ] || { echo "install: run as root" >&2; exit 1; }
    local script link
    for script in "${SCRIPTS[@]}"; do
        link="$BIN/$script"
        if [ -e "$link" ] || [ -L "$link" ]; then
            [ "$(readlink "$link" || true)" = "$OPT/bin/$script" ] || {
                echo "install: $link exists and is not ours (a link to $OPT/bin/$script): remove it first" >&2
                exit 1
            }
        fi
    done

    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv
    fi
    trap finish EXIT
    make_dir "$(dirname "$OPT")" 0755
    if [ ! -x "$OPT/bin/python" ]; then
        [ -e "$OPT" ] || record "$OPT"
        "$PYTHON" -m venv "$OPT"
    fi
    # Build from a copy of what the package needs, so that the checkout gets no build/ or egg-info.
    BUILD="$(mktemp -d)"
    # The lab (package cookbook_lab, command cookbook-lab) is a development tool: not copied, and its
    # package and entry point lines are dropped from the copy's setup.cfg, so the venv has neither.
    cp -r "$SRC/setup.cfg" "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/libcluster" "$BUILD/"
    sed -i -e '/^ *cookbook_lab/d' -e '/^ *cookbook-lab = /d' "$BUILD/setup.cfg"
    find "$BUILD" -name __pycache__ -prune -exec rm -rf {} +
    "$OPT/bin/pip" install --quiet --disable-pip-version-check --no-warn-script-location "$BUILD"

    make_dir "$BIN" 0755
    for script in "${SCRIPTS[@]}"; do
        [ -L "$BIN/$script" ] || record "$BIN/$script"
        ln -sfn "$OPT/bin/$script" "$BIN/$script"
    done

    make_dir "$SHARE" 0755
    put_tree "$SRC/cookbooks" "$SHARE/cookbooks"
    put_tree "$SRC/hooks" "$SHARE/hooks"
    make_dir "$SHARE/examples" 0755
    put_file "$SRC/config/config.example.yaml" "$SHARE/examples/config.example.yaml" 0644
    put_file "$SRC/packaging/sudoers" "$SHARE/examples/sudoers" 0644

    make_dir "$ETC" 0750
    if [ -e "$ETC/config.yaml" ]; then
        echo "kept the existing $ETC/config.yaml"
    else
        sed -e "s|@SHARE@|$SHARE|g" -e "s|@LOGS@|$LOGS|g" "$SRC/packaging/config.yaml" >"$ETC/config.yaml.new"
        chmod 0640 "$ETC/config.yaml.new"
        chown root:root "$ETC/config.yaml.new"
        mv "$ETC/config.yaml.new" "$ETC/config.yaml"
        echo "wrote $ETC/config.yaml (0640 root:root): add your clusters, NetBox, DNS, etcd and IRC"
    fi
    make_dir "$LOGS" 0750

    make_dir "$UNITS" 0755
    for script in cookbook-hooks-agent cookbook-chatops; do
        put_file "$SRC/packaging/systemd/$script.service" "$UNITS/$script.service" 0644
    done
    make_dir "$(dirname "$LOGROTATE")" 0755
    put_file "$SRC/packaging/logrotate" "$LOGROTATE" 0644
    make_dir "$(dirname "$TMPFILES")" 0755
    put_file "$SRC/packaging/tmpfiles" "$TMPFILES" 0644
    make_dir "$(dirname "$COMPLETION")" 0755
    put_file "$SRC/packaging/bash-completion" "$COMPLETION" 0644
    sed -i "s|@SHARE@|$SHARE|g" "$COMPLETION"

    echo "installed: ${SCRIPTS[*]} in $BIN (sudo's secure_path), venv $OPT, cookbooks in $SHARE/cookbooks,"
    echo "logs in $LOGS, services $UNITS/cookbook-{hooks-agent,chatops}.service (not enabled)"
}

do_uninstall() {
    [ "$(id -u)" -eq 0 ] || { echo "uninstall: run as root" >&2; exit 1; }
    [ -f "$MANIFEST" ] || { echo "uninstall: $MANIFEST not found: nothing installed under ${ROOT:-/}" >&2; exit 1; }
    local paths=() path i
    mapfile -t paths <"$MANIFEST"
    for ((i = ${#paths[@]} - 1; i >= 0; i--)); do
        path="${paths[i]}"
        case "$path" in
            "$OPT" | "$SHARE/cookbooks" | "$SHARE/hooks") rm -rf "$path" ;;
            "$ETC" | "$ROOT/etc" | "$ROOT") rmdir "$path" 2>/dev/null || true ;;  # kept for the configuration
            "$BIN"/*)
                if [ "$(readlink "$path" || true)" = "$OPT/bin/${path##*/}" ]; then
                    rm -f "$path"
                elif [ -e "$path" ] || [ -L "$path" ]; then
                    echo "kept $path (no longer our link into $OPT)"
                fi
                ;;
            *)
                if [ -d "$path" ] && [ ! -L "$path" ]; then
                    rmdir "$path" 2>/dev/null || echo "kept $path (not empty: logs or files not ours)"
                else
                    rm -f "$path"
                fi
                ;;
        esac
    done
    echo "uninstalled; the configuration in $ETC is kept (remove it by hand if no longer wanted)"
}

case "$ACTION" in
    install) do_install ;;
    uninstall) do_uninstall ;;
    *) usage ;;
esac
