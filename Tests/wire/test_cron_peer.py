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
