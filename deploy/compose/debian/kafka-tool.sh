#!/bin/sh
# kafka-broker-api-versions.sh, as the official image has it (the compose health check).
exec /usr/lib/jvm/java-17-openjdk-amd64/bin/java -Xmx128m -cp "/opt/kafka/libs/*" \
  kafka.admin.BrokerApiVersionsCommand "$@"
