#!/usr/bin/env bash
# The base image of deploy/docker/Dockerfile made from Debian's packages alone, for a machine
# that reaches Debian's archive but no container registry (the development machine): Debian 12
# with Python 3.11, its venv module and the CA certificates, and no compilers. Needs root,
# mmdebstrap and podman (apt-get install mmdebstrap podman).
#   deploy/docker/base.sh [TAG]        default TAG: localhost/rapport-base:bookworm
set -euo pipefail
tag=${1:-localhost/rapport-base:bookworm}
rootfs=$(mktemp --suffix=.tar)
trap 'rm -f "$rootfs"' EXIT
# The machine's own certificate authorities (/usr/local/share/ca-certificates: a proxy that
# inspects TLS, say) are trusted inside too, as they are by the machine's other programs: pip
# in the image's build reaches PyPI through the same network.
mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
  --customize-hook='if [ -d /usr/local/share/ca-certificates ]; then
      cp -r /usr/local/share/ca-certificates/. "$1/usr/local/share/ca-certificates/"
      chroot "$1" update-ca-certificates; fi' \
  bookworm "$rootfs" http://deb.debian.org/debian
podman import --change 'CMD ["/bin/bash"]' "$rootfs" "$tag"
