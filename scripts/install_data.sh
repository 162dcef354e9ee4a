#!/usr/bin/env bash
# Installs Debian's dataset-fashion-mnist (real IDX files under
# /usr/share/datasets/fashion-mnist/) when possible. Never fails the build:
# the loader falls back to the Keras cache and then to synthetic data, loudly.
set -u
dir=/usr/share/datasets/fashion-mnist
if ls "$dir"/*ubyte* >/dev/null 2>&1; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_data: no apt-get; Fashion-MNIST will come from the fallbacks" >&2; exit 0
fi
sudo=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo -n"
if $sudo apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
   { $sudo apt-get update -q >/dev/null 2>&1 && \
     $sudo apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; }; then
  echo "install_data: installed dataset-fashion-mnist"
else
  echo "install_data: could not install dataset-fashion-mnist; using fallbacks" >&2
fi
exit 0
