#!/usr/bin/env bash
# Builds the Debian packages suitcase, suitcase-agent and suitcase-server with cargo-deb from the
# release binary that is there (no build of its own) and checks them (docs/install.md §8).
#
#   scripts/deb-test.sh [OUT_DIR]          # default: TARGET_DIR/debian
#   SUITCASE_DEB_FAST=0 scripts/deb-test.sh  # full (xz) compression, as for distribution
#
# Needs TARGET_DIR/release/suitcase (`cargo build --release -p suitcase-cli --locked`) and
# cargo-deb (`cargo install cargo-deb --locked`). Checks: dpkg-deb --info/--contents (files,
# modes, conffiles, the exact-version dependency on suitcase), lintian when installed (errors
# fail, warnings are printed), the packaged binary runs. As root, when no suitcase package is
# installed yet: dpkg -i of the three (services kept from starting by a policy-rc.d),
# systemd-analyze verify of the units (skipped with the reason where it cannot run), the
# shipped agent.toml through --check-config, the server started as its user on the packaged
# settings, a reinstall that keeps an edited conffile, dpkg --purge; then what the test created
# is removed (the user suitcase, /var/lib/suitcase).
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=${CARGO_TARGET_DIR:-target}
out=${1:-$target_dir/debian}
bin="$target_dir/release/suitcase"
fail() { echo "deb-test: FAIL: $*" >&2; exit 1; }
[ -x "$bin" ] || fail "no $bin: run cargo build --release -p suitcase-cli --locked first"
command -v cargo-deb >/dev/null || fail "cargo-deb is missing: cargo install cargo-deb --locked"
command -v dpkg-deb >/dev/null || fail "dpkg-deb is missing"

# 1. Build: one package per variant, all from the same binary. --fast (lighter compression,
# the same contents, about 15% larger) saves a minute of xz on the binary and its debug symbols;
# SUITCASE_DEB_FAST=0 packages as for distribution.
fast=(--fast)
[ "${SUITCASE_DEB_FAST:-1}" = 1 ] || fast=()
rm -rf "$out"
mkdir -p "$out"
cargo deb -p suitcase-cli --no-build --locked "${fast[@]}" -o "$out/"
cargo deb -p suitcase-cli --no-build --locked "${fast[@]}" --variant agent -o "$out/"
cargo deb -p suitcase-cli --no-build --locked "${fast[@]}" --variant server -o "$out/"
deb() { local f=("$out/$1"_*.deb); [ -f "${f[0]}" ] || fail "no $1 package in $out"; echo "${f[0]}"; }
core=$(deb suitcase)
agent=$(deb suitcase-agent)
server=$(deb suitcase-server)
dbgsym=("$out"/suitcase-dbgsym_*.ddeb)
[ -f "${dbgsym[0]}" ] || fail "no suitcase-dbgsym .ddeb in $out (dbgsym = true)"
ls -l "$out"

# 2. What each package holds.
field() { dpkg-deb --field "$2" "$1"; }
has() { # package, path, mode prefix (ls -l style, e.g. -rwxr-xr-x)
  local line
  line=$(dpkg-deb --contents "$1" | awk -v p="./$2" '$6 == p')
  [ -n "$line" ] || fail "$(basename "$1") lacks /$2"
  [ -z "${3:-}" ] || [ "${line%% *}" = "$3" ] || fail "$(basename "$1"): /$2 is ${line%% *}, expected $3"
}
conffiles() { dpkg-deb --ctrl-tarfile "$1" | tar -xOf - ./conffiles 2>/dev/null || true; }
unit_dir() { dpkg-deb --contents "$1" | awk '{print $6}' | grep -E 'systemd/system/[^/]+\.service$' | sed 's|^\./||'; }
for p in "$core" "$agent" "$server"; do
  echo
  echo "== $(basename "$p")"
  dpkg-deb --info "$p"
  dpkg-deb --contents "$p"
done
version=$(field Version "$core")
has "$core" usr/bin/suitcase -rwxr-xr-x
has "$core" usr/share/doc/suitcase/install.md -rw-r--r--
dpkg-deb --contents "${dbgsym[0]}" | grep -q '/usr/lib/debug/.build-id/.*\.debug$' \
  || fail "$(basename "${dbgsym[0]}") holds no .build-id debug file"
has "$agent" etc/suitcase/agent.toml -rw-r--r--
has "$server" etc/suitcase/server.env -rw-------
has "$server" usr/lib/sysusers.d/suitcase-server.conf -rw-r--r--
[ "$(unit_dir "$agent")" != "" ] || fail "suitcase-agent holds no unit"
[ "$(unit_dir "$server")" != "" ] || fail "suitcase-server holds no unit"
case "$(unit_dir "$agent")" in */suitcase-agent.service) ;; *) fail "agent unit: $(unit_dir "$agent")" ;; esac
case "$(unit_dir "$server")" in */suitcase-server.service) ;; *) fail "server unit: $(unit_dir "$server")" ;; esac
for p in "$agent" "$server"; do
  ! dpkg-deb --contents "$p" | grep -q 'usr/bin/suitcase' || fail "$(basename "$p") carries the binary"
  field Depends "$p" | grep -qF "suitcase (= $version)" \
    || fail "$(basename "$p") depends on '$(field Depends "$p")', not on suitcase (= $version): update the variants' depends in crates/suitcase-cli/Cargo.toml"
done
[ "$(conffiles "$agent")" = /etc/suitcase/agent.toml ] || fail "agent conffiles: $(conffiles "$agent")"
[ "$(conffiles "$server")" = /etc/suitcase/server.env ] || fail "server conffiles: $(conffiles "$server")"
[ "$(field Version "$agent")" = "$version" ] && [ "$(field Version "$server")" = "$version" ] \
  || fail "the three packages have different versions"
echo
echo "deb-test: contents, modes, conffiles and dependencies as expected (version $version)"

# 3. lintian: errors fail, warnings are shown (the accepted warnings: docs/install.md).
if command -v lintian >/dev/null; then
  lintian --version
  # --allow-root: CI runs as root; lintian only reads the packages.
  lintian --allow-root --fail-on error "$core" "$agent" "$server"
  echo "deb-test: lintian: no errors"
else
  echo "deb-test: SKIP lintian: not installed (apt-get install lintian)"
fi

# 4. The packaged binary runs.
scratch=$(mktemp -d)
cleanup_scratch() { rm -rf "$scratch"; }
trap cleanup_scratch EXIT
dpkg-deb -x "$core" "$scratch/root"
"$scratch/root/usr/bin/suitcase" --version
[ "$("$scratch/root/usr/bin/suitcase" --version)" = "suitcase ${version%-*}" ] \
  || fail "the packaged binary says '$("$scratch/root/usr/bin/suitcase" --version)', the package is $version"

# 5. Install, use, reinstall, purge: only as root and on a machine without suitcase packages.
if [ "$(id -u)" -ne 0 ]; then
  echo "deb-test: SKIP installation test: not root"
  exit 0
fi
for p in suitcase suitcase-agent suitcase-server; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
    echo "deb-test: SKIP installation test: $p is installed on this machine already"
    exit 0
  fi
done
had_user=0; getent passwd suitcase >/dev/null && had_user=1
had_group=0; getent group suitcase >/dev/null && had_group=1
had_state=0; [ -e /var/lib/suitcase ] && had_state=1
had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
server_pid=
cleanup() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  dpkg --purge suitcase-agent suitcase-server suitcase >/dev/null 2>&1 || true
  [ "$had_policy" = 1 ] || rm -f /usr/sbin/policy-rc.d
  [ "$had_state" = 1 ] || rm -rf /var/lib/suitcase
  [ "$had_user" = 1 ] || userdel suitcase 2>/dev/null || true
  [ "$had_group" = 1 ] || groupdel suitcase 2>/dev/null || true
  rmdir /etc/suitcase 2>/dev/null || true
  cleanup_scratch
}
trap cleanup EXIT
# Keep the maintainer scripts from starting services on a machine that runs systemd.
if [ "$had_policy" = 0 ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
fi
dpkg -i "$core" "$agent" "$server"
[ "$(suitcase --version)" = "suitcase ${version%-*}" ] || fail "installed: $(suitcase --version)"
getent passwd suitcase | grep -q ':/usr/sbin/nologin$' || fail "no system user suitcase: $(getent passwd suitcase)"
for f in /etc/suitcase/agent.toml /etc/suitcase/server.env; do [ -f "$f" ] || fail "$f missing"; done
[ "$(stat -c %a /etc/suitcase/server.env)" = 600 ] || fail "/etc/suitcase/server.env is not 0600"
agent_unit=$(systemctl show -P FragmentPath suitcase-agent 2>/dev/null || true)
[ -n "$agent_unit" ] || agent_unit=/$(unit_dir "$agent")
server_unit=/$(unit_dir "$server")
[ -f "$agent_unit" ] && [ -f "$server_unit" ] || fail "unit files missing: $agent_unit $server_unit"
echo "deb-test: installed; suitcase --version, user suitcase, conffiles, units in place"

# systemd-analyze verify needs no running systemd, but some containers lack what it loads.
if ! command -v systemd-analyze >/dev/null; then
  echo "deb-test: SKIP systemd-analyze verify: systemd-analyze is not installed"
elif ! printf '[Service]\nExecStart=/bin/true\n' >"$scratch/probe.service" \
  || ! probe=$(systemd-analyze verify "$scratch/probe.service" 2>&1) || [ -n "$probe" ]; then
  echo "deb-test: SKIP systemd-analyze verify: it does not work here (a trivial unit gives: ${probe:-an error})"
else
  systemd-analyze verify "$agent_unit" "$server_unit" 2>&1 | tee "$scratch/verify.log"
  [ "${PIPESTATUS[0]}" = 0 ] || fail "systemd-analyze verify found problems in the units"
  [ ! -s "$scratch/verify.log" ] || fail "systemd-analyze verify warned about the units"
  echo "deb-test: systemd-analyze verify: both units clean"
  # For information: systemd's exposure rating of each unit's sandbox (docs/install.md §4, §5).
  for u in "$agent_unit" "$server_unit"; do
    systemd-analyze security --offline=true "$u" 2>/dev/null | tail -1 || true
  done
fi

# The shipped agent.toml parses, with its placeholder files provided and the paths moved into
# the scratch directory (unknown keys, wrong types, contradictions would fail here).
cfg="$scratch/agent"
mkdir -p "$cfg/trust" "$cfg/state"
suitcase key generate --alg es256 -o "$cfg/author.key" --public "$cfg/trust/author.pub" >/dev/null
echo "sct_d_placeholder" >"$cfg/device-token"
truncate -s 1M "$cfg/rootfs-a" "$cfg/rootfs-b"
# A GRUB environment block: 1024 bytes, the header line then '#' padding.
{ printf '# GRUB Environment Block\n'; printf '%*s' 999 '' | tr ' ' '#'; } >"$cfg/grubenv"
sed -e "s|/var/lib/suitcase/agent|$cfg/state|" \
  -e "s|/etc/suitcase/device-token|$cfg/device-token|" \
  -e "s|/etc/suitcase/trust/author.pub|$cfg/trust/author.pub|" \
  -e "s|/dev/disk/by-partlabel/rootfs-|$cfg/rootfs-|g" \
  -e "s|/boot/grub/grubenv|$cfg/grubenv|" \
  -e 's|^kind = "file"$|kind = "file"\ncapacity = 1048576|' \
  /etc/suitcase/agent.toml >"$cfg/agent.toml"
suitcase agent --config "$cfg/agent.toml" --check-config \
  || fail "the shipped /etc/suitcase/agent.toml does not pass --check-config (see above)"
# As shipped it must refuse to run and say why (the unit is disabled until it is edited).
if suitcase agent --config /etc/suitcase/agent.toml --check-config >"$scratch/shipped.log" 2>&1; then
  fail "the shipped agent.toml passes --check-config with its placeholders"
fi
echo "deb-test: shipped agent.toml: parses once its files exist; as shipped it refuses: $(head -1 "$scratch/shipped.log")"

# The server as its unit runs it: user suitcase, the packaged settings, the state directory.
install -d -o suitcase -g suitcase -m 0750 /var/lib/suitcase/server
(
  set -a
  # shellcheck disable=SC1091
  . /etc/suitcase/server.env
  set +a
  # A free port, not the packaged 8080 (which may be taken on this machine).
  # shellcheck disable=SC2086
  exec runuser -u suitcase -- env SUITCASE_DATA="$SUITCASE_DATA" SUITCASE_LISTEN=127.0.0.1:0 \
    NO_COLOR=1 suitcase server $SUITCASE_SERVER_ARGS
) >"$scratch/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  grep -q 'admin token' "$scratch/server.log" && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$scratch/server.log"; fail "the server exited"; }
  sleep 0.2
done
cat "$scratch/server.log"
token=/var/lib/suitcase/server/admin-token
[ "$(stat -c '%U %a' "$token" 2>/dev/null)" = "suitcase 600" ] \
  || fail "$token: $(stat -c '%U %a' "$token" 2>&1)"
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=
echo "deb-test: the server ran as suitcase on /var/lib/suitcase/server and wrote its admin token"

# Upgrade path: a reinstall keeps an edited conffile.
echo "# edited by deb-test" >>/etc/suitcase/agent.toml
dpkg -i "$core" "$agent" "$server"
grep -q '^# edited by deb-test$' /etc/suitcase/agent.toml || fail "a reinstall replaced the edited agent.toml"
echo "deb-test: reinstall kept the edited conffile"

# Purge removes the packages and their conffiles, and keeps the state.
dpkg --purge suitcase-agent suitcase-server suitcase
[ ! -e /usr/bin/suitcase ] || fail "/usr/bin/suitcase is still there after purge"
for f in /etc/suitcase/agent.toml /etc/suitcase/server.env "$agent_unit" "$server_unit"; do
  [ ! -e "$f" ] || fail "$f is still there after purge"
done
[ -f "$token" ] || fail "purge removed the server's state (it must keep it)"
echo "deb-test: purge removed binary, units and conffiles and kept /var/lib/suitcase"
echo "deb-test: all checks passed"
