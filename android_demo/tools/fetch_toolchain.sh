#!/usr/bin/env bash
# Fetch the pinned toolchain that android_demo/tools/check.sh needs, into .tools/android/ (git-ignored):
#   kotlinc            npm package `kotlin-compiler` (the full kotlinc-jvm distribution), integrity-checked
#   android.jar (23)   Debian bullseye `libandroid-23-java`
#   JUnit 4, Hamcrest, org.json (Android's)   Debian bookworm `junit4`, `libhamcrest-java`, `libandroid-json-java`
# The .deb files come through apt-get with a private state (lists, cache, sources) under .tools/: the system's
# apt configuration and package database are never touched. Idempotent: with everything present it does nothing.
# Needs: java (JDK 17+), npm, apt-get, dpkg-deb. Set SSDKD_TOOLS_DIR to use another cache directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=toolchain.env
source "$ROOT/android_demo/tools/toolchain.env"

die() {
    echo "fetch_toolchain.sh: $*" >&2
    exit 1
}

all_present() {
    [[ -x "$KOTLINC" && -s "$ANDROID_JAR" && -s "$JUNIT_JAR" && -s "$HAMCREST_JAR" && -s "$JSON_JAR" ]]
}

all_present && exit 0

for tool in java npm apt-get dpkg-deb flock; do
    command -v "$tool" >/dev/null || die "'$tool' is not on PATH (needed to fetch the Android check toolchain)"
done

mkdir -p "$TOOLS_DIR"
exec 9>"$TOOLS_DIR/.lock"
flock 9 # another fetch may be running (parallel test runs): wait for it, then re-check
all_present && exit 0

WORK="$(mktemp -d "$TOOLS_DIR/fetch.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

fetch_kotlinc() {
    [[ -x "$KOTLINC" ]] && return 0
    local tgz want got
    (cd "$WORK" && npm pack "kotlin-compiler@$KOTLIN_VERSION" --silent >/dev/null) ||
        die "npm could not download kotlin-compiler@$KOTLIN_VERSION (is registry.npmjs.org reachable?)"
    tgz="$WORK/kotlin-compiler-$KOTLIN_VERSION.tgz"
    [[ -s "$tgz" ]] || die "npm pack did not produce $tgz"
    want="$(echo "${KOTLIN_INTEGRITY#sha512-}" | base64 -d | od -An -tx1 -v | tr -d ' \n')"
    got="$(sha512sum "$tgz" | cut -d' ' -f1)"
    [[ "$want" == "$got" ]] || die "kotlin-compiler-$KOTLIN_VERSION.tgz: sha512 mismatch (expected $want, got $got)"
    mkdir "$WORK/kotlin"
    tar -xzf "$tgz" -C "$WORK/kotlin"
    [[ -x "$WORK/kotlin/package/bin/kotlinc" ]] || die "kotlin-compiler-$KOTLIN_VERSION has no bin/kotlinc"
    rm -rf "$KOTLIN_HOME"
    mv "$WORK/kotlin/package" "$KOTLIN_HOME"
}

fetch_debs() {
    [[ -s "$ANDROID_JAR" && -s "$JUNIT_JAR" && -s "$HAMCREST_JAR" && -s "$JSON_JAR" ]] && return 0
    local apt="$WORK/apt" key=/usr/share/keyrings/debian-archive-keyring.gpg
    [[ -s "$key" ]] || die "$key is missing (package debian-archive-keyring)"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/sources.list.d" "$apt/preferences.d" "$WORK/debs"
    : >"$apt/status"
    cat >"$apt/sources.list" <<EOF
deb [signed-by=$key] http://deb.debian.org/debian bullseye main
deb [signed-by=$key] http://deb.debian.org/debian bookworm main
EOF
    local opts=(
        -qq
        -o "Dir::State::Lists=$apt/lists"
        -o "Dir::State::status=$apt/status"
        -o "Dir::Etc::SourceList=$apt/sources.list"
        -o "Dir::Etc::SourceParts=$apt/sources.list.d"
        -o "Dir::Etc::Preferences=$apt/preferences"
        -o "Dir::Etc::PreferencesParts=$apt/preferences.d"
        -o "Dir::Cache=$apt/cache"
    )
    # as root, apt drops to the _apt user for downloads, which cannot write into our private directories
    [[ "$(id -u)" == 0 ]] && opts+=(-o "APT::Sandbox::User=root")
    apt-get "${opts[@]}" update >"$WORK/apt.log" 2>&1 ||
        { cat "$WORK/apt.log" >&2; die "apt-get update (private state) failed: is deb.debian.org reachable?"; }
    (cd "$WORK/debs" && apt-get "${opts[@]}" download "$ANDROID_JAR_PKG" "$JUNIT_PKG" "$HAMCREST_PKG" "$JSON_PKG") \
        >"$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log" >&2; die "apt-get download of the pinned .deb files failed"; }
    local deb
    for deb in "$WORK"/debs/*.deb; do
        dpkg-deb -x "$deb" "$WORK/root"
    done
    local java="$WORK/root/usr/share/java"
    install -D -m 644 "$java/com.android.android-23.jar" "$ANDROID_JAR"
    install -D -m 644 "$java/junit4.jar" "$JUNIT_JAR"
    install -D -m 644 "$java/hamcrest-2.2.jar" "$HAMCREST_JAR"
    install -D -m 644 "$java/com.android.json-android-10.0.0.jar" "$JSON_JAR"
}

fetch_kotlinc
fetch_debs
all_present || die "toolchain still incomplete under $TOOLS_DIR after fetching"
