#!/usr/bin/env bash
# `make run`: migrate, start one worker in the background, seed the demo apps, wait until they
# are priced, then say where to look. `make stop` stops the worker; `make down` the stack.
#
#   DEMO=1 make run    also starts the local fake Steam store (tests/support/fakes/steam.py) and prices
#                      against it: for machines that cannot reach store.steampowered.com.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
VENV=${VENV:-.venv}
STACK_DIR=${STACK_DIR:-$REPO/.stack}
RUN_DIR=$STACK_DIR/run LOG_DIR=$STACK_DIR/logs
mkdir -p "$RUN_DIR" "$LOG_DIR"
export DATA_DIR=${DATA_DIR:-$STACK_DIR/worker-data}
WEB_PORT=${WEB_PORT:-6066}
MYSQL_DB=${MYSQL_DB:-steam_db}
PY=$VENV/bin/python

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [ "${DEMO:-0}" = 1 ]; then
  if ! alive "$RUN_DIR/fake-steam.pid"; then
    nohup "$PY" -m tests.support.fakes.steam --port 8089 --seed-demo >"$LOG_DIR/fake-steam.log" 2>&1 &
    echo $! >"$RUN_DIR/fake-steam.pid"
  fi
  export STEAM_STORE_URL=http://127.0.0.1:8089 STEAM_API_URL=http://127.0.0.1:8089
  export STEAMSPY_URL=http://127.0.0.1:8089/api.php
  echo "Demo mode: pricing against the fake Steam store at $STEAM_STORE_URL"
fi

"$VENV/bin/steamprice" migrate

if alive "$RUN_DIR/worker.pid"; then
  echo "A worker is already running (pid $(cat "$RUN_DIR/worker.pid")); reusing it."
else
  if ss -ltn 2>/dev/null | grep -q "127.0.0.1:$WEB_PORT "; then
    echo "Port $WEB_PORT is taken by another process: set WEB_PORT or stop it." >&2
    exit 1
  fi
  nohup "$VENV/bin/steamprice" worker -l info >>"$LOG_DIR/worker.log" 2>&1 &
  echo $! >"$RUN_DIR/worker.pid"
  echo "Started a worker (pid $!), log: $LOG_DIR/worker.log"
fi

printf 'Waiting for the worker to consume'
for _ in $(seq 1 120); do
  if curl -fs "http://127.0.0.1:$WEB_PORT/health" >/dev/null 2>&1; then break; fi
  if ! alive "$RUN_DIR/worker.pid"; then
    echo; echo "The worker exited; the end of its log:" >&2; tail -n 40 "$LOG_DIR/worker.log" >&2; exit 1
  fi
  printf '.'; sleep 1
done
echo
curl -fs "http://127.0.0.1:$WEB_PORT/health" >/dev/null || {
  echo "The worker did not start consuming within 120 s; see $LOG_DIR/worker.log" >&2; exit 1; }

"$VENV/bin/steamprice" seed --file scripts/demo-apps.txt
want=$(grep -cE '^[[:space:]]*[0-9]' scripts/demo-apps.txt)
count() { mysql -h127.0.0.1 -uroot -N -e "SELECT COUNT(DISTINCT app_id) FROM \`$MYSQL_DB\`.price_current" 2>/dev/null || echo 0; }
printf 'Waiting for %s apps to reach price_current' "$want"
for _ in $(seq 1 90); do
  n=$(count)
  [ "$n" -ge "$want" ] && break
  printf '.'; sleep 2
done
echo " $(count)/$want priced"
if [ "$(count)" -lt "$want" ]; then
  echo "Not every app is priced yet. Offline? Try DEMO=1 make run. Worker log: $LOG_DIR/worker.log" >&2
fi
cat <<TXT

steamprice is running.
  Price pages:  http://127.0.0.1:$WEB_PORT/prices   (JSON: /api/prices, /api/apps/ID, /api/changes)
  Faust web (stats, /health, /metrics): http://127.0.0.1:$WEB_PORT/
  MySQL:        mysql -h127.0.0.1 -uroot $MYSQL_DB -e 'SELECT * FROM price_current LIMIT 20'
  Prometheus:   http://127.0.0.1:9090/  (try steam_games_processed_total)
  Worker log:   $LOG_DIR/worker.log
  Seed more:    $VENV/bin/steamprice seed APP_ID ...
  Stop:         make stop   (worker)   make down   (Kafka, MariaDB, Prometheus)
TXT
