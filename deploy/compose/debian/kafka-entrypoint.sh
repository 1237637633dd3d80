#!/bin/sh
# The official image's way: every KAFKA_<NAME> variable is the broker setting <name> (lower
# case, "_" read as "."); the storage is formatted on the first start.
set -eu
config=/var/lib/kafka/server.properties
: > "$config"
env | grep '^KAFKA_' | grep -v '^KAFKA_HEAP_OPTS=' | while IFS='=' read -r name value; do
  key=$(echo "${name#KAFKA_}" | tr 'A-Z_' 'a-z.')
  echo "$key=$value" >> "$config"
done
grep -q '^log.dirs=' "$config" || echo "log.dirs=/var/lib/kafka/data" >> "$config"
java=/usr/lib/jvm/java-17-openjdk-amd64/bin/java
cp="/opt/kafka/libs/*"
"$java" -cp "$cp" kafka.tools.StorageTool format --ignore-formatted \
  -t "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" -c "$config"
exec "$java" ${KAFKA_HEAP_OPTS:--Xmx512m -Xms512m} -Djava.awt.headless=true -cp "$cp" kafka.Kafka "$config"
