"""Peer test of `aspirectl cron next` against a cron implementation that is not ours: croniter.

For the seed's expressions and the usual crontab forms, both must give the same next fire
times from several starting points (UTC). croniter runs with Vixie cron's day-field rule
(`implement_cron_bug`: a day field starting with `*` does not take part in the OR) and, for six
fields, seconds first, as the seed writes them.

Left out on purpose: a wrapping range with a step (`23-7/2`), where croniter gives 23, 2, 4, 6
and we give 23, 1, 3, 5, 7 as Quartz does and as the seed's comment ("every two hours from 23:00
to 08:00") means; and the forms croniter does not read (`5L`, `LW`, `L-3`). Those are checked
against hand-written times in Tests/CronTests.
"""

import datetime
import os
import subprocess

import pytest
from croniter import croniter

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("ASPIRE_BIN_DIR", os.path.join(ROOT, ".build", "debug"))

EXPRESSIONS = [
    # The seed's six-field examples.
    "0 0 * * * *", "*/10 * * * * *", "0 0 8-10 * * *", "0 0/30 8-10 * * *", "0 0 9-17 * * MON-FRI", "0 0 0 25 12 ?",
    # The seed's crontab lines.
    "*/10 * * * *", "0 6 * * *", "0 */2 * * *", "45 4 1,10,22 * *", "0 11 4 * 1-3", "45 11 * * 0,6", "0 9 * * 1-5",
    "2 8-16/3 * * *", "0,30 18-23 * * *", "0-59/30 18-23 * * *", "*/30 18-23 * * *",
    # Other common forms.
    "0 0 L * *", "0 0 * * MON#2", "0 0 15W * *", "0 12 1 * 5", "0 12 */2 * 5", "0 12 1-7 * 1", "30 4 29 2 *",
    "0 0 * * 7", "0 0 * jan,jul sun", "5 4 * * sun", "0 22 * * 1-5", "23 0-20/2 * * *", "15 14 1 * *",
    "0 0 1 */3 *", "*/15 9-17 * * mon-fri", "0 30 */6 * * *", "10-20/5 * * * * *",
]
STARTS = ["2026-11-22T10:17:33+00:00", "2026-01-01T00:00:00+00:00", "2027-02-27T23:59:59+00:00", "2028-02-28T12:00:00+00:00"]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_next_fire_times_match_croniter(expression):
    six = len(expression.split()) == 6
    for start in STARTS:
        it = croniter(expression.replace("?", "*"), datetime.datetime.fromisoformat(start),
                      second_at_beginning=six, implement_cron_bug=True)
        theirs = [it.get_next(datetime.datetime).strftime("%Y-%m-%dT%H:%M:%SZ") for _ in range(25)]
        out = subprocess.run(
            [os.path.join(BIN, "aspirectl"), "cron", "next", expression, "--from", start, "--count", "25", "--tz", "UTC"],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == theirs, f"{expression} from {start}"


def test_bad_expression_names_field_and_token():
    out = subprocess.run([os.path.join(BIN, "aspirectl"), "cron", "next", "0 61 * * * *"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "minute field: '61' is out of range" in out.stderr


# Zones whose rules are unusual somewhere: southern DST, half-hour DST, negative DST, two-hour
# DST, DST abolished, Ramadan changes, offsets of :30 and :45, across the date line.
ZONES = [
    "Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe", "Europe/Dublin", "Antarctica/Troll",
    "Asia/Kolkata", "Asia/Kathmandu", "Pacific/Chatham", "America/Santiago", "Africa/Casablanca", "America/Asuncion",
    "Asia/Tehran", "America/Sao_Paulo", "Pacific/Apia", "America/St_Johns", "UTC",
]
# Whole seasons around the changes: the zone files' own transitions (1995, 2026) and, past the
# last of them, the rule of each file's footer (2043).
ZONE_STARTS = ["1995-03-20T00:00:00+00:00", "2026-03-01T00:00:00+00:00", "2026-09-25T00:00:00+00:00", "2043-03-01T00:00:00+00:00"]


def offset(info, moment):
    return int(datetime.datetime.fromtimestamp(moment, tz=info).utcoffset().total_seconds())


def jumps_off_the_quarter(info, first, last):
    """Where clocks go forward at an instant that is not a quarter hour (St. John's changed at
    00:01 until 2011) and the skipped wall times hold a quarter hour: the schedule fires once at
    the jump (CronSchedule's rule), besides every quarter hour."""
    jumps = []
    for moment in range(first, last, 900):
        before, after = offset(info, moment), offset(info, moment + 900)
        if after <= before:
            continue
        low, high = moment, moment + 900
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if offset(info, middle) == before else (low, middle)
        skipped_quarter = -(-(high + before) // 900) * 900 < high + after
        if high % 900 != 0 and skipped_quarter:
            jumps.append(high)
    return jumps


@pytest.mark.parametrize("zone", ZONES)
def test_zone_offsets_match_python_zoneinfo(zone):
    """Every quarter hour fires (the hour field starts with `*`, so repeated wall times fire again),
    each printed with the zone's offset at that instant: the agent's reading of the host's TZif
    files against Python's, at 10,000 instants (104 days) from each start."""
    from zoneinfo import ZoneInfo

    info = ZoneInfo(zone)
    for start in ZONE_STARTS:
        first = int(datetime.datetime.fromisoformat(start).timestamp())
        moments = sorted([first + 900 * k for k in range(1, 10001)] + jumps_off_the_quarter(info, first, first + 900 * 10000))[:10000]
        theirs = [datetime.datetime.fromtimestamp(m, tz=info).isoformat().replace("+00:00", "Z") for m in moments]
        out = subprocess.run(
            [os.path.join(BIN, "aspirectl"), "cron", "next", "0 */15 * * * *", "--from", start, "--count", "10000", "--tz", zone],
            capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, out.stderr
        ours = out.stdout.split()
        mismatches = [(a, b) for a, b in zip(ours, theirs) if a != b]
        assert len(ours) == len(theirs) and not mismatches, f"{zone} from {start}: first differences {mismatches[:3]}"


@pytest.mark.parametrize("tz, expected", [
    ("America/New_York", ["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00"]),
    (":Asia/Kolkata", ["2026-03-08T12:00:00+05:30", "2026-03-08T13:00:00+05:30", "2026-03-08T14:00:00+05:30"]),
    ("<+0330>-3:30", ["2026-03-08T10:00:00+03:30", "2026-03-08T11:00:00+03:30", "2026-03-08T12:00:00+03:30"]),
    ("EST5EDT,M3.2.0,M11.1.0", ["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00"]),
])
def test_host_zone_is_read_as_the_c_library_reads_tz(tz, expected):
    """Without --tz a schedule is in the host's zone: TZ as a zone name (with or without the
    leading colon) or a POSIX rule, else /etc/localtime."""
    out = subprocess.run(
        [os.path.join(BIN, "aspirectl"), "cron", "next", "0 * * * *", "--from", "2026-03-08T05:30:00Z", "--count", "3"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ, TZ=tz),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == expected
