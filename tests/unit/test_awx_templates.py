"""The AWX layout in awx/ (job templates, survey, workflow, schedules) matches the code it runs.

- The DR restore survey is one AWX's API accepts (awx/api/views JobTemplateSurveySpec rules), and
  every variable it asks for is an option of the dr_restore role's argument spec, its choices among
  the option's choices; the confirmation's answers are read as the booleans they say.
- Every job template runs a playbook of playbooks/, with tags that the role defines, the
  credentials project.yml defines, and the three service credentials wherever the playbook reaches
  PostgreSQL, Redis and S3 (it loads vars/connection_defaults.yml).
- The workflow links existing job templates; after the backup node comes a dr_restore node that
  names no DR set, so it takes the backup job's artifact.
- The schedules name existing templates and carry rrules AWX accepts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.parsing.convert_bool import boolean
from dateutil import rrule

ROOT = Path(__file__).resolve().parents[2]
AWX = ROOT / "awx"
ROLE_SPEC = ROOT / "roles" / "dr_restore" / "meta" / "argument_specs.yml"

# JobTemplateSurveySpec.ALLOWED_TYPES: the type a question's default must have
SURVEY_TYPES = {"text": str, "textarea": str, "password": str, "multiplechoice": str, "multiselect": str}
SURVEY_TYPES |= {"integer": int, "float": (int, float)}


def data(name: str) -> dict[str, Any]:
    return yaml.safe_load((AWX / name).read_text())


TEMPLATES = {t["name"]: t for t in data("job_templates.yml")["controller_templates"]}
WORKFLOWS = {w["name"]: w for w in data("workflows.yml")["controller_workflows"]}
SCHEDULES = data("schedules.yml")["controller_schedules"]
PROJECT = data("project.yml")


def dr_restore_template() -> dict[str, Any]:
    [template] = [t for t in TEMPLATES.values() if t.get("survey_enabled")]
    assert template["playbook"] == "playbooks/dr_restore.yml"
    return template


def role_options() -> dict[str, Any]:
    return yaml.safe_load(ROLE_SPEC.read_text())["argument_specs"]["main"]["options"]


def test_the_survey_is_one_the_awx_api_accepts():
    survey = dr_restore_template()["survey_spec"]
    assert isinstance(survey["name"], str) and isinstance(survey["description"], str) and survey["spec"]
    variables = [q["variable"] for q in survey["spec"]]
    assert len(variables) == len(set(variables)), variables
    for question in survey["spec"]:
        for key in ("type", "question_name", "variable"):
            assert isinstance(question[key], str), (key, question)
        assert isinstance(question["required"], bool), question
        assert question["type"] in SURVEY_TYPES, question
        if question.get("default", "") != "":
            assert isinstance(question["default"], SURVEY_TYPES[question["type"]]), question
        for key in ("min", "max"):
            assert key not in question or isinstance(question[key], int), question
        if question["type"] in ("multiplechoice", "multiselect"):
            defaults = question.get("default", "").splitlines()
            assert question["type"] == "multiselect" or len(defaults) <= 1, question
            assert set(defaults) <= set(question["choices"]), question


def test_the_survey_asks_for_options_of_the_dr_restore_role():
    options = role_options()
    survey = {q["variable"]: q for q in dr_restore_template()["survey_spec"]["spec"]}
    assert {"dr_restore_confirm", "dr_restore_backup_id", "dr_restore_kinds", "dr_restore_target_time"} <= set(survey)
    unknown = set(survey) - set(options)
    assert not unknown, f"survey variables the dr_restore role does not read: {sorted(unknown)}"
    for name, question in survey.items():
        option = options[name]
        if question["type"] == "multiselect":  # AWX sends a list
            assert option["type"] == "list", name
            assert set(question["choices"]) <= set(option.get("choices", question["choices"])), name
            assert set(question["default"].splitlines()) == set(option["default"]), name
        elif option["type"] == "bool":  # AWX sends the chosen string
            assert question["type"] == "multiplechoice", name
            assert {boolean(c) for c in question["choices"]} == {True, False}, question["choices"]
            assert boolean(question["default"]) is option["default"] is False, "a survey must not confirm by default"
        else:
            assert option["type"] == "str" and question["type"] == "text", name
            # empty, the survey's default, must be the role's own meaning of "not given"
            assert question["default"] == option["default"] == "", name


@pytest.mark.parametrize("confirm", ["true", "false"])
def test_the_role_argument_validation_accepts_the_answers_awx_sends(confirm):
    # what ansible.builtin.validate_argument_spec runs before the role: strings, the multiselect a list
    options = role_options()
    survey = dr_restore_template()["survey_spec"]["spec"]
    spec = {q["variable"]: {k: v for k, v in options[q["variable"]].items() if k != "description"} for q in survey}
    answers = {"dr_restore_confirm": confirm, "dr_restore_backup_id": "", "dr_restore_kinds": ["postgresql", "s3"]}
    answers["dr_restore_target_time"] = ""
    result = ArgumentSpecValidator(spec).validate(answers)
    assert not result.error_messages, result.error_messages
    assert result.validated_parameters["dr_restore_confirm"] is (confirm == "true")
    # and a store the role does not know is refused
    assert ArgumentSpecValidator(spec).validate({**answers, "dr_restore_kinds": ["app"]}).error_messages


def test_the_survey_fits_the_values_it_asks_for():
    survey = {q["variable"]: q for q in dr_restore_template()["survey_spec"]["spec"]}
    assert survey["dr_restore_backup_id"]["max"] >= len("20261201T020000Z")
    assert survey["dr_restore_target_time"]["max"] >= len("2026-12-06T03:10:00Z")
    assert survey["dr_restore_confirm"]["required"] is True


def _tags_of_role(role: str) -> set[str]:
    text = "".join(p.read_text() for p in (ROOT / "roles" / role / "tasks").glob("*.yml"))
    return {tag.strip() for group in re.findall(r"tags: \[([\w, ]+)\]", text) for tag in group.split(",")}


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_job_template_matches_the_code(name):
    template = TEMPLATES[name]
    playbook = ROOT / template["playbook"]
    assert playbook.is_file(), template["playbook"]
    assert template["project"] in {p["name"] for p in PROJECT["controller_projects"]}
    assert template["inventory"] in {i["name"] for i in PROJECT["controller_inventories"]}
    assert template["execution_environment"] in {e["name"] for e in PROJECT["controller_execution_environments"]}
    credentials = {c["name"]: c for c in PROJECT["controller_credentials"]}
    assert set(template["credentials"]) <= set(credentials), template["credentials"]
    types = {credentials[c]["credential_type"] for c in template["credentials"]}
    assert "Machine" in types, "every job reaches its hosts"
    service_types = {yaml.safe_load(p.read_text())["name"] for p in (AWX / "credential_types").glob("*.yml")}
    plays = yaml.safe_load(playbook.read_text())
    if any("vars/connection_defaults.yml" in (play.get("vars_files") or []) for play in plays):
        assert service_types <= types, f"{name} reaches PostgreSQL, Redis and S3: {sorted(service_types - types)}"
    else:
        assert not types & service_types, f"{name} passes service credentials to a playbook that reads none"
    for tag in filter(None, (template.get("job_tags") or "").split(",")):
        roles = re.findall(r"name: runbook\.stack\.(\w+)", playbook.read_text())
        assert any(tag in _tags_of_role(role) for role in roles), f"{name}: no role of {playbook.name} has tag {tag}"


def test_the_credentials_use_the_credential_types():
    service_types = {yaml.safe_load(p.read_text())["name"] for p in (AWX / "credential_types").glob("*.yml")}
    used = {c["credential_type"] for c in PROJECT["controller_credentials"]}
    assert used == service_types | {"Machine"}, used


def test_the_workflow_feeds_the_backup_artifact_to_dr_restore():
    [workflow] = WORKFLOWS.values()
    nodes = {n["identifier"]: n for n in workflow["workflow_nodes"]}
    for node in nodes.values():
        assert node["unified_job_template"]["name"] in TEMPLATES, node
        for link in ("success_nodes", "failure_nodes", "always_nodes"):
            assert {n["identifier"] for n in node["related"][link]} <= set(nodes), node
    [backup] = [
        n for n in nodes.values() if TEMPLATES[n["unified_job_template"]["name"]]["playbook"] == "playbooks/backup.yml"
    ]
    [after] = backup["related"]["success_nodes"]
    restore = TEMPLATES[nodes[after["identifier"]]["unified_job_template"]["name"]]
    assert restore["playbook"] == "playbooks/dr_restore.yml"
    # the DR set comes from the artifact: nothing names one, and nothing can replace data
    extra = {**(restore.get("extra_vars") or {}), **(nodes[after["identifier"]].get("extra_data") or {})}
    assert not extra.get("dr_restore_backup_id") and not restore.get("survey_enabled"), restore
    assert restore.get("job_tags") == "dr_restore_select" or restore.get("job_type") == "check", restore


@pytest.mark.parametrize("schedule", SCHEDULES, ids=[s["name"] for s in SCHEDULES])
def test_schedule_names_a_template_and_a_valid_rrule(schedule):
    assert schedule["unified_job_template"] in {*TEMPLATES, *WORKFLOWS}, schedule
    text = schedule["rrule"]
    # AWX: one DTSTART and one RRULE with FREQ and INTERVAL, separated by a space
    assert re.fullmatch(r"DTSTART(;TZID=[\w/]+)?:\d{8}T\d{6}Z? RRULE:\S+", text), text
    assert "FREQ=" in text and "INTERVAL=" in text, text
    occurrences = rrule.rrulestr(text.replace(" ", "\n"))
    assert occurrences[1] > occurrences[0]


def test_backup_and_its_verification_are_scheduled():
    scheduled = {s["unified_job_template"] for s in SCHEDULES}
    backup_runs = {n["unified_job_template"]["name"] for w in WORKFLOWS.values() for n in w["workflow_nodes"]}
    assert any(w in scheduled for w in WORKFLOWS) and "runbook.stack backup" in backup_runs
    assert {"runbook.stack health", "runbook.stack maintenance window", "runbook.stack restore test"} <= scheduled
