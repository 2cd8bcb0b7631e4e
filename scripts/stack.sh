#!/usr/bin/env bash
# The local real stack without Docker: Kafka (KRaft, single node) on 127.0.0.1:9092,
# MariaDB on 127.0.0.1:3306, Prometheus on 127.0.0.1:9090.
#
#   scripts/stack.sh install        install what is missing (Debian packages, Kafka jars)
#   scripts/stack.sh up             install, then start whatever is not running; wait until it answers
#   scripts/stack.sh down [--purge] stop what `up` started (by pid file); --purge also deletes the state
#   scripts/stack.sh purge          same as `down --purge`
#   scripts/stack.sh status         one line per service; exit 0 if all run, 3 otherwise
#
# Environment:
#   STACK_DIR         state dir (data, pid files, logs)        [<repo>/.stack]
#   STEAMPRICE_CACHE  cache of the Kafka jars                  [~/.cache/steamprice]
#
# State dir layout:
#   run/{kafka,mariadb,prometheus}.pid     pid of the JVM / mariadbd / prometheus
#   logs/{kafka,mariadb,prometheus}.log    their stdout+stderr (logs/install.log: apt, maven)
#   kafka/{server.properties,log4j2.properties,cluster.id,data/}
#   mariadb/{data/,mariadb.sock}
#   prometheus/data/
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
CONF_DIR=$SCRIPT_DIR/stack
STACK_DIR=${STACK_DIR:-$REPO/.stack}
CACHE_DIR=${STEAMPRICE_CACHE:-$HOME/.cache/steamprice}

KAFKA_VERSION=4.1.1
KAFKA_HOME=$CACHE_DIR/kafka-$KAFKA_VERSION
KAFKA_LIB=$KAFKA_HOME/lib
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
KAFKA_TIMEOUT=90
MARIADB_PORT=3306
MARIADB_TIMEOUT=60
PROMETHEUS_PORT=9090
PROMETHEUS_TIMEOUT=30
PROMETHEUS_CONFIG=$REPO/monitoring/prometheus/prometheus.yml
STOP_TIMEOUT=30

APT_PACKAGES=(mariadb-server mariadb-client prometheus)
SERVICES=(kafka mariadb prometheus)

RUN_DIR=$STACK_DIR/run
LOG_DIR=$STACK_DIR/logs
MARIADB_DATA=$STACK_DIR/mariadb/data
MARIADB_SOCK=$STACK_DIR/mariadb/mariadb.sock
PROMETHEUS_DATA=$STACK_DIR/prometheus/data
KAFKA_STATE=$STACK_DIR/kafka
KAFKA_DATA=$KAFKA_STATE/data
MARKER=$STACK_DIR/.steamprice-stack

say() { printf 'stack: %s\n' "$*"; }
warn() { printf 'stack: WARNING: %s\n' "$*" >&2; }
die() { printf 'stack: ERROR: %s\n' "$*" >&2; exit 1; }

pid_file() { echo "$RUN_DIR/$1.pid"; }
log_file() { echo "$LOG_DIR/$1.log"; }

service_ports() {
    case $1 in
        kafka) echo "$KAFKA_PORT $KAFKA_CONTROLLER_PORT" ;;
        mariadb) echo "$MARIADB_PORT" ;;
        prometheus) echo "$PROMETHEUS_PORT" ;;
    esac
}

# A string that the command line of our own process of this service contains; guards the
# pid files against pid reuse (we never signal a process that is not ours).
service_marker() {
    case $1 in
        kafka) echo "$KAFKA_STATE/server.properties" ;;
        mariadb) echo "--datadir=$MARIADB_DATA" ;;
        prometheus) echo "--storage.tsdb.path=$PROMETHEUS_DATA" ;;
    esac
}

# Prints the pid of our running process of the service; fails when there is none.
service_pid() {
    local f pid
    f=$(pid_file "$1")
    [[ -r $f ]] || return 1
    pid=$(tr -dc '0-9' <"$f")
    [[ -n $pid ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$(service_marker "$1")" || return 1
    # A zombie is as good as gone.
    [[ $(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null) != Z ]] || return 1
    echo "$pid"
}

port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Who listens on a port (best effort: needs ss from iproute2).
port_owner() {
    local out
    if command -v ss >/dev/null 2>&1; then
        out=$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n1 || true)
        [[ -n $out ]] && { echo "$out"; return; }
    fi
    echo "unknown process"
}

log_tail() {
    local f
    f=$(log_file "$1")
    if [[ -s $f ]]; then
        echo "---- $f (last lines since the last start) ----" >&2
        # Only what the latest start wrote: from the last "stack.sh starting" marker on.
        awk '/^==== .* stack\.sh starting / {n = 0; delete buf; next} {buf[++n] = $0}
             END {for (i = 1; i <= n; i++) print buf[i]}' "$f" | grep -v '^$' | tail -n "${2:-25}" >&2
        echo "----" >&2
    else
        echo "(log $f is empty or missing)" >&2
    fi
}

# Start a command detached from this shell (own session, no terminal, survives the caller);
# the pid file gets the pid of the final program (exec keeps it), not of a wrapper.
# fd 9 (the lock) is not inherited, or the daemon would hold the lock forever.
spawn() {
    local name=$1
    shift
    local pidf log
    pidf=$(pid_file "$name")
    log=$(log_file "$name")
    rm -f "$pidf"
    {
        echo
        echo "==== $(date -Is) stack.sh starting $name"
    } >>"$log"
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' spawn "$pidf" "$@" \
        </dev/null >>"$log" 2>&1 9>&- &
    local i
    for i in $(seq 50); do
        [[ -s $pidf ]] && return 0
        sleep 0.1
    done
    die "$name: the process did not write its pid file $pidf"
}

# ---------------------------------------------------------------------------------------------
# install

pkg_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

# Debian packages may try to start their own services (mariadb, prometheus) from their
# maintainer scripts. A policy-rc.d that answers 101 makes invoke-rc.d/deb-systemd-invoke
# refuse, so nothing system-wide grabs our ports. Only ours if none exists already.
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_OURS=0
remove_policy_rc() {
    if [[ $POLICY_RC_OURS == 1 ]]; then
        rm -f "$POLICY_RC"
        POLICY_RC_OURS=0
    fi
}

apt_install() {
    local log=$1
    shift
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" >>"$log" 2>&1
}

install_packages() {
    local log=$LOG_DIR/install.log missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    local want_kcat=0
    command -v kcat >/dev/null 2>&1 || want_kcat=1
    if ((${#missing[@]} == 0)); then
        ((want_kcat == 0)) || say "note: kcat is not installed (optional; apt-get install kcat)"
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}"
    command -v apt-get >/dev/null 2>&1 || die "missing packages ${missing[*]} and no apt-get (not Debian?)"
    say "installing Debian packages: ${missing[*]} (log: $log)"
    if [[ ! -e $POLICY_RC ]]; then
        printf '#!/bin/sh\n# temporary, from steamprice scripts/stack.sh: do not start services\nexit 101\n' >"$POLICY_RC"
        chmod 755 "$POLICY_RC"
        POLICY_RC_OURS=1
        trap remove_policy_rc EXIT
        trap 'remove_policy_rc; exit 130' INT TERM
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1 || {
        tail -n 20 "$log" >&2
        remove_policy_rc
        die "apt-get update failed (log: $log)"
    }
    if ! apt_install "$log" "${missing[@]}"; then
        tail -n 30 "$log" >&2
        remove_policy_rc
        die "apt-get install ${missing[*]} failed (log: $log)"
    fi
    if ((want_kcat)); then
        apt_install "$log" kcat || warn "kcat could not be installed (optional, continuing)"
    fi
    remove_policy_rc
}

check_java() {
    command -v java >/dev/null 2>&1 ||
        die "java not found: Java 17 is needed for Kafka (apt-get install openjdk-17-jre-headless)"
    local v
    v=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
    [[ ${v%%.*} =~ ^[0-9]+$ ]] && ((${v%%.*} >= 17)) ||
        die "java is version '${v:-unknown}', Kafka $KAFKA_VERSION needs Java 17 or newer"
}

# Checks a lib dir: prints a reason and fails if it is not a usable broker classpath.
verify_kafka_lib() {
    local dir=$1 n bindings j
    [[ -f $dir/kafka_2.13-$KAFKA_VERSION.jar ]] || { echo "kafka_2.13-$KAFKA_VERSION.jar missing"; return 1; }
    n=$(find "$dir" -maxdepth 1 -name '*.jar' | wc -l)
    ((n >= 30)) || { echo "only $n jars"; return 1; }
    bindings=$(find "$dir" -maxdepth 1 -name '*.jar' -printf '%f\n' |
        grep -E '^(log4j-slf4j-impl|log4j-slf4j2-impl|slf4j-reload4j|slf4j-log4j12|slf4j-simple|slf4j-nop|slf4j-jdk14|logback-classic)-' || true)
    [[ $(grep -c . <<<"$bindings") == 1 && $bindings == log4j-slf4j-impl-* ]] ||
        { echo "expected exactly one SLF4J binding (log4j-slf4j-impl), found: ${bindings:-none}"; return 1; }
    ! find "$dir" -maxdepth 1 -name 'slf4j-api-2.*.jar' | grep -q . || { echo "slf4j-api 2.x present"; return 1; }
    ! find "$dir" -maxdepth 1 -name 'kafka-test-common-runtime*' | grep -q . ||
        { echo "kafka-test-common-runtime present"; return 1; }
    for j in log4j-api-2.24.3.jar log4j-core-2.24.3.jar slf4j-api-1.7.36.jar; do
        [[ -f $dir/$j ]] || { echo "$j missing"; return 1; }
    done
}

install_kafka_jars() {
    local stamp=$KAFKA_LIB/.complete want
    want=$(sha256sum "$CONF_DIR/kafka-pom.xml" | cut -d' ' -f1)
    if [[ -f $stamp && $(cat "$stamp") == "$want" ]] && verify_kafka_lib "$KAFKA_LIB" >/dev/null; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 ||
        die "mvn not found: Maven is needed once to fetch the Kafka jars (apt-get install maven)"
    local log=$LOG_DIR/install.log tmp=$KAFKA_HOME/lib.tmp why
    say "fetching Kafka $KAFKA_VERSION jars with Maven into $KAFKA_LIB (log: $log)"
    mkdir -p "$KAFKA_HOME"
    rm -rf "$tmp"
    cp "$CONF_DIR/kafka-pom.xml" "$KAFKA_HOME/pom.xml"
    if ! (cd "$KAFKA_HOME" && mvn -B -q -Dstyle.color=never -f "$KAFKA_HOME/pom.xml" \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp") 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >>"$log"; then
        tail -n 30 "$log" >&2
        die "maven could not fetch the Kafka jars (log: $log)"
    fi
    rm -rf "$KAFKA_HOME/target"
    why=$(verify_kafka_lib "$tmp") || die "the fetched Kafka jars in $tmp are not usable: $why"
    echo "$want" >"$tmp/.complete"
    rm -rf "$KAFKA_LIB"
    mv "$tmp" "$KAFKA_LIB"
    say "Kafka jars ready: $(find "$KAFKA_LIB" -name '*.jar' | wc -l) jars, $(du -sh "$KAFKA_LIB" | cut -f1)"
}

cmd_install() {
    ensure_state_dir
    install_packages
    check_java
    install_kafka_jars
}

# ---------------------------------------------------------------------------------------------
# up

ensure_state_dir() {
    mkdir -p "$RUN_DIR" "$LOG_DIR"
    [[ -f $MARKER ]] || echo "state of steamprice scripts/stack.sh; safe to delete with: scripts/stack.sh purge" >"$MARKER"
}

# Fails (with a message per port) when a port of a service that is not running is taken.
check_ports_free() {
    local svc p bad=0
    for svc in "$@"; do
        for p in $(service_ports "$svc"); do
            if port_open "$p"; then
                echo "stack: ERROR: port 127.0.0.1:$p (for $svc) is taken by something that is not ours: $(port_owner "$p")" >&2
                bad=1
            fi
        done
    done
    ((bad == 0)) || die "free the port(s) above, then run up again (a Debian mariadb/prometheus service started by the system? stop it, e.g. service mariadb stop)"
}

new_cluster_id() {
    # A Kafka Uuid: 16 random bytes as url-safe base64 without padding; not starting with '-'.
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)
        [[ $id != -* && ${#id} == 22 ]] && { echo "$id"; return; }
    done
}

start_kafka() {
    mkdir -p "$KAFKA_DATA"
    sed "s|@LOG_DIR@|$KAFKA_DATA|" "$CONF_DIR/server.properties.in" >"$KAFKA_STATE/server.properties"
    cp "$CONF_DIR/log4j2.properties" "$KAFKA_STATE/log4j2.properties"
    if [[ ! -f $KAFKA_DATA/meta.properties ]]; then
        [[ -s $KAFKA_STATE/cluster.id ]] || new_cluster_id >"$KAFKA_STATE/cluster.id"
        if ! java -Dlog4j2.configurationFile="$KAFKA_STATE/log4j2.properties" -cp "$KAFKA_LIB/*" \
            kafka.tools.StorageTool format -t "$(cat "$KAFKA_STATE/cluster.id")" \
            -c "$KAFKA_STATE/server.properties" --ignore-formatted >>"$(log_file kafka)" 2>&1; then
            log_tail kafka
            die "kafka: formatting the storage in $KAFKA_DATA failed"
        fi
    fi
    spawn kafka java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_STATE/log4j2.properties" \
        -Dkafka.logs.dir="$LOG_DIR" \
        -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_STATE/server.properties"
}

start_mariadb() {
    local log
    log=$(log_file mariadb)
    mkdir -p "$MARIADB_DATA"
    if [[ ! -d $MARIADB_DATA/mysql ]]; then
        say "mariadb: initialising $MARIADB_DATA"
        if ! mariadb-install-db --no-defaults --datadir="$MARIADB_DATA" --user="$(id -un)" \
            --skip-test-db --skip-name-resolve >>"$log" 2>&1; then
            log_tail mariadb
            die "mariadb: mariadb-install-db failed"
        fi
    fi
    # --no-defaults: nothing from /etc/mysql (its socket, datadir, pid file are the system's).
    spawn mariadb mariadbd --no-defaults \
        --datadir="$MARIADB_DATA" --socket="$MARIADB_SOCK" --pid-file="$(pid_file mariadb)" \
        --port="$MARIADB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
        --user="$(id -un)" --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
        --skip-log-bin
}

start_prometheus() {
    [[ -f $PROMETHEUS_CONFIG ]] || die "prometheus: config $PROMETHEUS_CONFIG not found"
    mkdir -p "$PROMETHEUS_DATA"
    spawn prometheus prometheus --config.file="$PROMETHEUS_CONFIG" \
        --storage.tsdb.path="$PROMETHEUS_DATA" \
        --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" --web.enable-lifecycle
}

# Kafka answers a Metadata request (v4, plain encoding) and lists a broker.
kafka_answers() {
    port_open "$KAFKA_PORT" || return 1
    command -v python3 >/dev/null 2>&1 || return 0 # TCP connect is all we can check
    timeout 10 python3 - "$KAFKA_PORT" <<'PY' >/dev/null 2>&1
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
cid = b"stack-probe"
# header v1: api_key=3 (Metadata), version 4, correlation id, client id; body: all topics (null), no auto-create
req = struct.pack(">hhih", 3, 4, 7, len(cid)) + cid + struct.pack(">ib", -1, 0)
s.sendall(struct.pack(">i", len(req)) + req)
def read(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            sys.exit(2)
        b += c
    return b
body = read(struct.unpack(">i", read(4))[0])
corr, _throttle, nbrokers = struct.unpack(">iii", body[:12])
sys.exit(0 if corr == 7 and nbrokers >= 1 else 3)
PY
}

mariadb_answers() {
    mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$MARIADB_PORT" -uroot \
        --connect-timeout=3 -e 'SELECT 1' >/dev/null 2>&1
}

# root may log in over TCP from 127.0.0.1 with an empty password (what the app uses);
# root@localhost keeps unix_socket too. Done over our socket as the OS user root.
mariadb_grant_root() {
    mariadb --no-defaults --socket="$MARIADB_SOCK" -uroot <<'SQL'
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
ALTER USER 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('');
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket;
FLUSH PRIVILEGES;
SQL
}

# The server answers on our socket (TCP is checked by mariadb_answers: a bare TCP probe would
# only fill the log with "Aborted connection" warnings).
mariadb_up() {
    mariadb-admin --no-defaults --socket="$MARIADB_SOCK" -uroot --connect-timeout=2 ping >/dev/null 2>&1
}

prometheus_answers() {
    timeout 3 bash -c '
        exec 3<>/dev/tcp/127.0.0.1/'"$PROMETHEUS_PORT"' || exit 1
        printf "GET /-/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3
        read -r status <&3
        [[ $status == *" 200 "* ]]' 2>/dev/null
}

# wait_for NAME TIMEOUT CHECK: until CHECK succeeds; fail fast if the process died.
wait_for() {
    local name=$1 limit=$2 check=$3 start=$SECONDS
    while :; do
        if ! service_pid "$name" >/dev/null; then
            echo "stack: ERROR: $name exited while starting" >&2
            log_tail "$name" 40
            return 1
        fi
        if "$check"; then
            return 0
        fi
        if ((SECONDS - start >= limit)); then
            echo "stack: ERROR: $name did not come up within ${limit}s (pid $(service_pid "$name"))" >&2
            log_tail "$name" 40
            return 1
        fi
        sleep 0.5
    done
}

cmd_up() {
    local t0=$SECONDS
    cmd_install
    ensure_state_dir
    local to_start=() svc
    for svc in "${SERVICES[@]}"; do
        service_pid "$svc" >/dev/null || to_start+=("$svc")
    done
    ((${#to_start[@]} == 0)) || check_ports_free "${to_start[@]}"

    local started=" ${to_start[*]} "
    # All start in parallel (Kafka, the slowest, early), then we wait for each.
    if [[ $started == *" prometheus "* ]]; then start_prometheus; fi
    if [[ $started == *" kafka "* ]]; then start_kafka; fi
    if [[ $started == *" mariadb "* ]]; then start_mariadb; fi

    local failed=()
    wait_for kafka "$KAFKA_TIMEOUT" kafka_answers || failed+=(kafka)
    if wait_for mariadb "$MARIADB_TIMEOUT" mariadb_up; then
        if ! mariadb_answers; then
            mariadb_grant_root >>"$(log_file mariadb)" 2>&1 || true
            if ! mariadb_answers; then
                echo "stack: ERROR: mariadb runs, but logging in as root with an empty password over TCP (127.0.0.1:$MARIADB_PORT) fails" >&2
                log_tail mariadb
                failed+=(mariadb)
            fi
        fi
    else
        failed+=(mariadb)
    fi
    wait_for prometheus "$PROMETHEUS_TIMEOUT" prometheus_answers || failed+=(prometheus)

    if ((${#failed[@]})); then
        die "did not come up: ${failed[*]} (the others keep running; scripts/stack.sh down stops them)"
    fi
    for svc in "${SERVICES[@]}"; do
        local how="already running"
        [[ $started == *" $svc "* ]] && how="started"
        printf 'stack: %-10s %-15s pid %-7s %-22s log %s\n' "$svc" "$how" "$(service_pid "$svc")" \
            "$(service_addr "$svc")" "$(log_file "$svc")"
    done
    say "up in $((SECONDS - t0))s; state in $STACK_DIR"
}

service_addr() {
    case $1 in
        kafka) echo "127.0.0.1:$KAFKA_PORT" ;;
        mariadb) echo "127.0.0.1:$MARIADB_PORT" ;;
        prometheus) echo "http://127.0.0.1:$PROMETHEUS_PORT" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# down / status

cmd_down() {
    local purge=0 a
    for a in "$@"; do
        case $a in
            --purge) purge=1 ;;
            *) die "unknown option for down: $a" ;;
        esac
    done
    local svc pid pids=() names=()
    for svc in prometheus mariadb kafka; do
        if pid=$(service_pid "$svc"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            names+=("$svc")
        else
            rm -f "$(pid_file "$svc")"
        fi
    done
    local i start=$SECONDS
    for i in "${!pids[@]}"; do
        svc=${names[$i]}
        pid=${pids[$i]}
        while service_pid "$svc" >/dev/null && ((SECONDS - start < STOP_TIMEOUT)); do
            sleep 0.2
        done
        if service_pid "$svc" >/dev/null; then
            warn "$svc (pid $pid) did not stop within ${STOP_TIMEOUT}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
        rm -f "$(pid_file "$svc")"
        say "$svc stopped (pid $pid)"
    done
    ((${#pids[@]})) || say "nothing was running"
    if ((purge)); then
        purge_state
    fi
}

purge_state() {
    [[ -e $STACK_DIR ]] || { say "nothing to purge ($STACK_DIR does not exist)"; return 0; }
    [[ -f $MARKER ]] || die "$STACK_DIR has no $(basename "$MARKER"): not deleting a dir this script did not create"
    rm -rf -- "$STACK_DIR"
    say "deleted $STACK_DIR"
}

cmd_status() {
    local svc pid rc=0 ports p note
    for svc in "${SERVICES[@]}"; do
        if pid=$(service_pid "$svc"); then
            printf '%-10s running  pid %-7s %s\n' "$svc" "$pid" "$(service_addr "$svc")"
        else
            rc=3
            note=""
            ports=$(service_ports "$svc")
            for p in $ports; do
                port_open "$p" && note+=" (port $p taken by something else: $(port_owner "$p"))"
            done
            printf '%-10s stopped  pid %-7s %s%s\n' "$svc" "-" "$(service_addr "$svc")" "$note"
        fi
    done
    return $rc
}

usage() {
    sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

# One up/down at a time per state dir.
# For down/purge the dir must already exist (and is not marked as ours by locking it).
lock_state() {
    if [[ ${1:-} == create ]]; then ensure_state_dir; fi
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$STACK_DIR/.lock"
        flock -w 300 9 || die "another scripts/stack.sh holds $STACK_DIR/.lock"
    fi
}

main() {
    local cmd=${1:-}
    shift || true
    case $cmd in
        up) lock_state create ;;
        down | purge) if [[ -f $MARKER ]]; then lock_state; fi ;;
    esac
    case $cmd in
        install) cmd_install ;;
        up) cmd_up ;;
        down) cmd_down "$@" ;;
        purge) cmd_down --purge ;;
        status) cmd_status ;;
        -h | --help | help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

main "$@"
