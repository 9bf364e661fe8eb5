# Shared by the scripts: install what a fresh Debian machine is missing, and start and stop
# the processes the benches run.

# System packages the build and the tests need: a C toolchain, libclang for RocksDB's
# bindings, openssl to verify signatures in the tests, and setpriv (util-linux) and
# groupadd/gpasswd (passwd) to run clients with chosen Unix groups, and curl to read the
# metrics endpoints.
LOCKBOX_PACKAGES=(build-essential pkg-config clang libclang-dev openssl ca-certificates util-linux passwd curl)

ensure_packages() {
    local missing=()
    for p in "${LOCKBOX_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing: ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -q
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
    fi
    if ! command -v cargo >/dev/null; then
        echo "cargo is missing: install Rust 1.85 or newer with rustup (https://rustup.rs) and rerun" >&2
        exit 1
    fi
}

# wait_for SOCKET: waits up to 10 s for a server to create its socket.
wait_for() {
    for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done
    echo "$1 did not appear" >&2
    exit 1
}

# stop_named DIR NAME: stops the process whose pid is in DIR/NAME.pid, waits until it has
# exited, and removes its pid file and its socket DIR/NAME.sock.
stop_named() {
    local pid
    pid="$(cat "$1/$2.pid")"
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    rm -f "$1/$2.pid" "$1/$2.sock"
}
