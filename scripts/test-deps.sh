#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust itself, when it is missing: the tansu
# Kafka-protocol broker (the Kafka end-to-end tests start it; a crates.io install, ~10 minutes,
# once), the s3s-fs S3-protocol server (the object-storage checkpoint tests start it) and a
# Java 17 runtime (Apache Flink runs the Nexmark queries' SQL as an oracle; PyFlink
# itself is installed by scripts/nexmark-flink-check.sh). Called by scripts/test.sh and .ci/run;
# safe to run again. Prints what it could not install and exits non-zero then.
set -uo pipefail

missing=()

if ! command -v tansu >/dev/null 2>&1 && [ -z "${TANSU:-}" ]; then
  echo "== cargo install tansu (Kafka-protocol broker for the Kafka end-to-end tests, ~10 minutes, once)"
  if ! cargo install tansu --version 0.6.0 --features dynostore,libsql; then
    missing+=("tansu: cargo install tansu --version 0.6.0 --features dynostore,libsql")
  fi
fi

if ! command -v s3s-fs >/dev/null 2>&1 && [ -z "${S3S_FS:-}" ]; then
  echo "== cargo install s3s-fs (S3-protocol server for the object-storage checkpoint tests, ~3 minutes, once)"
  # 0.14.1: the newest that builds with the toolchain of the machine image (0.17 needs rustc 1.96).
  if ! cargo install s3s-fs --version 0.14.1 --features binary; then
    missing+=("s3s-fs: cargo install s3s-fs --version 0.14.1 --features binary")
  fi
fi

if ! command -v java >/dev/null 2>&1; then
  echo "== apt-get install openjdk-17-jre-headless (Apache Flink for the Nexmark check)"
  sudo_cmd=()
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo_cmd=(sudo); fi
  if ! { "${sudo_cmd[@]}" apt-get update -qq && "${sudo_cmd[@]}" apt-get install -y -qq openjdk-17-jre-headless; }; then
    missing+=("java 17: apt-get install openjdk-17-jre-headless")
  fi
fi

if [ ${#missing[@]} -gt 0 ]; then
  printf 'could not install: %s\n' "${missing[@]}" >&2
  exit 1
fi
