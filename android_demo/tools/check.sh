#!/usr/bin/env bash
# What CI runs for the Android demo (Gradle cannot resolve Google's Maven here; see android_demo/README.md):
#   (a) kotlinc-compiles the plain-Kotlin core (app/src/main/java/org/ssdkd/demo/core, no Android imports) with the
#       unit tests and runs them with JUnit 4 on the JVM against the golden vectors written by export/golden.py;
#   (b) compiles the whole app (all of app/src/main/java) against the real android.jar (API 23) plus the
#       org.tensorflow.lite stub in tools/stubs/, with warnings as errors.
# Quiet on success. Exit status: 0 passed; 1 failed (or a tool is missing and CI is true/1/yes); 3 a tool is missing
# outside CI (the check did not run: run android_demo/tools/fetch_toolchain.sh first).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=toolchain.env
source "$ROOT/android_demo/tools/toolchain.env"
APP="$ROOT/android_demo/app"
CORE="$APP/src/main/java/org/ssdkd/demo/core"
STUBS="$ROOT/android_demo/tools/stubs"
OUT="${SSDKD_ANDROID_BUILD_DIR:-$ROOT/android_demo/build/check}"

missing=()
command -v java >/dev/null || missing+=("java (a JDK 17+ on PATH)")
for f in "$KOTLINC" "$ANDROID_JAR" "$JUNIT_JAR" "$HAMCREST_JAR" "$JSON_JAR"; do
    [[ -e "$f" ]] || missing+=("${f#"$ROOT"/}")
done
if ((${#missing[@]})); then
    msg="android_demo/tools/check.sh: missing toolchain: ${missing[*]}. Run android_demo/tools/fetch_toolchain.sh"
    ci="${CI:-}"
    if [[ "${ci,,}" == "true" || "$ci" == "1" || "${ci,,}" == "yes" ]]; then
        echo "error: $msg (CI=true: a missing tool is a failure)" >&2
        exit 1
    fi
    echo "skipped: $msg" >&2
    exit 3
fi

fail() {
    echo "android_demo/tools/check.sh: $1" >&2
    [[ -n "${2:-}" && -s "$2" ]] && cat "$2" >&2
    exit 1
}

# The core must stay free of Android and TFLite so that it runs (and is tested) on a plain JVM.
if offenders="$(grep -rlE '^import (android|androidx|org\.tensorflow)\.' "$CORE")"; then
    fail "the core must not import Android or TFLite classes: $offenders"
fi

rm -rf "$OUT"
mkdir -p "$OUT/jvm" "$OUT/android"
export JAVA_OPTS="${JAVA_OPTS:--Xmx1g -XX:+UseSerialGC -XX:TieredStopAtLevel=1}"

# (a) core + unit tests on the JVM
mapfile -t core_src < <(find "$CORE" -name '*.kt' | sort)
mapfile -t test_src < <(find "$APP/src/test/java" -name '*.kt' | sort)
test_cp="$JUNIT_JAR:$HAMCREST_JAR:$JSON_JAR"
"$KOTLINC" -Werror -jvm-target 17 -cp "$test_cp" -d "$OUT/jvm" "${core_src[@]}" "${test_src[@]}" \
    >"$OUT/kotlinc-jvm.log" 2>&1 || fail "kotlinc failed on the core + unit tests:" "$OUT/kotlinc-jvm.log"
mapfile -t tests < <(cd "$OUT/jvm" && find . -name '*Test.class' ! -name '*$*' | sed 's|^\./||; s|\.class$||; s|/|.|g' | sort)
((${#tests[@]})) || fail "no unit test classes were compiled"
java -cp "$OUT/jvm:$KOTLIN_HOME/lib/kotlin-stdlib.jar:$test_cp:$APP/src/test/resources" \
    org.junit.runner.JUnitCore "${tests[@]}" >"$OUT/junit.log" 2>&1 ||
    fail "unit tests failed (JUnit 4, golden vectors from export/golden.py):" "$OUT/junit.log"

# (b) the whole app against android.jar (API 23) + the TFLite stub; -no-jdk: only what Android 23 provides
mapfile -t app_src < <(find "$APP/src/main/java" -name '*.kt' | sort)
mapfile -t stub_src < <(find "$STUBS" -name '*.java' | sort)
"$KOTLINC" -Werror -no-jdk -jvm-target 1.8 -cp "$ANDROID_JAR" -d "$OUT/android" "${app_src[@]}" "${stub_src[@]}" \
    >"$OUT/kotlinc-android.log" 2>&1 ||
    fail "kotlinc failed on the app (android.jar API 23 + tools/stubs, warnings are errors):" "$OUT/kotlinc-android.log"
