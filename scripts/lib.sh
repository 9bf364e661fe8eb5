# Shared by scripts/up and scripts/test: install what a fresh Debian machine is missing.

# System packages the build and the tests need: a C toolchain, libclang for RocksDB's
# bindings, openssl to verify signatures in the tests.
LOCKBOX_PACKAGES=(build-essential pkg-config clang libclang-dev openssl ca-certificates)

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
