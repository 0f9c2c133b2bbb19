#!/usr/bin/env bash
# System pieces the project needs besides Python packages:
#   - Fashion-MNIST (Debian package dataset-fashion-mnist -> /usr/share/datasets/fashion-mnist)
#   - the fortunes corpus of the gpt network (Debian package fortunes, with fortunes-min -> /usr/share/games/fortunes)
#   - jemalloc (Debian package libjemalloc2): torch CPU tensors page-fault far less with it
# Installs them with apt-get when running as root on Debian; otherwise says what to do.
set -euo pipefail

missing=()
[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
[ -e /usr/share/games/fortunes/cookie ] || missing+=(fortunes)   # cookie: a file of fortunes, not of fortunes-min
ls /usr/lib/*/libjemalloc.so.2 >/dev/null 2>&1 || missing+=(libjemalloc2)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]}"
  # Wait up to 10 minutes for another apt/dpkg (an unattended upgrade, say) to release its lock.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
  exit 0
fi

for package in "${missing[@]}"; do
  case "$package" in
    dataset-fashion-mnist)
      echo "warning: Fashion-MNIST not found in /usr/share/datasets/fashion-mnist." >&2
      echo "  Install it with 'sudo apt-get install dataset-fashion-mnist', or put the four IDX files" >&2
      echo "  in a folder and set dataset.root=<folder> on the command line." >&2 ;;
    fortunes)
      echo "warning: the fortunes corpus (network gpt) not found in /usr/share/games/fortunes." >&2
      echo "  Install it with 'sudo apt-get install fortunes', or pass a folder of fortune files as dataset.root=<folder>." >&2 ;;
    libjemalloc2)
      echo "note: jemalloc not found; falling back to glibc malloc tunables (install libjemalloc2 for speed)." >&2 ;;
  esac
done
