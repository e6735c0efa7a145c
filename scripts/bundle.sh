#!/usr/bin/env bash
# Deploy bundle for a gateway: `npm run bundle` -> dist-bundle/fieldlink-<version>.tgz.
#
# An npm pack tarball (everything under package/) holding what runs on the Pi, installed there
# into /opt/fieldlink with `npm ci --omit=dev` (native modules compile on the Pi; see
# hardware/DEPLOY.md):
#   dist/ (compiled, without dist/test and dist/bench), hardware/, cloud/web/, docs/,
#   scripts/firstboot/fieldlink-firstboot.sh, package.json, README.md, and the lock file as
#   npm-shrinkwrap.json.
#
# package.json has no "files" list and .gitignore excludes dist/, so a plain `npm pack` would
# ship the sources without the build. The bundle is packed from a staging directory holding
# exactly the files above (no .gitignore there), which keeps package.json as it is.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
out=$root/dist-bundle

npm run build

stage=$(mktemp -d "${TMPDIR:-/tmp}/fieldlink-bundle-XXXXXX")
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage/dist" "$stage/cloud" "$stage/scripts/firstboot"
for part in dist/*; do
  case "$part" in
    dist/test | dist/bench) ;;
    *) cp -R "$part" "$stage/dist/" ;;
  esac
done
cp -R hardware "$stage/hardware"
cp -R cloud/web "$stage/cloud/web"
cp -R docs "$stage/docs"
cp scripts/firstboot/fieldlink-firstboot.sh "$stage/scripts/firstboot/"
cp package.json README.md "$stage/"
# npm pack never ships package-lock.json; npm-shrinkwrap.json is the same lock under the name it
# does ship, and `npm ci` on the Pi installs exactly the locked versions from it.
cp package-lock.json "$stage/npm-shrinkwrap.json"

mkdir -p "$out"
# npm prints the tarball's name last; --json would need parsing, the name is predictable.
(cd "$stage" && npm pack --silent --pack-destination "$out" >/dev/null)
version=$(node -p 'require("./package.json").version')
tgz=$out/fieldlink-$version.tgz
[ -f "$tgz" ] || { echo "bundle: npm pack did not produce $tgz" >&2; exit 1; }

size=$(wc -c <"$tgz")
echo "$tgz ($((size / 1024)) KiB)"
