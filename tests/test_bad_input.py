"""Every bad input refused in one line, and no secret ever printed or written (issue 13).

Stack files as a user or an attacker would write them: YAML that is not a stack's config (syntax,
types, duplicates, tags, alias bombs), free text in every field, ranges that open the model or the
control plane to the internet, and secrets in every value. Each must end in one line naming the
file, line and column (or the key), before any resource is registered, with no traceback, and
nothing secret-shaped in stdout, stderr or build/.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components import tokens
from components.errors import ConfigError, StackFileError, for_user, mask
from offline_plan import __main__ as plan_cli
from offline_plan.harness import SECRET_MARKER, PlanMocks, RecordingMonitor, read_stack_config, run_program

ROOT = Path(__file__).resolve().parent.parent
HF = "hf_" + "Q7x" * 12  # shaped like a Hugging Face token
SK = "sk-proj-" + "Zt9_" * 8  # shaped like an API key
# The valid base: dev's shape with one model of each kind of field.
BASE: dict[str, Any] = {
    "gcp:project": "acme-llm-test",
    "gcp:region": "us-east5",
    "tpu-serving:cluster": {
        "name": "llm-test",
        "mode": "standard",
        "zones": ["us-east5-b"],
        "systemMachineType": "e2-standard-4",
        "authorizedNetworks": [{"name": "corp-vpn", "cidr": "198.51.100.0/24"}],
    },
    "tpu-serving:bucket": {"location": "US-EAST5"},
    "tpu-serving:protectData": False,
    "tpu-serving:hfToken": {"secure": "v1:AAAA"},
    "tpu-serving:models": [
        {
            "name": "llama-8b",
            "hfId": "meta-llama/Llama-3.1-8B",
            "topology": "1x1",
            "imageTag": "v0.22.0",
            "capacity": "reservation",
            "reservation": "tpu-res-1",
            "exposure": "external",
            "sourceRanges": ["203.0.113.0/24"],
        }
    ],
    "tpu-serving:apiKey": {"secure": "v1:BBBB"},
}


def _project(tmp_path: Path, text: str | bytes, stack: str = "t") -> Path:
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return tmp_path


def _stack_text(config: dict[str, Any]) -> str:
    return yaml.safe_dump({"config": config}, sort_keys=False, allow_unicode=True)


def _refusal(tmp_path: Path, text: str | bytes) -> ConfigError:
    """The stack file read as `make plan` reads it and run as the program: must raise one ConfigError
    before any resource is registered."""
    root = _project(tmp_path, text)
    monitor = RecordingMonitor(PlanMocks())
    with pytest.raises(ConfigError) as raised:
        project, config, secret_keys, _ = read_stack_config("t", root)
        run_program("t", config, secret_keys, project=project, monitor=monitor)
    assert monitor.registrations == [], [r.name for r in monitor.registrations]
    message = str(raised.value)
    assert "\n" not in message and "\r" not in message and "Traceback" not in message
    return raised.value


@pytest.mark.slow
def test_the_base_plans() -> None:
    """The base every case edits is valid, so each refusal below is the edit's."""
    config = copy.deepcopy(BASE)
    flat = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items() if not isinstance(v, dict) or "secure" not in v}
    flat |= {"tpu-serving:hfToken": SECRET_MARKER, "tpu-serving:apiKey": SECRET_MARKER}
    run = run_program("t", flat, ["tpu-serving:hfToken", "tpu-serving:apiKey"], project="tpu-serving")
    assert len(run.registrations) > 10


# --- YAML that is not a stack's config: file, line and column -------------------------------------
BOMB = "".join(f"{a}: &{a} [{', '.join([f'*{b}'] * 10 if b else ['x'] * 10)}]\n" for a, b in zip("abcdefgh", ["", *"abcdefg"], strict=True))
YAML_CASES = [
    ("unclosed [", "config:\n  gcp:project: [a\n", "3:1", "expected ',' or ']'"),
    ("a tab", "config:\n\tgcp:project: x\n", "2:1", "'\\t'"),
    ("list at the top", "- a\n- b\n", "1:1", "top level must be a mapping"),
    ("config is a list", "config:\n  - a\n", "2:3", "`config:` must be a mapping"),
    ("config is text", "config: yes please\n", "1:9", "`config:` must be a mapping"),
    ("python tag", "config:\n  x: !!python/object/apply:os.system [id]\n", "2:6", "tag !!python/object/apply:os.system"),
    ("custom tag", "config:\n  x: !Ref y\n", "2:6", "tag !Ref"),
    ("timestamp", "config:\n  gcp:project: 2024-01-01\n", "2:16", "!!timestamp"),
    ("binary", "config:\n  x: !!binary aGk=\n", "2:6", "!!binary"),
    ("duplicate key", "config:\n  tpu-serving:protectData: true\n  tpu-serving:protectData: false\n", "3:3", "duplicate key"),
    ("duplicate nested key", "config:\n  tpu-serving:cluster:\n    name: a\n    name: b\n", "4:5", "first on line 3"),
    ("key with and without namespace", "config:\n  protectData: true\n  tpu-serving:protectData: false\n", "3:3", "set twice"),
    ("recursive alias", "config:\n  x: &a [*a]\n", "2:6", "contains it"),
    ("alias bomb", BOMB + "config:\n  x: *h\n", "4:4", f"more than {10_000} values"),
    ("control character", 'config:\n  x: "\x01"\n', "2:7", "U+0001"),
    ("two documents", "config: {}\n---\nconfig: {}\n", "2:1", "single document"),
    ("non-string key", "config:\n  1: x\n", "2:3", "namespace:name"),
    ("deep nesting", "config:\n  x: " + "[" * 5000 + "\n", "", "nested deeper"),
]


@pytest.mark.parametrize(("case", "text", "where", "says"), YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_yaml_that_is_not_config_is_one_line_with_line_and_column(tmp_path: Path, case: str, text: str, where: str, says: str) -> None:
    started = time.monotonic()
    error = _refusal(tmp_path, text)
    assert isinstance(error, StackFileError), error
    assert str(error).startswith(f"Pulumi.t.yaml:{where}" if where else "Pulumi.t.yaml"), str(error)
    assert "config error:" in str(error) and says in str(error), str(error)
    assert time.monotonic() - started < 5, f"{case} took {time.monotonic() - started:.1f} s"


def test_non_utf8_names_the_byte_and_where(tmp_path: Path) -> None:
    error = _refusal(tmp_path, b"config:\n  gcp:project: \xff\xfe\n")
    assert str(error) == "Pulumi.t.yaml:2:16: config error: not UTF-8 (byte 0xff); save the file as UTF-8"


# --- free text, keys, zones, ranges ---------------------------------------------------------------
def _edited(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    config = copy.deepcopy(BASE)
    target: Any = config
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return config


MODEL = ("tpu-serving:models", 0)
CLUSTER = ("tpu-serving:cluster",)
VALUE_CASES: list[tuple[str, tuple[str | int, ...], Any, str, str]] = [
    ("tag with a space", (*MODEL, "imageTag"), "v0.22.0 x", "models[0].imageTag", "not a Docker tag"),
    ("tag with ;", (*MODEL, "imageTag"), "v0.22.0;id", "models[0].imageTag", "not a Docker tag"),
    ("tag with ../", (*MODEL, "imageTag"), "../v0.22.0", "models[0].imageTag", "not a Docker tag"),
    ("tag with a zero-width space", (*MODEL, "imageTag"), "v0.22.0\u200b", "models[0].imageTag", "not a Docker tag"),
    ("tag with a newline", (*MODEL, "imageTag"), "v0.22.0\nx", "models[0].imageTag", "not a Docker tag"),
    ("moving tag latest", (*MODEL, "imageTag"), "latest", "models[0].imageTag", "not a release version"),
    ("moving tag nightly", (*MODEL, "imageTag"), "nightly", "models[0].imageTag", "not a release version"),
    ("moving tag main", (*MODEL, "imageTag"), "main", "models[0].imageTag", "not a release version"),
    ("moving tag dev", (*MODEL, "imageTag"), "dev", "models[0].imageTag", "not a release version"),
    ("a branch-like tag", (*MODEL, "imageTag"), "nightly-2024", "models[0].imageTag", "not a release version"),
    ("short digest", (*MODEL, "imageTag"), "v0.22.0@sha256:abc", "models[0].imageTag", "sha256:<64 hex>"),
    ("reservation with shell", (*MODEL, "reservation"), "r; rm -rf /", "models[0].reservation", "reservation name"),
    ("reservation in capitals", (*MODEL, "reservation"), "My_Res", "models[0].reservation", "reservation name"),
    ("system machine type", (*CLUSTER, "systemMachineType"), "e2 standard;4", "cluster.systemMachineType", "machine type"),
    ("bucket location", ("tpu-serving:bucket", "location"), "us east 5", "bucket.location", "Cloud Storage location"),
    ("bucket location path", ("tpu-serving:bucket", "location"), "../US", "bucket.location", "Cloud Storage location"),
    ("network display name", (*CLUSTER, "authorizedNetworks", 0, "name"), "vpn\n$(id)", "authorizedNetworks[0].name", "display name"),
    ("hfId homoglyph", (*MODEL, "hfId"), "meta-llama/Llama-3.1-8\u0412", "models[0].hfId", "ASCII"),
    ("hfId ..", (*MODEL, "hfId"), "meta-llama/../Llama", "models[0].hfId", "no '--' or '..'"),
    ("hfId --", (*MODEL, "hfId"), "meta--llama/Llama", "models[0].hfId", "no '--' or '..'"),
    ("duplicate cluster zones", (*CLUSTER, "zones"), ["us-east5-b", "us-east5-b"], "cluster.zones[1]", "listed twice"),
    ("duplicate model zones", (*MODEL, "zones"), ["us-east5-b", "us-east5-b"], "models[0].zones[1]", "listed twice"),
    ("two halves of the internet", (*MODEL, "sourceRanges"), ["0.0.0.0/1", "128.0.0.0/1"], "sourceRanges", "whole internet"),
    ("internet minus private", (*MODEL, "sourceRanges"), ["0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/2"], "sourceRanges", "whole internet"),
    ("internet in IPv6", (*MODEL, "sourceRanges"), ["2000::/4", "3000::/4"], "sourceRanges", "whole internet"),
    ("broad public range", (*MODEL, "sourceRanges"), ["8.0.0.0/8"], "sourceRanges", "allowBroadRanges: true"),
    (
        "authorized 0.0.0.0/0",
        (*CLUSTER, "authorizedNetworks"),
        [{"name": "all", "cidr": "0.0.0.0/0"}],
        "cluster.authorizedNetworks",
        "whole internet",
    ),
    (
        "authorized halves",
        (*CLUSTER, "authorizedNetworks"),
        [{"name": "a", "cidr": "0.0.0.0/1"}, {"name": "b", "cidr": "128.0.0.0/1"}],
        "cluster.authorizedNetworks",
        "whole internet",
    ),
    (
        "authorized broad",
        (*CLUSTER, "authorizedNetworks"),
        [{"name": "a", "cidr": "34.0.0.0/15"}],
        "cluster.authorizedNetworks",
        "more than a /16",
    ),
    ("authorized empty", (*CLUSTER, "authorizedNetworks"), [], "cluster.authorizedNetworks", "private ranges"),
    ("gcp provider typo", ("gcp:regoin",), "us-east5", "gcp:regoin", "did you mean region?"),
    ("plain hfToken", ("tpu-serving:hfToken",), HF, "hfToken", "--secret hfToken"),
    ("plain apiKey", ("tpu-serving:apiKey",), "just-a-key-in-plain-text", "apiKey", "--secret apiKey"),
    ("token under a misspelt key", ("tpu-serving:hftoken",), HF, "tpu-serving:hftoken", "did you mean hfToken?"),
]


@pytest.mark.parametrize(("case", "path", "value", "key", "says"), VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_bad_values_are_refused_in_one_line(
    tmp_path: Path, case: str, path: tuple[str | int, ...], value: Any, key: str, says: str
) -> None:
    error = _refusal(tmp_path, _stack_text(_edited(path, value)))
    message = str(error)
    assert key in error.key and says in message, message
    assert HF not in message and HF[:12] not in message


def test_broad_public_ranges_pass_with_the_acknowledgement(tmp_path: Path) -> None:
    config = _edited((*MODEL, "sourceRanges"), ["8.0.0.0/8"])
    config["tpu-serving:models"][0]["allowBroadRanges"] = True
    project, flat, secret_keys, _ = read_stack_config("t", _project(tmp_path, _stack_text(config)))
    run = run_program("t", flat, secret_keys, project=project)
    [service] = [r for r in run.registrations if r.type == tokens.K8S_SERVICE and r.inputs["spec"].get("type") == "LoadBalancer"]
    assert service.inputs["spec"]["loadBalancerSourceRanges"] == ["8.0.0.0/8"]
    # ... and the whole internet is refused even then.
    config["tpu-serving:models"][0]["sourceRanges"] = ["0.0.0.0/1", "128.0.0.0/1"]
    assert "whole internet" in str(_refusal(tmp_path, _stack_text(config)))


def test_a_release_tag_with_its_digest_is_accepted(tmp_path: Path) -> None:
    digest = "v0.22.0@sha256:" + "0123456789abcdef" * 4
    project, flat, secret_keys, _ = read_stack_config("t", _project(tmp_path, _stack_text(_edited((*MODEL, "imageTag"), digest))))
    run = run_program("t", flat, secret_keys, project=project)
    images = [
        c["image"]
        for r in run.registrations
        if r.inputs.get("kind") == "Deployment"
        for c in r.inputs["spec"]["template"]["spec"]["containers"]
    ]
    assert any(image.endswith(":" + digest) for image in images), images


def test_without_authorized_networks_the_control_plane_answers_only_private_ranges(tmp_path: Path) -> None:
    config = copy.deepcopy(BASE)
    del config["tpu-serving:cluster"]["authorizedNetworks"]
    project, flat, secret_keys, _ = read_stack_config("t", _project(tmp_path, _stack_text(config)))
    [cluster] = [r for r in run_program("t", flat, secret_keys, project=project).registrations if r.type == tokens.CLUSTER]
    blocks = cluster.inputs["masterAuthorizedNetworksConfig"]["cidrBlocks"]
    assert {b["cidrBlock"] for b in blocks} == {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}


# --- secrets in every field (generated) -----------------------------------------------------------
def _string_paths(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    if isinstance(value, dict) and "secure" not in value:
        return [p for k, v in value.items() for p in _string_paths(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _string_paths(v, (*path, i))]
    return [path] if isinstance(value, str) else []


STRING_PATHS = _string_paths(BASE)
SECRETS = st.sampled_from((HF, SK, "hf_" + "a" * 20, "sk-" + "B" * 20))
FUZZ = settings(derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck), print_blob=False)


@pytest.mark.slow
@settings(FUZZ, max_examples=60)
@given(st.sampled_from(STRING_PATHS), SECRETS, st.sampled_from(("", "x", "a/", "v0.22.0-")), st.booleans())
def test_a_token_in_any_field_is_refused_and_never_shown(path: tuple[str | int, ...], secret: str, prefix: str, as_key: bool) -> None:
    """In every string value, or as a key beside it: refused, shown only masked."""
    config = copy.deepcopy(BASE)
    target: Any = config
    for step in path[:-1]:
        target = target[step]
    if as_key and isinstance(target, dict):
        target[prefix + secret] = "x"
    else:
        target[path[-1]] = prefix + secret
    flat = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items() if not (isinstance(v, dict) and "secure" in v)}
    flat |= {"tpu-serving:hfToken": SECRET_MARKER, "tpu-serving:apiKey": SECRET_MARKER}
    monitor = RecordingMonitor(PlanMocks())
    with pytest.raises(ConfigError) as raised:
        run_program("t", flat, ["tpu-serving:hfToken", "tpu-serving:apiKey"], project="tpu-serving", monitor=monitor)
    assert monitor.registrations == []
    assert secret[3:11] not in str(raised.value), str(raised.value)


HOSTILE = st.text(alphabet=st.sampled_from("aZ09.-_/@:; \n\t\u200b\u0430$(){}`'\"\\"), max_size=20)
FREE_TEXT = {
    (*MODEL, "imageTag"): r"v?[0-9]+\.[0-9]+\.[0-9]+(?:[.-]?post[0-9]+|rc[0-9]+)?(?:@sha256:[0-9a-f]{64})?",
    (*MODEL, "reservation"): r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?",
    (*MODEL, "hfId"): r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?/[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?",
    (*CLUSTER, "systemMachineType"): r"[a-z][a-z0-9]*(-[a-z0-9]+){1,4}",
    (*CLUSTER, "authorizedNetworks", 0, "name"): r"[A-Za-z0-9]([A-Za-z0-9 ._()-]{0,61}[A-Za-z0-9._()-])?",
}


@pytest.mark.slow
@settings(FUZZ, max_examples=80)
@given(st.sampled_from(sorted(FREE_TEXT, key=str)), HOSTILE)
def test_free_text_outside_its_grammar_is_refused(path: tuple[str | int, ...], text: str) -> None:
    import re

    from components import config as stack_config

    raw = {k.split(":", 1)[1]: v for k, v in _edited(path, text).items() if not (isinstance(v, dict) and "secure" in v)}
    raw["project"], raw["region"] = raw.pop("project"), raw.pop("region")
    valid = re.fullmatch(FREE_TEXT[path], text) is not None and not ("--" in text or ".." in text)
    try:
        stack_config.load_stack_config(raw, "t")
    except ConfigError as error:
        assert "\n" not in str(error)
        return
    assert valid, f"accepted {text!r} at {path}"


# --- the CLI: exit codes, masking, build/ ---------------------------------------------------------
def _cli(tmp_path: Path, capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = plan_cli.main(["--stack", "t", "--project-dir", str(tmp_path), "--out", str(tmp_path / "build"), *args])
    out, err = capfd.readouterr()
    return code, out, err


@pytest.mark.slow
def test_cli_refuses_a_token_with_exit_2_and_removes_the_stale_build(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    _project(tmp_path, _stack_text(_edited((*MODEL, "reservation"), HF)))
    (tmp_path / "__main__.py").write_text((ROOT / "__main__.py").read_text())
    stale = tmp_path / "build" / "t" / "plan.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    code, out, err = _cli(tmp_path, capfd)
    assert code == 2
    assert err.strip().splitlines() == [err.strip()], err
    assert err.startswith("Pulumi.t.yaml:") and "models[0].reservation = 'hf_[masked]'" in err, err
    assert HF[3:11] not in out + err and "Traceback" not in err
    assert not (tmp_path / "build" / "t").exists(), "a failed plan left the previous build/<stack>/"


@pytest.mark.slow
def test_plan_secret_env_supplies_a_missing_token_and_it_is_never_written(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    assert "tpu-serving:hfToken" not in dev
    _project(tmp_path, _stack_text(dev))
    (tmp_path / "__main__.py").write_text((ROOT / "__main__.py").read_text())
    monkeypatch.setenv("PLAN_SECRET_HFTOKEN", HF)
    code, out, err = _cli(tmp_path, capfd, "--policy-config", str(ROOT / "policies/config/dev.json"))
    assert code == 0, out + err
    assert "secret value taken from $PLAN_SECRET_HFTOKEN" in out
    written = "".join(p.read_text() for p in (tmp_path / "build").rglob("*") if p.is_file())
    assert HF[3:11] not in out + err + written
    [secret] = [p for p in (tmp_path / "build").rglob("secret-hf-token.yaml")]
    assert yaml.safe_load(secret.read_text())["stringData"] == {"token": SECRET_MARKER}
    plan = json.loads((tmp_path / "build" / "t" / "plan.json").read_text())
    assert plan["policyResults"]["config"] == "policies/config/dev.json"


def test_bad_stack_name_and_missing_policy_config_are_bad_input(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code = plan_cli.main(["--stack", "../x", "--out", str(tmp_path)])
    assert code == 2 and "--stack = '../x'" in capfd.readouterr().err
    code = plan_cli.main(["--stack", "dev", "--out", str(tmp_path), "--policy-config", str(tmp_path / "none.json")])
    assert code == 2 and "--policy-config" in capfd.readouterr().err


def test_masking_and_make_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    token = "hf_" + "m" * 25  # not one registered by another test's PLAN_SECRET_HFTOKEN
    assert mask(f"a {token} b {SK}") == "a hf_[masked] b sk-[masked]"
    monkeypatch.delenv("TPU_SERVING_FROM_MAKE", raising=False)
    assert for_user("--max-model-len = 'x'") == "--max-model-len = 'x'"
    monkeypatch.setenv("TPU_SERVING_FROM_MAKE", "1")
    assert for_user("--max-model-len = 'x'; pass --config-json PATH") == "MAX_MODEL_LEN = 'x'; pass CONFIG_JSON=PATH"


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    # -o: never rebuild the virtualenv from a test.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    return subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.slow
def test_make_names_make_variables_and_shows_the_programs_exit_code() -> None:
    result = _make("plan", "STACK=no-such-stack")
    assert result.returncode == 2
    assert "(STACK)" in result.stderr and "--stack" not in result.stderr
    assert "Error 2" in result.stderr, "make's last line carries the program's exit code"


@pytest.mark.slow
def test_make_json_output_parses() -> None:
    result = _make("recommend", "MODEL=meta-llama/Llama-3.1-8B", "JSON=1")
    assert result.returncode == 0, result.stderr
    json.loads(result.stdout)
