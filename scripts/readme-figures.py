#!/usr/bin/env python3
"""README figures from recorded runs, never typed by hand.

    python3 scripts/readme-figures.py record   # run `specdec demo`, keep its output in
                                               # benches/results/demo.txt, update README.md
    python3 scripts/readme-figures.py check    # README.md's demo block equals the recording
                                               # (make test runs this)

The README's block between `<!-- demo:begin -->` and `<!-- demo:end -->` is written from the
recording: the command, the date and machine, and the demo's own summary lines.
"""
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "benches" / "results" / "demo.txt"
README = ROOT / "README.md"
BEGIN, END = "<!-- demo:begin -->", "<!-- demo:end -->"
COMMAND = ["./target/release/specdec", "demo"]


def block(record: str) -> str:
    header, _, output = record.partition("\n\n")
    # The demo's summary: from the acceptance line on (the continuation text above it is long).
    lines = output.splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith("prompts ")), 0)
    summary = "\n".join(lines[start:]).rstrip()
    return f"{BEGIN}\n{header.strip()}\n\n```text\n{summary}\n```\n{END}"


def current_block(readme: str) -> str:
    if BEGIN not in readme or END not in readme:
        sys.exit(f"readme-figures: README.md has no {BEGIN} ... {END} block")
    a = readme.index(BEGIN)
    return readme[a : readme.index(END) + len(END)]


def record() -> None:
    load = os.getloadavg()[0]
    out = subprocess.run(COMMAND, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"readme-figures: {' '.join(COMMAND)} failed:\n{out.stdout}{out.stderr}")
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), platform.processor())
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"Recorded with `make demo` ({' '.join(COMMAND[1:])}) on {when}, {os.cpu_count()} cores ({cpu}), "
        f"load average {load:.2f} when it started:"
    )
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    RECORD.write_text(f"{header}\n\n{out.stdout}")
    readme = README.read_text()
    README.write_text(readme.replace(current_block(readme), block(RECORD.read_text())))
    print(block(RECORD.read_text()))


def check() -> int:
    want = block(RECORD.read_text())
    got = current_block(README.read_text())
    if got != want:
        print("readme-figures: README.md's demo block differs from benches/results/demo.txt; run: python3 scripts/readme-figures.py record", file=sys.stderr)
        return 1
    print("readme-figures: README.md's demo figures are the recorded run's (benches/results/demo.txt)")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["record"]:
        record()
    elif sys.argv[1:] == ["check"]:
        sys.exit(check())
    else:
        sys.exit(__doc__)
