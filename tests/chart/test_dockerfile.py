"""The Dockerfile's invariants, read from the file (no Docker engine here,
so the image itself is not built by the tests): multi-stage, the documented
build command, a final stage holding only the binary, non-root, the ports
and command the chart relies on, and a build context with everything the
build reads."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from chartkit import CHART_DIR, REPO, RELEASE, container

DOCKERFILE = REPO / "Dockerfile"
BUILD_COMMAND = "cargo build --release --locked --bin gatehouse"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs and stages: each instruction as (KEYWORD, arguments),
    with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        lines.append(current + stripped)
        current = ""
    assert not current, "dangling line continuation"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            assert len(words) in (1, 3), f"unexpected FROM: {args}"
            stages.append(Stage(words[0], name))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            key, _, default = args.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse(DOCKERFILE.read_text())


def test_multi_stage_build_then_a_small_runtime(dockerfile):
    args, stages = dockerfile
    assert len(stages) >= 2
    build, final = stages[0], stages[-1]
    assert build.name == "build"
    assert build.base.startswith("rust:")
    assert final.base.startswith(("gcr.io/distroless/static", "scratch")), final.base
    for stage in stages:
        base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), stage.base)
        assert ":" in base and not base.endswith(":latest"), f"unpinned base image {stage.base}"


def test_rust_image_is_new_enough_for_the_crate(dockerfile):
    args, _ = dockerfile
    manifest = (REPO / "Cargo.toml").read_text()
    minimum = re.search(r'^rust-version = "(\d+)\.(\d+)"', manifest, re.M)
    have = re.fullmatch(r"(\d+)\.(\d+)", args["RUST_VERSION"])
    assert minimum and have
    assert tuple(map(int, have.groups())) >= tuple(map(int, minimum.groups()))


def test_build_stage_runs_the_documented_build_command(dockerfile):
    _, stages = dockerfile
    page = (REPO / "docs" / "integrations" / "helm-kubernetes.md").read_text()
    assert BUILD_COMMAND in page, "docs/integrations/helm-kubernetes.md documents the build command"
    runs = " ".join(stages[0].all("RUN"))
    assert BUILD_COMMAND in runs
    # Static: the musl target, and a check that nothing is dynamically linked.
    assert "linux-musl" in runs and "NEEDED" in runs


def test_final_stage_holds_only_the_binary_and_runs_as_non_root(dockerfile):
    _, stages = dockerfile
    final = stages[-1]
    copies = final.all("COPY")
    assert copies == ["--from=build /gatehouse /gatehouse"]
    assert not final.all("RUN") and not final.all("ADD")
    (user,) = final.all("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) == 65532
    # The chart's pod securityContext runs as the same user.
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)


def test_ports_entrypoint_and_command_match_the_chart(dockerfile, chart):
    _, stages = dockerfile
    final = stages[-1]
    (expose,) = final.all("EXPOSE")
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert sorted(int(p) for p in expose.split()) == sorted(values["ports"].values())
    (entrypoint,) = final.all("ENTRYPOINT")
    (cmd,) = final.all("CMD")
    assert json.loads(entrypoint) == ["/gatehouse"]
    command = json.loads(cmd)
    assert command == ["serve", "--config", "/etc/gatehouse/config.yaml"]
    # The chart spells out the same command, and mounts the config there.
    ctr = container(chart.render().get("Deployment", RELEASE), "gatehouse")
    assert ctr["args"] == command


def copied_sources(stage: Stage) -> list[str]:
    sources = []
    for args in stage.all("COPY"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        sources += words[:-1]
    return sources


def dockerignore_allows(path: str) -> bool:
    """Whether the allow-list .dockerignore (`*`, then `!name` lines) lets
    top-level entry `path` into the build context."""
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.strip().startswith("#")]
    assert lines[0] == "*", "the .dockerignore is an allow-list"
    top = path.split("/")[0]
    return any(line == f"!{top}" or line == f"!{top}/" for line in lines[1:])


def test_build_context_has_everything_the_build_reads(dockerfile):
    _, stages = dockerfile
    sources = copied_sources(stages[0])
    for source in sources:
        assert (REPO / source).exists(), source
        assert dockerignore_allows(source), f"{source} is excluded by .dockerignore"
    copied = {s.rstrip("/") for s in sources}
    needed = {"Cargo.toml", "Cargo.lock", "build.rs", "proto", "src"}
    # Files compiled into the binary.
    for rust in (REPO / "src").rglob("*.rs"):
        for rel in re.findall(r'include_(?:str|bytes)!\("([^"]+)"\)', rust.read_text()):
            target = (rust.parent / rel).resolve().relative_to(REPO)
            needed.add(target.parts[0])
    # Bench targets Cargo.toml declares must exist for any cargo command.
    if "[[bench]]" in (REPO / "Cargo.toml").read_text():
        needed.add("benches")
    assert needed <= copied, f"not copied into the build: {sorted(needed - copied)}"
    for excluded in ("target", ".git", ".venv"):
        assert not dockerignore_allows(excluded)


def test_parser_reads_continuations_and_comments():
    args, stages = parse(
        "ARG V=1\nFROM a:${V} AS build\n# c\nRUN one \\\n  # inner\n  two\nFROM b:2\nUSER 1\n")
    assert args == {"V": "1"}
    assert [s.name for s in stages] == ["build", None]
    assert stages[0].all("RUN") == ["one two"]
    assert stages[1].all("USER") == ["1"]
