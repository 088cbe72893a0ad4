"""What the debug panel's recording costs a hit: ``python -m bench.panel [--quick]``.

Interleaved in the same rounds: a hit with no panel recording (the hit path then pays one
``ContextVar.get``), the same hit while a panel records, and that one check alone beside an
empty call, so its cost can be set against the hit it belongs to.
"""

from __future__ import annotations

import argparse
import contextvars
import os
import sys
from pathlib import Path
from typing import Any

from bench.report import (
    Report,
    Section,
    Target,
    render_markdown,
    render_text,
    timing_section,
    timing_target,
)

#: Calls of the check alone per round: it takes nanoseconds, a hit hundreds of microseconds.
CHECK_CALLS = 200_000


def _in_context(context: contextvars.Context, op: Any) -> Any:
    def run(arg: Any) -> Any:
        return context.run(op, arg)

    return run


def variants(ctx: Any, calls: int) -> list[Any]:
    from bench.benchapp.models import Article
    from bench.timing import Variant
    from django_cachestrat import requestlog

    def hit(pk: int) -> Any:
        return Article.cached.get(pk=pk)

    off = contextvars.copy_context()  # no log: the default of every request
    on = contextvars.copy_context()
    on.run(requestlog._current.set, requestlog.RequestLog())

    def check(_: int) -> None:
        if (log := requestlog.active()) is not None:  # the statement the hit path runs
            log.reads("", (), ())

    def empty(_: int) -> None:
        return None

    return [
        Variant("off", "hit, no panel recording", _in_context(off, hit), ctx.draw(calls)),
        Variant("on", "hit, a panel recording", _in_context(on, hit), ctx.draw(calls)),
        Variant("check", "the recording check alone", _in_context(off, check), [0] * CHECK_CALLS),
        Variant(
            "empty", "an empty call (loop overhead)", _in_context(off, empty), [0] * CHECK_CALLS
        ),
    ]


def report(samples: dict[str, list[float]], group: list[Any], rounds: int) -> Report:
    from bench.timing import summarize

    added = [(c - e) * 1000 for c, e in zip(samples["check"], samples["empty"], strict=True)]
    share = [a / 1000 / h * 100 for a, h in zip(added, samples["off"], strict=True)]
    targets = [
        Target(
            "recording check / hit without recording, %",
            summarize(share).median,
            ("≤", 1.0),
            digits=3,
        ),
        Target("recording check, ns", summarize(added).median, digits=1),
        timing_target("hit recording / hit not recording", samples, "on", "off"),
    ]
    section: Section = timing_section("Debug panel — µs per call", group, samples)
    environment = [("Run", f"python -m bench.panel, {rounds} interleaved rounds")]
    return Report(environment, [section], targets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.panel", description="What the debug panel's recording costs."
    )
    parser.add_argument("--quick", action="store_true", help="a short run (5 small rounds)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 15, quick 5)")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write Markdown here")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    from bench import cli, database
    from bench.timing import run_rounds

    plan = cli.QUICK if args.quick else cli.FULL
    rounds = args.rounds or plan.rounds
    database.ensure_database()
    database.create_schema()
    database.clean_redis()
    try:
        ctx = cli.prepare(cli.seed(plan))
        group = variants(ctx, plan.single)
        cli.progress(f"timing {rounds} interleaved rounds")
        samples = run_rounds(group, rounds, plan.slices)
    finally:
        database.clean_redis()
    result = report(samples, group, rounds)
    sys.stdout.write(render_text(result))
    if args.markdown is not None:
        args.markdown.write_text(render_markdown(result))
        cli.progress(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
