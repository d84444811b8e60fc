"""Reads a soak CSV (benches/soak/soak.py), decides pass or fail, and plots it.

    python benches/soak/analysis.py OUT/soak.csv [--png OUT/soak.png]

The criteria (all over the samples after the warm-up, the first 20% of the
run, except errors, which count over the whole run):

- RSS flat: the least-squares line through the post-warm-up RSS samples
  grows by at most 10% of the post-warm-up start over that span, and the
  last sample is at most 10% above the start ("start": the median of the
  first three post-warm-up samples, so one noisy sample does not decide),
  with a slack of at least 4 MiB: the allocator (mimalloc) takes memory in
  4 MiB steps, and one step is 10% of a ~40 MiB release process, so a
  60 s run could fail on a single step that a long run shows coming back;
- open fds flat: the same, with a slack of at least 3 descriptors (Envoy's
  connections to gatehouse come and go; 10% of ~20 is less than one
  connection's worth);
- threads bounded: the highest count in the second half of the
  post-warm-up samples is at most 2 above the highest in the first half,
  and never above 64;
- p99 stable: the median p99 of the last three windows is at most 3x the
  median p99 of the first three post-warm-up windows (that baseline
  floored at 1 ms: sub-millisecond p99s are timer noise). The limit grows
  with the machine: it is multiplied by how much the p99 of the control
  requests (the same Envoy and upstream, on a route that does not call
  gatehouse) grew over the same windows, when that grew. A shared VM
  whose neighbours take the CPU slows every request; only a p99 that
  grows beyond the control's is gatehouse's own. A CSV without control
  figures (runs before this column) is judged without that allowance;
- no errors: no valid request answered other than 200, no invalid one
  answered 200 (or 5xx, or anything but 401/403), no transport failure,
  every reload applied, every key rotation picked up.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

WARMUP_FRACTION = 0.2
FLAT_FRACTION = 0.10
FD_SLACK = 3
RSS_SLACK_KIB = 4096
THREAD_SLACK = 2
THREAD_MAX = 64
P99_RATIO = 3.0
P99_FLOOR_MS = 1.0

FIELDS = [
    "t", "rss_kib", "fds", "threads", "cpu_s", "requests", "rps", "p50_ms", "p99_ms", "max_ms",
    "errors", "error_classes", "reloads", "rotations", "events", "control_p99_ms",
]


def load(path: Path) -> list[dict]:
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            row: dict = dict(raw)
            for k in ("t", "cpu_s", "rps", "p50_ms", "p99_ms", "max_ms", "control_p99_ms"):
                value = raw.get(k)
                row[k] = float(value) if value not in (None, "", "nan") else float("nan")
            for k in ("rss_kib", "fds", "threads", "requests", "errors", "reloads", "rotations"):
                row[k] = int(raw[k])
            rows.append(row)
    return rows


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares line: (slope, intercept)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0, my
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return slope, my - slope * mx


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Verdict:
    checks: list[Check] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def summary(self) -> str:
        lines = [f"soak: {'PASS' if self.ok else 'FAIL'}"]
        lines += [f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}" for c in self.checks]
        f = self.figures
        lines.append(
            f"  requests {f['requests']} ({f['mean_rps']:.0f}/s), errors {f['errors']}, "
            f"reloads {f['reloads']}, key rotations {f['rotations']}")
        lines.append(
            f"  RSS {f['rss_start_mib']:.1f} -> {f['rss_end_mib']:.1f} MiB, fds {f['fds_start']} -> "
            f"{f['fds_end']}, threads {f['threads_start']} -> {f['threads_end']} (max {f['threads_max']}), "
            f"p50 {f['p50_first_ms']:.2f} -> {f['p50_last_ms']:.2f} ms, "
            f"p99 {f['p99_first_ms']:.2f} -> {f['p99_last_ms']:.2f} ms, "
            f"gatehouse CPU {f['cpu_s']:.1f} s")
        return "\n".join(lines)


def _flat(name: str, post: list[dict], key: str, slack: float) -> tuple[Check, dict]:
    xs = [r["t"] for r in post]
    ys = [float(r[key]) for r in post]
    start = statistics.median(ys[:3])
    slope, _ = _fit(xs, ys)
    span = xs[-1] - xs[0]
    growth = slope * span
    allowed = max(FLAT_FRACTION * start, slack)
    ok = growth <= allowed and ys[-1] - start <= allowed
    detail = (f"start {start:g}, end {ys[-1]:g}, fitted growth {growth:+.1f} over {span:.0f} s "
              f"({slope * 3600:+.0f}/h), allowed {allowed:.1f}")
    return Check(name, ok, detail), {"start": start, "end": ys[-1], "slope_per_h": slope * 3600}


def _control_growth(windows: list[dict]) -> float:
    """How much the control requests' p99 grew from the first three
    windows to the last three (at least 1: a machine that got quieter does
    not tighten the limit; 1 when the CSV has no control figures)."""
    first = [r["control_p99_ms"] for r in windows[:3] if r["control_p99_ms"] == r["control_p99_ms"]]
    last = [r["control_p99_ms"] for r in windows[-3:] if r["control_p99_ms"] == r["control_p99_ms"]]
    if not first or not last:
        return 1.0
    return max(1.0, statistics.median(last) / max(statistics.median(first), P99_FLOOR_MS))


def analyze(rows: list[dict], expected_reloads: int = 1, expected_rotations: int = 1) -> Verdict:
    v = Verdict()
    if len(rows) < 6:
        v.checks.append(Check("enough samples", False, f"{len(rows)} samples (need 6)"))
        v.figures = {}
        return v
    duration = rows[-1]["t"]
    post = [r for r in rows if r["t"] >= WARMUP_FRACTION * duration]
    if len(post) < 6:
        post = rows[-6:]

    rss_check, rss = _flat("RSS flat", post, "rss_kib", RSS_SLACK_KIB)
    fd_check, fds = _flat("open fds flat", post, "fds", FD_SLACK)
    v.checks += [rss_check, fd_check]

    half = len(post) // 2
    first_max = max(r["threads"] for r in post[:half])
    second_max = max(r["threads"] for r in post[half:])
    all_max = max(r["threads"] for r in rows)
    v.checks.append(Check(
        "threads bounded", second_max <= first_max + THREAD_SLACK and all_max <= THREAD_MAX,
        f"max {first_max} in the first half after warm-up, {second_max} in the second, "
        f"{all_max} overall (limit {THREAD_MAX})"))

    windows = [r for r in post if r["requests"] > 0 and r["p99_ms"] == r["p99_ms"]]
    first_p99 = statistics.median([r["p99_ms"] for r in windows[:3]])
    last_p99 = statistics.median([r["p99_ms"] for r in windows[-3:]])
    baseline = max(first_p99, P99_FLOOR_MS)
    machine = _control_growth(windows)
    limit = P99_RATIO * baseline * machine
    v.checks.append(Check(
        "p99 stable", last_p99 <= limit,
        f"first {first_p99:.2f} ms, last {last_p99:.2f} ms (limit {P99_RATIO:g} x {baseline:.2f} ms"
        + (f" x {machine:.2f}, the control's growth" if machine > 1.0 else "") + ")"))

    errors = sum(r["errors"] for r in rows)
    classes: dict[str, int] = {}
    for r in rows:
        for part in filter(None, r["error_classes"].split(";")):
            name, _, count = part.rpartition("=")
            classes[name] = classes.get(name, 0) + int(count)
    shown = ", ".join(f"{k} {n}" for k, n in sorted(classes.items(), key=lambda kv: -kv[1])[:8])
    v.checks.append(Check("no errors", errors == 0, f"{errors} errors" + (f" ({shown})" if shown else "")))

    reloads, rotations = rows[-1]["reloads"], rows[-1]["rotations"]
    v.checks.append(Check(
        "reloads and rotations happened",
        reloads >= expected_reloads and rotations >= expected_rotations,
        f"{reloads} config reloads (expected >= {expected_reloads}), {rotations} key rotations "
        f"(expected >= {expected_rotations})"))

    requests = sum(r["requests"] for r in rows)
    v.figures = {
        "duration_s": duration,
        "requests": requests,
        "mean_rps": requests / duration if duration else 0.0,
        "errors": errors,
        "error_classes": classes,
        "reloads": reloads,
        "rotations": rotations,
        "rss_start_mib": rss["start"] / 1024,
        "rss_end_mib": rss["end"] / 1024,
        "rss_first_mib": rows[0]["rss_kib"] / 1024,
        "rss_slope_mib_per_h": rss["slope_per_h"] / 1024,
        "fds_start": int(fds["start"]),
        "fds_end": int(fds["end"]),
        "fds_slope_per_h": fds["slope_per_h"],
        "threads_start": post[0]["threads"],
        "threads_end": rows[-1]["threads"],
        "threads_max": all_max,
        "p50_first_ms": statistics.median([r["p50_ms"] for r in windows[:3]]),
        "p50_last_ms": statistics.median([r["p50_ms"] for r in windows[-3:]]),
        "p99_first_ms": first_p99,
        "p99_last_ms": last_p99,
        "p99_max_ms": max(r["p99_ms"] for r in windows),
        "p99_limit_ms": limit,
        "control_growth": machine,
        "cpu_s": rows[-1]["cpu_s"],
    }
    return v


def plot(rows: list[dict], png: Path, title: str = "gatehouse soak") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = rows[-1]["t"] >= 600
    scale = 60.0 if minutes else 1.0
    t = [r["t"] / scale for r in rows]
    fig, axes = plt.subplots(4, 1, figsize=(9, 9), sharex=True)
    warm = WARMUP_FRACTION * rows[-1]["t"] / scale
    for ax in axes:
        ax.axvspan(0, warm, color="0.92", lw=0)
        for r, x in zip(rows, t):
            if "reload" in r["events"]:
                ax.axvline(x, color="tab:gray", ls=":", lw=0.7)
            if "rotation" in r["events"]:
                ax.axvline(x, color="tab:red", ls="--", lw=0.8)
        ax.grid(alpha=0.3)
    axes[0].plot(t, [r["rss_kib"] / 1024 for r in rows], color="tab:blue")
    axes[0].set_ylabel("RSS (MiB)")
    axes[0].set_ylim(0, max(r["rss_kib"] for r in rows) / 1024 * 1.15)
    axes[1].plot(t, [r["fds"] for r in rows], label="open fds", color="tab:green")
    axes[1].plot(t, [r["threads"] for r in rows], label="threads", color="tab:purple")
    axes[1].set_ylim(0, max(max(r["fds"], r["threads"]) for r in rows) * 1.15)
    axes[1].legend(loc="center right", fontsize=8)
    axes[2].plot(t, [r["p50_ms"] for r in rows], label="p50", color="tab:blue")
    axes[2].plot(t, [r["p99_ms"] for r in rows], label="p99", color="tab:orange")
    if any(r["control_p99_ms"] == r["control_p99_ms"] for r in rows):
        axes[2].plot(t, [r["control_p99_ms"] for r in rows], label="control p99 (no gatehouse)",
                     color="tab:gray", ls="--")
    axes[2].set_ylabel("latency (ms)")
    axes[2].set_ylim(bottom=0)
    axes[2].legend(loc="upper right", fontsize=8)
    axes[3].plot(t, [r["rps"] for r in rows], label="req/s", color="tab:gray")
    axes[3].set_ylabel("req/s")
    axes[3].set_ylim(bottom=0)
    err = axes[3].twinx()
    err.bar(t, [r["errors"] for r in rows], color="tab:red", width=(t[1] - t[0]) * 0.8 if len(t) > 1 else 1)
    err.set_ylabel("errors", color="tab:red")
    err.set_ylim(bottom=0, top=max(1, max(r["errors"] for r in rows)) * 1.2)
    axes[3].set_xlabel("minutes" if minutes else "seconds")
    axes[0].set_title(f"{title} (grey: warm-up; dotted: config reload; dashed red: JWKS key rotation)",
                      fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=72)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", type=Path)
    ap.add_argument("--png", type=Path)
    args = ap.parse_args()
    rows = load(args.csv)
    verdict = analyze(rows)
    print(verdict.summary())
    if args.png:
        plot(rows, args.png)
        print(f"plot: {args.png}")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
