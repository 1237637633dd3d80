#!/usr/bin/env bash
# The compose stack (deploy/compose/compose.yaml) on a machine that reaches Debian's archive and
# PyPI but no container registry, with podman from Debian's packages; then a check end to end.
#   deploy/compose/debian/up.sh            build the images, start the stack, check it
#   deploy/compose/debian/up.sh --down     stop it and remove its volumes
# Needs root, podman, mmdebstrap and podman-compose (apt-get install podman mmdebstrap
# golang-github-containernetworking-plugin-dnsname; pip install podman-compose), and ./run setup
# done (the project's virtual environment assembles Kafka's jars from Maven Central).
# What it does and why each step: docs/operations.md, "The compose stack, run with podman".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
export CONTAINERS_CONF=$here/containers.conf
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# The stack's secrets: throw-away ones unless given.
export POSTGRES_PASSWORD=${POSTGRES_PASSWORD:-compose-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')}
export RAPPORT_PSEUDONYM_KEY=${RAPPORT_PSEUDONYM_KEY:-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')}
key=${RAPPORT_COMPOSE_ADMIN_KEY:-compose-admin-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')}
export RAPPORT_API_KEYS=${RAPPORT_API_KEYS:-"{\"$key\": {\"subject\": \"compose-admin\", \"roles\": [\"admin\"]}}"}
export RAPPORT_WORKBENCH_SESSION_KEY=${RAPPORT_WORKBENCH_SESSION_KEY:-$(head -c 32 /dev/urandom | base64 | tr '/+' '_-')}
compose=(podman-compose -p rapport -f "$root/deploy/compose/compose.yaml" -f "$here/compose.debian.yaml")
# Grafana is not among Debian's packages: every other service of the file.
services=(lifecycle-worker lifecycle-api referral-worker referral-api rewards-worker rewards-api
  notify-worker notify-api workbench)

if [ "${1:-}" = --down ]; then
  "${compose[@]}" down -v
  exit 0
fi
command -v podman-compose >/dev/null || { echo "podman-compose: pip install podman-compose" >&2; exit 1; }

say "images"
podman image exists localhost/rapport-base:bookworm || "$root/deploy/docker/base.sh"
jars=$("$root/.venv/bin/python" -c "
from services.runtime.broker import LocalBroker
from services.runtime.settings import RuntimeSettings
print(LocalBroker(RuntimeSettings().home).assemble())")
podman build -q -v "$jars:/jars:ro" -f "$here/kafka.Containerfile" -t localhost/rapport-kafka:3.9.1 "$here"
podman build -q -f "$here/postgres.Containerfile" -t localhost/rapport-postgres:15 "$here"
podman build -q -f "$here/prometheus.Containerfile" -t localhost/rapport-prometheus:bookworm "$here"
podman build -q --build-arg BASE=localhost/rapport-base:bookworm -f "$root/deploy/docker/Dockerfile" \
  -t localhost/rapport:latest "$root"

say "the image's Python distributions against the advisories (deploy/docker/audit.py)"
pins=$(mktemp)
trap 'rm -f "$pins"' EXIT
podman run --rm --entrypoint /opt/rapport/bin/python localhost/rapport:latest -c '
from importlib import metadata
for d in metadata.distributions():
    if d.metadata["Name"] != "rapport":
        print(d.metadata["Name"] + "==" + d.version)' > "$pins"
"$root/.venv/bin/python" "$root/deploy/docker/audit.py" --lock "$pins" --lock-only

healthy() {  # podman 4.3 runs no health check on its own without systemd, nor waits on one
  local name=rapport_$1_1 deadline=$((SECONDS + ${2:-180}))
  until podman healthcheck run "$name" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "$name is not healthy:" >&2; podman logs --tail 30 "$name" >&2; exit 1
    fi
    sleep 3
  done
  echo "$name healthy"
}

# podman 4.3 knows no `condition: service_healthy`: the order of the file, step by step.
say "Kafka, PostgreSQL, Prometheus"
"${compose[@]}" up -d kafka postgres prometheus
for s in kafka postgres prometheus; do healthy "$s"; done
say "setup: the database schema and the topics"
"${compose[@]}" up -d --no-deps setup
[ "$(podman wait rapport_setup_1)" = 0 ] || { podman logs --tail 30 rapport_setup_1 >&2; exit 1; }
say "the workers, the APIs and the workbench"
"${compose[@]}" up -d --no-deps "${services[@]}"
for s in "${services[@]}"; do healthy "$s" 240; done

say "a simulated population in, outputs out"
podman exec rapport_lifecycle-worker_1 rapport simulate --customers 200 --days 180 --seed 3
exec "$root/.venv/bin/python" "$here/check.py" --api-key "$key"
