"""The Android project builds from the command line: the standard Gradle wrapper files are there, the jar is the
official Gradle 9.4.1 wrapper (the checksum Gradle publishes), and ``gradlew`` starts its bootstrap.

The bootstrap is run offline against a copy whose distribution URL points at a closed local port: it must get as far
as downloading (reading the properties, the jar on its class path) and fail for the network, never for a missing class.
Under CI (``CI`` = true/1/yes) a missing ``java`` fails instead of skipping.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import IN_CI, REPO

DEMO = REPO / "android_demo"
WRAPPER = DEMO / "gradle" / "wrapper"
JAR = WRAPPER / "gradle-wrapper.jar"
PROPERTIES = WRAPPER / "gradle-wrapper.properties"
GRADLE_VERSION = "9.4.1"
# Gradle's published SHA-256 of the 9.4.1 wrapper jar (also in gradle/actions' wrapper-checksums.json)
JAR_SHA256 = "55243ef57851f12b070ad14f7f5bb8302daceeebc5bce5ece5fa6edb23e1145c"
MAIN_CLASS = "org.gradle.wrapper.GradleWrapperMain"


def _properties(path: Path = PROPERTIES) -> dict[str, str]:
    lines = [ln.split("=", 1) for ln in path.read_text().splitlines() if "=" in ln and not ln.startswith("#")]
    return {k.strip(): v.strip().replace("\\:", ":") for k, v in lines}


def test_wrapper_files_are_present_and_official():
    assert os.access(DEMO / "gradlew", os.X_OK), "android_demo/gradlew must be executable"
    assert (DEMO / "gradlew").read_bytes().startswith(b"#!/bin/sh\n") and b"\r\n" not in (DEMO / "gradlew").read_bytes()
    assert b"\r\n" in (DEMO / "gradlew.bat").read_bytes()  # cmd.exe wants CRLF
    assert b"gradle-wrapper.jar" in (DEMO / "gradlew.bat").read_bytes()
    data = JAR.read_bytes()
    assert hashlib.sha256(data).hexdigest() == JAR_SHA256
    with zipfile.ZipFile(JAR) as zf:
        assert zf.testzip() is None
        assert f"{MAIN_CLASS.replace('.', '/')}.class" in zf.namelist()
        assert f"Main-Class: {MAIN_CLASS}" in zf.read("META-INF/MANIFEST.MF").decode()
    props = _properties()
    assert props["distributionUrl"] == f"https://services.gradle.org/distributions/gradle-{GRADLE_VERSION}-bin.zip"
    assert len(props["distributionSha256Sum"]) == 64
    readme = (DEMO / "README.md").read_text()
    assert JAR_SHA256 in readme and props["distributionSha256Sum"] in readme  # provenance is documented


@pytest.mark.slow
def test_gradlew_starts_the_bootstrap(tmp_path):
    if shutil.which("java") is None:
        msg = "java is not on PATH (gradlew needs a JDK)"
        if IN_CI:
            pytest.fail(f"{msg} (CI: this must not be skipped)")
        pytest.skip(msg)
    project = tmp_path / "project"
    (project / "gradle" / "wrapper").mkdir(parents=True)
    shutil.copy2(DEMO / "gradlew", project / "gradlew")
    shutil.copy2(JAR, project / "gradle" / "wrapper" / JAR.name)
    # port 9 (discard) on loopback: refused at once, so nothing is downloaded even where the internet is reachable
    url = f"http\\://127.0.0.1\\:9/gradle-{GRADLE_VERSION}-bin.zip"
    text = PROPERTIES.read_text().replace(
        f"https\\://services.gradle.org/distributions/gradle-{GRADLE_VERSION}-bin.zip", url)
    assert url in text
    (project / "gradle" / "wrapper" / PROPERTIES.name).write_text(text)
    env = {**os.environ, "GRADLE_USER_HOME": str(tmp_path / "gradle-home"), "GRADLE_OPTS": "", "JAVA_OPTS": ""}
    r = subprocess.run(["sh", "gradlew", "--version"], cwd=project, env=env, capture_output=True, text=True,
                       timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert f"Downloading http://127.0.0.1:9/gradle-{GRADLE_VERSION}-bin.zip" in out, out
    assert "java.net.ConnectException" in out, out
    for missing in ("ClassNotFoundException", "NoClassDefFoundError", "Could not find or load main class"):
        assert missing not in out, out
