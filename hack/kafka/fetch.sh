#!/usr/bin/env bash
# Fetches Apache Kafka's jars through Maven (hack/kafka/pom.xml) into
# bin/kafka/libs, where test/harness/kafkabroker starts the broker from.
# Usage: fetch.sh KAFKA_VERSION (the Makefile passes its KAFKA_VERSION).
# A stamp holding the version and a hash of the pom lets later runs skip.
set -euo pipefail

version="${1:?usage: $0 KAFKA_VERSION}"
root=$(cd "$(dirname "$0")/../.." && pwd)
dest="${KAFKA_DIR:-$root/bin/kafka}"
pom="$root/hack/kafka/pom.xml"
mkdir -p "$dest"

pins="$version $(sha256sum "$pom" | cut -c1-16)"
stamp="$dest/.stamp-$version"
if [[ -d "$dest/libs" && -f "$stamp" && "$(cat "$stamp")" == "$pins" ]]; then
  echo "kafka: $version already fetched in $dest"
  exit 0
fi

for tool in mvn java; do
  if ! command -v "$tool" >/dev/null; then
    echo "kafka: $tool not found; make kafka needs Maven and Java 17 or newer" >&2
    exit 1
  fi
done

start=$(date +%s)
# Maven runs quietly into a log; print elapsed time meanwhile, so a cold
# run (an empty ~/.m2: about 60 MB of jars) never looks hung.
( while sleep 30; do echo "  ... still fetching Kafka $version ($(( $(date +%s) - start ))s elapsed)"; done ) &
ticker=$!
trap 'kill $ticker 2>/dev/null || true' EXIT

echo "kafka: fetching Apache Kafka $version and its dependencies through Maven into $dest/libs"
# Copy into a fresh directory and swap it in only when Maven succeeded, so
# a failed or interrupted run never leaves a half-filled libs/ behind.
rm -rf "$dest/libs.tmp" "$stamp"
log="$dest/maven.log"
if ! mvn -B -ntp -Dstyle.color=never -f "$pom" \
    -Dkafka.version="$version" -Dkafka.libs.dir="$dest/libs.tmp" \
    dependency:copy-dependencies >"$log" 2>&1; then
  tail -n 40 "$log" | sed 's/\x1b\[[0-9;]*m//g' >&2
  echo "kafka: Maven failed after $(( $(date +%s) - start ))s; full log: $log" >&2
  exit 1
fi
if ! ls "$dest/libs.tmp"/kafka_2.13-"$version".jar >/dev/null 2>&1; then
  echo "kafka: Maven succeeded but kafka_2.13-$version.jar is not in $dest/libs.tmp; log: $log" >&2
  exit 1
fi
rm -rf "$dest/libs"
mv "$dest/libs.tmp" "$dest/libs"
echo "$pins" >"$stamp"
echo "kafka: $version fetched in $(( $(date +%s) - start ))s ($(ls "$dest/libs" | wc -l) jars, $(du -sh "$dest/libs" | cut -f1))"
