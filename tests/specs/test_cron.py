"""A spec's `schedule` is valid exactly when Dagster accepts it: the oracle is Dagster building a
ScheduleDefinition with that cron string."""

import copy
import warnings

import dagster as dg
import pytest
import yaml

from memories_dagster.specs.loading import SpecError, load_integration_spec
from tests.specs.test_errors import VALID

EXPRESSIONS = [
    "@daily", "@hourly", "@weekly", "@monthly", "@yearly", "@annually", "@midnight", "@reboot",
    "0 2 * * *", "*/15 * * * *", "0 0 * * MON-FRI", "0 0 * * sun", "0 0 1 JAN *", "0 0 1,15 * *",
    "0 0 L * *", "0 0 * * 5#3", "0 0 ? * *", "0-59/70 * * * *", "0 0 29 2 *", "0 0 31 2,3 *", "0 0 * * 7",
    "30 23 31 2 *", "0 0 30 2 *", "60 * * * *", "0 24 * * *", "0 0 0 * *", "0 0 * 13 *", "0 0 * * 8",
    "*/0 * * * *", "* * * * * *", "0 0 * * * 2024", "* * * *", "", "daily", "every day", "H 0 * * *",
    "0 0 1W * *", "0 0 * * 1L", "5-1 * * * *", "0 0 * * MON-FOO",
]


def dagster_accepts(cron: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Dagster warns about intervals it still accepts
            dg.ScheduleDefinition(name="probe", cron_schedule=cron, job_name="probe_job")
    except dg.DagsterInvalidDefinitionError:
        return False
    return True


@pytest.mark.parametrize("cron", EXPRESSIONS)
def test_a_schedule_is_valid_exactly_when_dagster_accepts_it(tmp_path, cron):
    file = tmp_path / "p.yaml"
    file.write_text(yaml.safe_dump({**copy.deepcopy(VALID), "schedule": cron}))
    if dagster_accepts(cron):
        assert load_integration_spec(file).spec.schedule == cron
    else:
        with pytest.raises(SpecError, match=f"{file}: schedule: '.*' is not a cron schedule Dagster accepts"):
            load_integration_spec(file)


def test_the_table_holds_both_answers():
    """The oracle says yes and no to the table, and to the two cases the issue names."""
    answers = {cron: dagster_accepts(cron) for cron in EXPRESSIONS}
    assert answers["@daily"] and not answers["30 23 31 2 *"]
    assert 10 < sum(answers.values()) < len(EXPRESSIONS) - 10
