#!/bin/sh
# Build libbpf 1.5 (the copy in Linux 6.12's tools/lib/bpf, from Debian's
# linux-source-6.12 package) into PREFIX_DIR, for pybpf.testing.selftests_kernel.
#
#   sh tests/selftests/build_libbpf.sh PREFIX_DIR [WORKDIR]
#
# The library lands in PREFIX_DIR/usr/lib64/libbpf.so (point PYBPF_LIBBPF at it, or
# use /opt/libbpf-1.5, one of the default places).  WORKDIR (default: a fresh
# temporary directory) holds the downloaded package and the build; nothing is
# written into the repository.  Needs apt-get (run as root on Debian), make, a C
# compiler, libelf-dev, zlib1g-dev and pkg-config (installed when missing).
set -eu
DEST=${1:?usage: build_libbpf.sh PREFIX_DIR [WORKDIR]}
WORK=${2:-$(mktemp -d)}
mkdir -p "$DEST" "$WORK"
DEST=$(cd "$DEST" && pwd)
WORK=$(cd "$WORK" && pwd)
missing=
for p in libelf-dev zlib1g-dev pkg-config make gcc xz-utils; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  apt-get update >/dev/null
  apt-get install -y $missing
fi
cd "$WORK"
if ! ls linux-source-6.12_*.deb >/dev/null 2>&1; then
  apt-get download linux-source-6.12 || { apt-get update >/dev/null && apt-get download linux-source-6.12; }
fi
if [ ! -d linux-source-6.12/tools/lib/bpf ]; then
  dpkg-deb --fsys-tarfile linux-source-6.12_*.deb | tar -x ./usr/src/linux-source-6.12.tar.xz
  tar --wildcards -xJf usr/src/linux-source-6.12.tar.xz 'linux-source-6.12/tools/*' \
    linux-source-6.12/scripts/bpf_doc.py linux-source-6.12/include/uapi/linux/bpf.h
  rm -f usr/src/linux-source-6.12.tar.xz
fi
make -C linux-source-6.12/tools/lib/bpf OBJDIR="$WORK/build/" DESTDIR="$DEST" prefix=/usr install
ls "$DEST"/usr/lib*/libbpf.so
