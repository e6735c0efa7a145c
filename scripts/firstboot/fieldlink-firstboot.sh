#!/bin/sh
# Fieldlink first boot, run as root by cloud-init (runcmd: sh /boot/firmware/fieldlink/firstboot.sh;
# scripts/firstboot/cloud-init.ts adds that entry to the boot partition's user-data).
#
# From the boot partition's fieldlink/ folder (written by `fieldlink provision`):
#   gateway.json       -> /etc/fieldlink/gateway.json        0640 root:fieldlink
#   connection-string  -> /etc/fieldlink/connection-string   0600 fieldlink:fieldlink, then erased
#   hub-ca.pem         -> /etc/fieldlink/hub-ca.pem          0644 (optional)
#   service.conf       -> /etc/systemd/system/fieldlink-gateway.service.d/50-board.conf (optional)
#   bundle.tgz         -> unpacked into /opt/fieldlink (optional; `npm ci --omit=dev` stays manual)
# and, once /opt/fieldlink/hardware exists (the bundle), the OS files:
#   systemd unit, udev rules, D-Bus policy; the service is enabled.
#
# Creates the system user fieldlink (home /var/lib/fieldlink, no login, groups dialout and
# bluetooth when they exist). The boot partition is FAT: anyone can read it, so the connection
# string is overwritten before it is unlinked, and never printed.
#
# Idempotent: the config part runs once (marker /etc/fieldlink/.firstboot-done; a later run
# never installs a secret again, so it cannot undo a rotation); the OS files are installed
# whenever they differ, so running this again after unpacking the bundle by hand installs them:
#   sudo sh /opt/fieldlink/scripts/firstboot/fieldlink-firstboot.sh
#
# Test overrides: FIELDLINK_ROOT (default /) is the root filesystem to install into,
# FIELDLINK_BOOT (default /boot/firmware) the boot partition. With a root other than / nothing
# is asked of a running systemd, udev or D-Bus.
set -eu

ROOT=${FIELDLINK_ROOT:-/}
BOOT=${FIELDLINK_BOOT:-/boot/firmware}
# R prefixes absolute paths: empty for the real root.
R=${ROOT%/}
SRC=$BOOT/fieldlink
ETC=$R/etc/fieldlink
MARKER=$ETC/.firstboot-done
BUNDLE=$R/opt/fieldlink
UNIT=fieldlink-gateway.service
USER_NAME=fieldlink

log() { printf 'fieldlink-firstboot: %s\n' "$*"; }
fail() { printf 'fieldlink-firstboot: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "must run as root"
[ -d "$ROOT" ] || fail "root $ROOT is not a directory"

# useradd/groupadd/usermod on another root: --root chroots into it and edits its files
# (written ${R:+--root "$ROOT"} below).

# Numeric ids from the target's own files (names would resolve against the running system).
uid_of() { awk -F: -v n="$1" '$1 == n { print $3 }' "$R/etc/passwd"; }
gid_of() { awk -F: -v n="$1" '$1 == n { print $3 }' "$R/etc/group"; }

# Overwrite, then unlink. FAT has no modes: the boot partition is readable by every user.
erase() {
  if command -v shred >/dev/null 2>&1; then
    shred -u -z -n 1 "$1"
  else
    size=$(wc -c <"$1")
    dd if=/dev/zero of="$1" bs=1 count="$size" conv=notrunc,fsync 2>/dev/null
    rm -f "$1"
  fi
  sync
}

# install FILE DEST MODE OWNER:GROUP (numeric) - atomically, only when the content differs;
# owner and mode are made right either way. Returns 1 when the content was already there.
put() {
  if [ -f "$2" ] && cmp -s "$1" "$2"; then
    chown "$4" "$2"
    chmod "$3" "$2"
    return 1
  fi
  mkdir -p "$(dirname "$2")"
  cp "$1" "$2.tmp.$$"
  chown "$4" "$2.tmp.$$"
  chmod "$3" "$2.tmp.$$"
  mv -f "$2.tmp.$$" "$2"
}

make_user() {
  if [ -z "$(gid_of "$USER_NAME")" ]; then
    groupadd ${R:+--root "$ROOT"} --system "$USER_NAME"
    log "created group $USER_NAME"
  fi
  groups=
  for g in dialout bluetooth; do
    if [ -n "$(gid_of "$g")" ]; then groups=${groups:+$groups,}$g; else log "no group $g on this system: skipped"; fi
  done
  if [ -z "$(uid_of "$USER_NAME")" ]; then
    shell=/usr/sbin/nologin
    [ -e "$R$shell" ] || shell=/bin/false
    useradd ${R:+--root "$ROOT"} --system --gid "$USER_NAME" ${groups:+--groups "$groups"} \
      --home-dir /var/lib/fieldlink --no-create-home --shell "$shell" \
      --comment "Fieldlink gateway" "$USER_NAME"
    log "created system user $USER_NAME${groups:+ (groups $groups)}"
  elif [ -n "$groups" ]; then
    usermod ${R:+--root "$ROOT"} --append --groups "$groups" "$USER_NAME"
  fi
}

install_config() {
  # Whatever happens from here, the secret does not stay on the world-readable FAT partition:
  # cloud-init runs this once, so a failed run would otherwise leave it there for good.
  trap 'if [ -f "$SRC/connection-string" ]; then erase "$SRC/connection-string"; log "erased the connection string from the boot partition after a failure: re-provision the card"; fi' EXIT
  [ -f "$SRC/gateway.json" ] || fail "$SRC/gateway.json missing: provision the card with \`fieldlink provision\`"
  [ -f "$SRC/connection-string" ] || fail "$SRC/connection-string missing: provision the card with \`fieldlink provision\`"
  make_user
  uid=$(uid_of "$USER_NAME")
  gid=$(gid_of "$USER_NAME")
  [ -n "$uid" ] && [ -n "$gid" ] || fail "user $USER_NAME not found after creating it"

  mkdir -p "$ETC"
  chown 0:0 "$ETC"
  chmod 0755 "$ETC"
  umask 077
  put "$SRC/gateway.json" "$ETC/gateway.json" 0640 "0:$gid" || true
  log "installed /etc/fieldlink/gateway.json (0640 root:$USER_NAME)"
  put "$SRC/connection-string" "$ETC/connection-string" 0600 "$uid:$gid" || true
  log "installed /etc/fieldlink/connection-string (0600 $USER_NAME)"
  if [ -f "$SRC/hub-ca.pem" ]; then
    put "$SRC/hub-ca.pem" "$ETC/hub-ca.pem" 0644 0:0 || true
    log "installed /etc/fieldlink/hub-ca.pem"
  fi
  if [ -f "$SRC/service.conf" ]; then
    put "$SRC/service.conf" "$R/etc/systemd/system/$UNIT.d/50-board.conf" 0644 0:0 || true
    log "installed the board's service limits ($UNIT.d/50-board.conf)"
  fi

  mkdir -p "$R/var/lib/fieldlink"
  chown "$uid:$gid" "$R/var/lib/fieldlink"
  chmod 0700 "$R/var/lib/fieldlink"
  umask 022

  # The marker before the erase: a power cut between them must not make later runs look for a
  # secret that is already installed.
  date -u '+%Y-%m-%dT%H:%M:%SZ' >"$MARKER"
  erase "$SRC/connection-string"
  log "erased the connection string from the boot partition"
  rm -f "$SRC/gateway.json" "$SRC/hub-ca.pem" "$SRC/service.conf"
  log "removed the provisioned files from the boot partition"
  trap - EXIT
}

unpack_bundle() {
  [ -f "$SRC/bundle.tgz" ] || return 0
  mkdir -p "$BUNDLE"
  # npm pack puts everything under package/.
  tar -xzf "$SRC/bundle.tgz" -C "$BUNDLE" --strip-components=1 --no-same-owner
  chown -R 0:0 "$BUNDLE"
  rm -f "$SRC/bundle.tgz"
  log "unpacked the bundle into /opt/fieldlink (next: npm ci --omit=dev there, see hardware/DEPLOY.md)"
}

install_os_files() {
  hw=$BUNDLE/hardware
  if [ ! -f "$hw/systemd/$UNIT" ]; then
    log "no bundle in /opt/fieldlink yet: unit, udev rules and D-Bus policy not installed (run this script again after unpacking it)"
    return 0
  fi
  changed=
  if put "$hw/systemd/$UNIT" "$R/etc/systemd/system/$UNIT" 0644 0:0; then log "installed $UNIT"; changed=1; fi
  if put "$hw/udev/99-fieldlink-serial.rules" "$R/etc/udev/rules.d/99-fieldlink-serial.rules" 0644 0:0; then
    log "installed udev rules 99-fieldlink-serial.rules"
    if [ -z "$R" ] && command -v udevadm >/dev/null 2>&1; then
      udevadm control --reload-rules && udevadm trigger --subsystem-match=tty --action=add || log "udev reload failed: the names appear after a reboot"
    fi
  fi
  # dbus-daemon watches system.d and reloads by itself.
  if put "$hw/dbus/fieldlink-gateway.conf" "$R/etc/dbus-1/system.d/fieldlink-gateway.conf" 0644 0:0; then log "installed D-Bus policy fieldlink-gateway.conf"; fi

  wants=$R/etc/systemd/system/multi-user.target.wants
  if [ -z "$R" ] && [ -d /run/systemd/system ]; then
    [ -z "$changed" ] || systemctl daemon-reload
    systemctl is-enabled --quiet "$UNIT" 2>/dev/null || { systemctl enable "$UNIT"; log "enabled $UNIT"; }
  elif [ ! -L "$wants/$UNIT" ]; then
    if command -v systemctl >/dev/null 2>&1; then
      systemctl --root="$ROOT" --quiet enable "$UNIT"
    else
      mkdir -p "$wants"
      ln -s "/etc/systemd/system/$UNIT" "$wants/$UNIT"
    fi
    log "enabled $UNIT"
  fi
}

log "starting (root $ROOT, boot partition $BOOT)"
if [ -f "$MARKER" ]; then
  log "config already installed on $(cat "$MARKER"): left as it is"
  # A secret must not linger on the FAT partition, and is never installed a second time.
  if [ -f "$SRC/connection-string" ]; then
    erase "$SRC/connection-string"
    log "erased a connection string found on the boot partition without installing it (re-provision: remove /etc/fieldlink/.firstboot-done first)"
  fi
else
  install_config
fi
unpack_bundle
install_os_files
log "done"
