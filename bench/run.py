"""Personalising one issue for many readers, side by side with the ways it could be done.

    make bench                      # 10,000 readers of the sample AM issue
    .venv/bin/python bench/run.py --readers 2000

Prints, for one run on this machine:
  compose      render + premailer + MIME template, once per issue
  digest       per reader: splice values into the pre-encoded template + structure check
  splice only  the same without the structure check
  full verify  re-parse every copy with the standard library (what tests do on every copy)
  stdlib       per reader: EmailMessage built from the pre-inlined HTML/text + as_bytes()
  naive        per reader: Jinja2 render + premailer + EmailMessage (sampled on fewer readers)
and the ratios between them, plus peak memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import email.policy
import resource
import sys
import time
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest.compose.inline import inline_css  # noqa: E402
from digest.compose.personalise import Placeholders  # noqa: E402
from digest.compose.pipeline import compose  # noqa: E402
from digest.compose.planning import choose_stories  # noqa: E402
from digest.compose.render import Renderer  # noqa: E402
from digest.config import load_settings, parse_signing_keys  # noqa: E402
from digest.models import Subscriber  # noqa: E402
from digest.sources.stories import load_folder  # noqa: E402

FIRST = ["Ana", "Zoë", "José", "Nguyễn", "Liam", "Harriet", "Kwame", "Sørine", "Priya", "Tom"]


def readers(count: int, slug: str) -> list[Subscriber]:
    return [Subscriber(f"reader{i}@example{i % 7}.com", f"{FIRST[i % len(FIRST)]} Reader{i}", frozenset({slug}), "active", i + 2)
            for i in range(count)]


def timed(label: str, count: int, fn) -> tuple[str, float, int]:
    start = time.perf_counter()
    fn()
    return label, time.perf_counter() - start, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=10_000)
    parser.add_argument("--naive", type=int, default=100, help="readers for the naive per-reader render (it is slow)")
    parser.add_argument("--sample", type=int, default=1000, help="readers for the stdlib and full-verify paths")
    parser.add_argument("--edition", default="am")
    args = parser.parse_args()

    settings = load_settings(ROOT / "digest.toml", environ={})
    settings = dataclasses.replace(settings, signing_keys=parse_signing_keys("bench:bench-signing-key-0123456789"))
    stories = load_folder(settings.paths.stories).stories
    edition = settings.edition(args.edition)
    issue = choose_stories(edition, settings.demo_date, stories, words_per_minute=settings.newsroom.words_per_minute)
    audience = readers(args.readers, edition.slug)
    renderer = Renderer(settings.paths.templates)

    start = time.perf_counter()
    composed = compose(settings, issue, renderer)
    compose_s = time.perf_counter() - start
    recipients = [composed.recipient(r) for r in audience]  # tokens + Message-IDs: part of per-reader cost below

    def digest_path() -> None:
        for reader in audience:
            composed.message(composed.recipient(reader))

    def splice_only() -> None:
        for recipient in recipients:
            composed.template.build(recipient)

    verify_n = min(len(recipients), args.sample)

    def full_verify() -> None:
        for recipient in recipients[:verify_n]:
            composed.template.verify(composed.template.build(recipient), recipient)

    html, text = composed.rendered.html, composed.rendered.text
    pattern = composed.template.placeholders.pattern()

    stdlib_n = min(len(recipients), args.sample)

    def stdlib_path() -> None:
        for recipient in recipients[:stdlib_n]:
            values = {"GREETING": recipient.greeting, "EMAIL": recipient.email, "UNSUBSCRIBE_URL": recipient.unsubscribe_url}
            message = EmailMessage(policy=email.policy.SMTP)
            message["From"] = f"{edition.sender.name} <{edition.sender.address}>"
            message["To"] = f"{recipient.name} <{recipient.email}>"
            message["Subject"] = composed.rendered.subject
            message["Message-ID"] = recipient.message_id
            message["List-Unsubscribe"] = f"<{recipient.unsubscribe_url}>"
            message.set_content(pattern.sub(lambda m: values[m.group(1)], text))
            message.add_alternative(pattern.sub(lambda m: values[m.group(1)], html), subtype="html")
            message.as_bytes()

    naive_n = min(args.naive, len(audience))

    def naive_path() -> None:
        for recipient in recipients[:naive_n]:
            placeholders = Placeholders.new()
            rendered = renderer.render(issue, settings.newsroom, settings.base_url, placeholders.context())
            inlined = inline_css(rendered.html)
            message = EmailMessage(policy=email.policy.SMTP)
            message["To"] = recipient.email
            message["Subject"] = rendered.subject
            message.set_content(rendered.text)
            message.add_alternative(inlined, subtype="html")
            message.as_bytes()

    runs = [
        timed("digest (splice + check)", len(audience), digest_path),
        timed("splice only", len(recipients), splice_only),
        timed("full re-parse verify", verify_n, full_verify),
        timed("stdlib EmailMessage", stdlib_n, stdlib_path),
        timed("naive render per reader", naive_n, naive_path),
    ]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size = len(composed.message(recipients[0]))
    print(f"issue {edition.slug} {issue.date}: {len(issue.stories)} stories, message {size / 1024:.1f} KB, "
          f"HTML {len(html.encode()) / 1024:.1f} KB, {len(audience):,} readers")
    print(f"compose once (render + premailer + encode): {compose_s * 1000:.1f} ms\n")
    base = runs[0][1] / runs[0][2]
    print(f"{'path':<26}{'readers':>9}{'total s':>10}{'per reader':>13}{'msg/s':>10}{'vs digest':>11}")
    for label, seconds, count in runs:
        per = seconds / count
        print(f"{label:<26}{count:>9,}{seconds:>10.2f}{per * 1e6:>10.1f} us{1 / per:>10,.0f}{per / base:>10.1f}x")
    total = compose_s + runs[0][1]
    print(f"\nwhole issue, compose counted once: {total:.2f} s for {len(audience):,} readers = "
          f"{len(audience) / total:,.0f} msg/s on one core (goal: 2,000)")
    print(f"peak memory (max RSS): {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
