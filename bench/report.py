"""The results as tables: plain text for the terminal, Markdown for ``docs/``."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.timing import Summary, Variant, paired_ratios, summarize


@dataclass(frozen=True)
class Line:
    cells: tuple[str, ...]


@dataclass(frozen=True)
class Section:
    title: str
    header: tuple[str, ...]
    lines: list[Line]


@dataclass(frozen=True)
class Target:
    """A ratio or count and its goal; ``goal`` None marks a figure reported without a target."""

    name: str
    value: float
    goal: tuple[str, float] | None = None
    per_round: Summary | None = None
    digits: int = 2  # decimals shown (0 for counts)

    @property
    def met(self) -> bool | None:
        if self.goal is None:
            return None
        op, limit = self.goal
        checks: dict[str, Callable[[float, float], bool]] = {
            "≤": lambda a, b: a <= b,
            "<": lambda a, b: a < b,
            "≥": lambda a, b: a >= b,
            "=": lambda a, b: a == b,
        }
        return checks[op](self.value, limit)

    @property
    def goal_text(self) -> str:
        return "—" if self.goal is None else f"{self.goal[0]} {self.goal[1]:g}"

    @property
    def per_round_text(self) -> str:
        stat = self.per_round
        return "—" if stat is None else f"{stat.median:.2f} ({stat.p25:.2f}-{stat.p75:.2f})"

    @property
    def value_text(self) -> str:
        return f"{self.value:.{self.digits}f}"

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT MET", None: "(no target)"}[self.met]


@dataclass(frozen=True)
class Report:
    environment: list[tuple[str, str]]
    sections: list[Section]
    targets: list[Target]


TIME_HEADER = ("Variant", "µs/op (median)", "p25-p75", "x first row")


def timing_section(
    title: str, variants: Sequence[Variant], samples: dict[str, list[float]]
) -> Section:
    """One row per variant: median µs/op, interquartile range, ratio to the first variant."""
    stats = {v.key: summarize(samples[v.key]) for v in variants}
    base = stats[variants[0].key].median
    lines = [Line(time_cells(v.label, stats[v.key], base)) for v in variants]
    return Section(title, TIME_HEADER, lines)


def time_cells(label: str, stat: Summary, base: float) -> tuple[str, ...]:
    """Label, median µs/op, interquartile range, ratio to ``base``."""
    return (
        label,
        f"{stat.median:,.1f}",
        f"{stat.p25:,.1f}-{stat.p75:,.1f}",
        f"{stat.median / base:.2f}",
    )


def size_section(title: str, labels: dict[str, str], values: dict[str, list[int]]) -> Section:
    """One row per encoding: mean bytes per row, min-max, ratio to the first encoding."""
    names = list(labels)
    base = statistics.fmean(values[names[0]])
    lines = [
        Line(
            (
                labels[name],
                f"{statistics.fmean(values[name]):,.1f}",
                f"{min(values[name]):,}-{max(values[name]):,}",
                f"{statistics.fmean(values[name]) / base:.2f}",
            )
        )
        for name in names
    ]
    return Section(title, ("Encoding", "bytes/row (mean)", "min-max", "x first row"), lines)


def ratio(samples: dict[str, list[float]], top: str, bottom: str) -> float:
    """The ratio of the two variants' medians."""
    return statistics.median(samples[top]) / statistics.median(samples[bottom])


def timing_target(
    name: str,
    samples: dict[str, list[float]],
    top: str,
    bottom: str,
    goal: tuple[str, float] | None = None,
) -> Target:
    """A ratio of medians, with the median and quartiles of the per-round ratios."""
    per_round = summarize(paired_ratios(samples, top, bottom))
    return Target(name, ratio(samples, top, bottom), goal, per_round)


def count_target(name: str, value: float, goal: tuple[str, float] | None = None) -> Target:
    """A count (shown without decimals) and its goal."""
    return Target(name, value, goal, digits=0)


def _widths(rows: Sequence[Sequence[str]]) -> list[int]:
    return [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]


def _text_table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = _widths(rows)
    out = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def _target_rows(targets: Sequence[Target]) -> list[tuple[str, ...]]:
    head = ("Figure", "value", "per round: median (p25-p75)", "target", "verdict")
    rows = [(t.name, t.value_text, t.per_round_text, t.goal_text, t.verdict) for t in targets]
    return [head, *rows]


def render_text(report: Report) -> str:
    out = [f"{k}: {v}" for k, v in report.environment]
    for section in report.sections:
        out += [
            "",
            section.title,
            *_text_table([section.header, *(line.cells for line in section.lines)]),
        ]
    out += ["", "Targets", *_text_table(_target_rows(report.targets)), ""]
    out += [verdict_line(t) for t in report.targets if t.goal is not None]
    return "\n".join(out) + "\n"


def verdict_line(target: Target) -> str:
    verdict = target.verdict.upper()
    return f"{verdict:8} {target.name} = {target.value_text} (target {target.goal_text})"


def _md_table(rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---", *("---:" for _ in rows[0][1:])]
    return [line(rows[0]), "| " + " | ".join(align) + " |", *(line(r) for r in rows[1:])]


def render_markdown(report: Report) -> str:
    out = ["| Item | Value |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in report.environment]
    for section in report.sections:
        rows = [section.header, *(line.cells for line in section.lines)]
        out += ["", f"**{section.title}**", "", *_md_table(rows)]
    out += ["", "**Targets**", "", *_md_table(_target_rows(report.targets))]
    return "\n".join(out) + "\n"
