"""The AWX credential types in awx/credential_types/ are valid for AWX and inject what the collection reads.

- Each file passes the checks AWX makes when a credential type is saved (awx/main/fields.py:
  CredentialTypeInputField, CredentialTypeInjectorField): field ids, types, defaults, env names, and
  every injector template renders with only the declared input ids (StrictUndefined).
- Every injected extra variable is one that playbooks/vars/connection_defaults.yml maps to a module
  option of that service, and every injected environment variable is the first environment fallback
  of such an option in the service's argument spec: the names the modules and playbooks read.
- The options a login needs are all reached, the secret ones only from secret inputs, and the env
  and extra_vars routes to one option carry the same input.
- The S3 session token: an optional secret input that reaches session_token both ways; with the
  injected environment the S3 argument spec's fallback picks it up.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from jinja2 import StrictUndefined, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ansible_collections.runbook.stack.plugins.module_utils._postgresql.connection import postgres_argument_spec
from ansible_collections.runbook.stack.plugins.module_utils._redis.connection import redis_argument_spec
from ansible_collections.runbook.stack.plugins.module_utils._s3.connection import conn_info, s3_argument_spec

ROOT = Path(__file__).resolve().parents[2]
TYPES_DIR = ROOT / "awx" / "credential_types"
CONNECTION_DEFAULTS = ROOT / "playbooks" / "vars" / "connection_defaults.yml"

SPECS = {"postgresql": postgres_argument_spec(), "redis": redis_argument_spec(), "s3": s3_argument_spec()}
# the module options a credential of each service must fill: the login (and, for S3, where it is valid)
NEEDED = {
    "postgresql": {"login_user", "login_password"},
    "redis": {"login_user", "login_password"},
    "s3": {"endpoint_url", "region", "access_key", "secret_key", "session_token"},
}
# AWX refuses these environment variables in a credential type (ENV_BLOCKLIST, besides ANSIBLE_*)
AWX_ENV_BLOCKLIST = {"PATH", "PYTHONPATH", "VIRTUAL_ENV", "JOB_ID", "INVENTORY_ID", "AWX_HOST", "REST_API_TOKEN"}
IDENTIFIER = re.compile(r"^[a-zA-Z_]+[a-zA-Z0-9_]*$")


def load(service: str) -> dict[str, Any]:
    return yaml.safe_load((TYPES_DIR / f"{service}.yml").read_text())


def input_ids(ctype: dict[str, Any]) -> set[str]:
    return {field["id"] for field in ctype["inputs"]["fields"]}


def referenced(template: str) -> set[str]:
    return meta.find_undeclared_variables(ImmutableSandboxedEnvironment().parse(template))


def extra_var_options(service: str) -> dict[str, str]:
    """{inventory variable: module option} of one service, as connection_defaults.yml maps them."""
    mapping = yaml.safe_load(CONNECTION_DEFAULTS.read_text())[f"runbook__{service}_defaults"]
    found = {}
    for option, template in mapping.items():
        var = re.fullmatch(r"\{\{ (\w+) \|.*\}\}", template)
        assert var, f"{service}.{option}: unexpected template {template!r}"
        found[var.group(1)] = option
    return found


def env_options(service: str) -> dict[str, str]:
    """{environment variable: module option} for the first fallback of each option of the service."""
    found = {}
    for option, spec in SPECS[service].items():
        if "fallback" in spec:
            found[spec["fallback"][1][0]] = option
    return found


def sample_inputs(ctype: dict[str, Any]) -> dict[str, str]:
    return {field["id"]: f"sample-{field['id']}" for field in ctype["inputs"]["fields"]}


def render(template: str, inputs: dict[str, str]) -> str:
    """As AWX renders an injector (ImmutableSandboxedEnvironment; an input left empty is undefined)."""
    return ImmutableSandboxedEnvironment().from_string(template).render(**{k: v for k, v in inputs.items() if v})


def test_there_is_one_type_per_service():
    assert sorted(p.stem for p in TYPES_DIR.glob("*.yml")) == sorted(SPECS)
    names = [load(service)["name"] for service in SPECS]
    assert len(set(names)) == len(names), names


@pytest.mark.parametrize("service", sorted(SPECS))
def test_the_type_is_one_awx_accepts(service):
    ctype = load(service)
    assert set(ctype) == {"name", "description", "kind", "inputs", "injectors"}, ctype.keys()
    assert ctype["kind"] in ("cloud", "net"), "custom credential types are of kind cloud or net"
    assert set(ctype["inputs"]) <= {"fields", "required"}
    ids = [field["id"] for field in ctype["inputs"]["fields"]]
    assert len(ids) == len(set(ids)) and "tower" not in ids, ids
    for field in ctype["inputs"]["fields"]:
        assert IDENTIFIER.match(field["id"]) and field["label"], field
        assert set(field) <= {"id", "label", "type", "help_text", "secret", "multiline", "choices", "default", "format"}
        assert field.get("type", "string") in ("string", "boolean"), field
        if "default" in field:
            assert isinstance(field["default"], {"string": str, "boolean": bool}[field.get("type", "string")]), field
    assert set(ctype["inputs"].get("required", [])) <= set(ids)
    assert set(ctype["injectors"]) <= {"env", "extra_vars", "file"}
    for name in ctype["injectors"].get("env", {}):
        assert IDENTIFIER.match(name) and not name.startswith("ANSIBLE_") and name not in AWX_ENV_BLOCKLIST, name
    for name in ctype["injectors"].get("extra_vars", {}):
        assert IDENTIFIER.match(name), name


@pytest.mark.parametrize("service", sorted(SPECS))
def test_injectors_reference_only_declared_inputs(service):
    ctype = load(service)
    ids = input_ids(ctype)
    strict = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    for kind, injector in ctype["injectors"].items():
        for name, template in injector.items():
            used = referenced(template)
            assert used, f"{kind}.{name} injects a constant: {template!r}"
            assert used <= ids, f"{kind}.{name} uses undeclared {sorted(used - ids)}"
            # AWX's own check when the type is saved: rendered with every declared field set
            strict.from_string(template).render({i: "EXAMPLE" for i in ids})
    # and every input is injected somewhere
    injected = set().union(*(referenced(t) for injector in ctype["injectors"].values() for t in injector.values()))
    assert injected == ids, f"inputs never injected: {sorted(ids - injected)}"


@pytest.mark.parametrize("service", sorted(SPECS))
def test_injected_names_are_the_ones_the_playbooks_and_modules_read(service):
    ctype = load(service)
    by_var, by_env = extra_var_options(service), env_options(service)
    unknown_vars = set(ctype["injectors"].get("extra_vars", {})) - set(by_var)
    assert not unknown_vars, f"extra vars no playbook maps to a {service} option: {sorted(unknown_vars)}"
    unknown_env = set(ctype["injectors"].get("env", {})) - set(by_env)
    assert not unknown_env, f"env vars that are not the first fallback of a {service} option: {sorted(unknown_env)}"


@pytest.mark.parametrize("service", sorted(SPECS))
def test_every_option_a_login_needs_is_filled(service):
    ctype = load(service)
    inputs = sample_inputs(ctype)
    by_var, by_env = extra_var_options(service), env_options(service)
    through_vars = {by_var[n]: render(t, inputs) for n, t in ctype["injectors"]["extra_vars"].items()}
    through_env = {by_env[n]: render(t, inputs) for n, t in ctype["injectors"].get("env", {}).items()}
    # the playbooks' route (extra vars, on every host) fills every option a login needs
    assert NEEDED[service] <= set(through_vars), sorted(NEEDED[service] - set(through_vars))
    # the env route fills the same option from the same input wherever the module has a fallback
    for option, value in through_env.items():
        assert through_vars.get(option) == value, f"{option}: env and extra_vars carry different inputs"
    secret_options = {name for name, spec in SPECS[service].items() if spec.get("no_log")}
    missing_env = (NEEDED[service] & secret_options) - set(through_env)
    assert not missing_env, f"secrets the module falls back to by env but not injected there: {missing_env}"
    # a secret option comes only from a secret input, and a secret input feeds only secret options
    secret_inputs = {f["id"] for f in ctype["inputs"]["fields"] if f.get("secret")}
    for name, template in ctype["injectors"]["extra_vars"].items():
        assert (by_var[name] in secret_options) == bool(referenced(template) & secret_inputs), name


def test_s3_session_token_is_optional_secret_and_reaches_session_token(monkeypatch):
    ctype = load("s3")
    token = next(f for f in ctype["inputs"]["fields"] if f["id"] == "session_token")
    assert token.get("secret") is True and "session_token" not in ctype["inputs"]["required"]
    # the env var the modules read first (the built-in AWS type sets only AWS_SECURITY_TOKEN, read second)
    fallback = s3_argument_spec()["session_token"]["fallback"][1]
    assert fallback[:2] == ["AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"], fallback
    assert referenced(ctype["injectors"]["env"]["AWS_SESSION_TOKEN"]) == {"session_token"}
    assert referenced(ctype["injectors"]["extra_vars"]["s3_session_token"]) == {"session_token"}

    inputs = sample_inputs(ctype)
    for name in [*fallback, "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"]:
        monkeypatch.delenv(name, raising=False)
    for name, template in ctype["injectors"]["env"].items():
        monkeypatch.setenv(name, render(template, inputs))
    validated = ArgumentSpecValidator(s3_argument_spec()).validate({})
    assert not validated.error_messages, validated.error_messages
    params = validated.validated_parameters
    assert params["session_token"] == "sample-session_token"
    assert (params["access_key"], params["secret_key"]) == ("sample-access_key", "sample-secret_key")
    assert params["region"] == "sample-region"

    # left empty (a long-lived key pair): AWX injects an empty string, which means no token
    monkeypatch.setenv("AWS_SESSION_TOKEN", render(ctype["injectors"]["env"]["AWS_SESSION_TOKEN"], {}))
    params = ArgumentSpecValidator(s3_argument_spec()).validate({}).validated_parameters
    params["endpoint_url"] = "https://s3.example.internal"
    assert conn_info(params).session_token is None


def test_connection_defaults_leave_out_an_empty_optional_input():
    # an optional input left empty is injected as "": the variables it feeds must be omitted then,
    # or the empty string would reach the module as a value
    mapping = yaml.safe_load(CONNECTION_DEFAULTS.read_text())
    for service in SPECS:
        ctype = load(service)
        required = set(ctype["inputs"].get("required", []))
        options = extra_var_options(service)
        for name, template in ctype["injectors"]["extra_vars"].items():
            if referenced(template) - required:
                line = mapping[f"runbook__{service}_defaults"][options[name]]
                assert "default(omit, true)" in line, f"{name} may be empty but {line!r} passes '' on"
