"""`barehub usage` over 10,000 ended sessions, side by side with what an admin scripts without it: systemd's own
record of each ended unit, the journal's "Consumed ... CPU time" messages (journalctl -o json, summed per user by
a few lines of Python). One booted systemd container with barehub installed by bootstrap.py, one run; the same
10,000 sessions (200 users, 10 groups, the last 60 days) in both. Writes bench/usage-results.md and .json.
Run: sudo .venv-tests/bin/python -m bench.usage   (needs what tests/run installs)

What the journal's way does not give, whatever its speed: the user's group and profile, the session's start, its
memory, running servers, and entries older than the journal keeps (journald rotates by size).
"""
from __future__ import annotations

import csv
import io
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.box import installed  # noqa: E402
from bench.report import save  # noqa: E402

SESSIONS = 10_000
ROUNDS = 5
PYTHON = "/opt/barehub/conda/bin/python"
SINCE = "$(date -u -d '61 days ago' +%Y-%m-%d)"
# the admin's script: the CPU of every ended server unit, per user (from the unit's name), as CSV
JOURNAL_WAY = (f"journalctl -q -o json --output-fields=UNIT,CPU_USAGE_NSEC --since {SINCE} "
               "MESSAGE_ID=ae8f7b866b0347b9af31fe1c80b127c0 | python3 -c '"
               "import sys, json, collections\n"
               "cpu = collections.Counter()\n"
               "for line in sys.stdin:\n"
               "    e = json.loads(line)\n"
               "    unit = e.get(\"UNIT\", \"\")\n"
               "    if unit.startswith(\"jupyter-\"):\n"
               "        cpu[unit.split(\"-\")[1]] += int(e.get(\"CPU_USAGE_NSEC\", 0)) / 3.6e12\n"
               "print(\"user,cpu_hours\")\n"
               "for user, hours in sorted(cpu.items()):\n"
               "    print(f\"{user},{hours:.4f}\")\n"
               "print(f\"total,{sum(cpu.values()):.4f}\")'")
WAYS = {
    "barehub usage --by user --csv": f"barehub usage --since {SINCE} --by user --csv",
    "barehub usage --by group --json": f"barehub usage --since {SINCE} --by group --json",
    "journalctl -o json | python (CPU per user only)": JOURNAL_WAY,
}


def log(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


def timed(box, command: str) -> tuple[dict, str]:
    took, out = [], ""
    for _ in range(ROUNDS):
        start = time.monotonic()
        out = box.run(command, timeout=300).stdout
        took.append(time.monotonic() - start)
    took.sort()
    return {"n": len(took), "median": statistics.median(took), "min": took[0], "max": took[-1]}, out


def main() -> int:
    if os.geteuid() != 0:
        print("bench: run as root (it boots a systemd container)", file=sys.stderr)
        return 1
    results: dict = {"machine": {"cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}, "sessions": SESSIONS}
    with installed("usage") as (box, _token):
        start = time.monotonic()
        box.run(f"{PYTHON} /mnt/bench/usage_fill.py ledger {SESSIONS}", timeout=600)
        results["fill_ledger_s"] = time.monotonic() - start
        box.run(f"systemd-run --wait --quiet -p LogRateLimitIntervalSec=0 {PYTHON} /mnt/bench/usage_fill.py "
                f"journal {SESSIONS}", timeout=600)
        box.run("journalctl --sync")
        counted = int(box.run("journalctl -q -o json --output-fields=UNIT MESSAGE_ID=ae8f7b866b0347b9af31fe1c80b127c0 "
                              "| grep -c jupyter-").stdout.strip())
        log(f"{SESSIONS} sessions in the ledger, {counted} resource messages in the journal")
        results["journal_entries"] = counted
        results["ways"], outputs = {}, {}
        for label, command in WAYS.items():
            results["ways"][label], outputs[label] = timed(box, command)
            log(f"{label}: median {results['ways'][label]['median']:.3f} s")
        ours = list(csv.DictReader(io.StringIO(outputs["barehub usage --by user --csv"])))[-1]
        theirs = outputs["journalctl -o json | python (CPU per user only)"].strip().splitlines()[-1]
        results["cpu_hours_total"] = {"barehub": float(ours["cpu_hours"]), "journal": float(theirs.split(",")[1])}
    save(results, "usage-results", write_report)
    return 0


def write_report(results: dict, path: Path) -> None:
    ways = results["ways"]
    ours = ways["barehub usage --by user --csv"]["median"]
    theirs = ways["journalctl -o json | python (CPU per user only)"]["median"]
    lines = [f"# `barehub usage` over {results['sessions']:,} ended sessions, against the journal",
             "",
             f"Measured {results['machine']['date']} on one machine ({results['machine']['cores']} cores), one run, in "
             "a booted systemd container with barehub installed by bootstrap.py. The same sessions (200 users, 10 "
             "groups, the last 60 days) in barehub's ledger and, as systemd's own \"Consumed ... CPU time\" "
             f"messages, in the journal ({results['journal_entries']:,} entries). Each way run {ROUNDS} times as a "
             "fresh process (what an admin types); wall time. Re-run: `sudo .venv-tests/bin/python -m bench.usage`.",
             "", "| way | median | min-max | n |", "|---|---|---|---|"]
    for label, s in ways.items():
        lines.append(f"| {label.replace('|', chr(92) + '|')} | {s['median']:.3f} s | {s['min']:.3f}-{s['max']:.3f} s | {s['n']} |")
    lines += ["", f"Ratio (barehub usage / the journal's way): {ours / theirs:.2f}x. Total CPU hours: barehub "
                  f"{results['cpu_hours_total']['barehub']:.2f}, journal {results['cpu_hours_total']['journal']:.2f} "
                  "(the same sessions).",
              "", "The journal's way gives CPU per user only: no group, profile, start, memory or running servers, "
                  "and nothing older than journald keeps.", ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
