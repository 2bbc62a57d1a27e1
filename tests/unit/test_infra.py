"""infra/ deploys what the code needs: every app setting the code reads is set by the Bicep (or documented below as
local / test / CLI only), storage and telemetry are identity-based, azd finds the app, and every checkov
suppression says why. Bicep is read as text: the Bicep CLI cannot be installed here (checkov validates it in CI).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
FUNCTION_APP = INFRA / "modules" / "function-app.bicep"
CODE = [ROOT / "function_app.py", *sorted((ROOT / "functions").glob("*.py")), *sorted((ROOT / "shared").rglob("*.py"))]

# Settings the code reads that must NOT be set on Azure, and why. Everything else it reads must be in the Bicep.
NOT_ON_AZURE = {
    "AUTHWATCH_STORAGE_CONNECTION_STRING": "a connection string carries an account key; on Azure storage is "
                                           "identity-based (AzureWebJobsStorage__* and AUTHWATCH_STORAGE_TABLE_URL / "
                                           "AUTHWATCH_STORAGE_QUEUE_URL with the managed identity)",
    "AUTHWATCH_CA_BUNDLE": "trusts the local simulator's throw-away CA (tests, demo); never on Azure",
    "AUTHWATCH_ALLOW_LOOPBACK_WEBHOOKS": "lets webhooks target 127.0.0.1 over http: tests and local receivers only",
    "AUTHWATCH_CLIENT_ID": "`authwatch collect` (CLI): the app to sign in as from a shell",
    "AUTHWATCH_CLIENT_SECRET": "`authwatch collect` (CLI): a secret from the shell's environment, never a setting",
    "AUTHWATCH_DEMO_SECRET": "`authwatch serve` (local demo against the simulator) only",
    "AUTHWATCH_DEMO_MSP_SECRET": "the demo's MSP story (against the simulator) only",
    "AUTHWATCH_PARTNER_TENANT_ID": "`authwatch tenants discover` (CLI, the operator's shell): the partner tenant",
    "AUTHWATCH_PARTNER_CENTER_URL": "`authwatch tenants discover` (CLI) against the simulator; Partner Center's public "
                                    "address is the default, and the function app never calls it",
}
# Read by the Functions host or an SDK rather than by authwatch's code, but required on Azure all the same.
PLATFORM = ("AzureWebJobsStorage__accountName", "AzureWebJobsStorage__credential", "AzureWebJobsStorage__clientId",
            "APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "AZURE_CLIENT_ID")
# Flex Consumption refuses these (the runtime is functionAppConfig.runtime; the package a blob container).
REFUSED_ON_FLEX = ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
                   "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE", "AzureWebJobsStorage")

_LITERAL = re.compile(r"""["']((?:AUTHWATCH|APPLICATIONINSIGHTS)_[A-Z0-9_]+)["']""")
_BINDING = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%")
_KEY = re.compile(r"^\s*'?([A-Za-z_][A-Za-z0-9_]*)'?\s*:", re.M)


def strip_comments(text: str) -> str:
    return "\n".join(line.split("//", 1)[0] if "//" in line and "'" not in line.split("//", 1)[0] else line
                     for line in text.splitlines())


def object_block(text: str, opening: str) -> str:
    """The body of the object literal that starts at `opening` (which ends with "{"), braces matched."""
    start = text.index(opening) + len(opening)
    depth, index = 1, start
    while depth:
        char = text[index]
        depth += {"{": 1, "}": -1}.get(char, 0)
        index += 1
    return text[start:index - 1]


def top_level_keys(body: str) -> set[str]:
    """Keys at the first level of an object body (nested objects' keys left out)."""
    keys, depth = set(), 0
    for line in strip_comments(body).splitlines():
        if depth == 0:
            match = _KEY.match(line)
            if match:
                keys.add(match.group(1))
        depth += line.count("{") + line.count("[") - line.count("}") - line.count("]")
    return keys


def bicep_app_settings() -> set[str]:
    return (top_level_keys(object_block(MAIN.read_text(encoding="utf-8"), "var appSettings = {"))
            | top_level_keys(object_block(FUNCTION_APP.read_text(encoding="utf-8"), "var platformSettings = {")))


def settings_read_by_code() -> dict[str, list[str]]:
    """Every AUTHWATCH_* / APPLICATIONINSIGHTS_* name written as a string literal in the deployed code, and every
    %NAME% binding expression in functions/ (timer schedules), with where it appears."""
    found: dict[str, list[str]] = {}
    for path in CODE:
        text = path.read_text(encoding="utf-8")
        names = set(_LITERAL.findall(text))
        if path.parent.name == "functions" or path.name == "function_app.py":
            names |= set(_BINDING.findall(text))
        for name in names:
            found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


def test_the_scan_finds_what_it_should():
    """A guard on the scanner itself: the settings every version of the app has are found."""
    found = settings_read_by_code()
    for name in ("AUTHWATCH_SCHEDULE", "AUTHWATCH_HISTORY_DAYS", "AUTHWATCH_GRAPH_URL", "AUTHWATCH_CA_BUNDLE",
                 "APPLICATIONINSIGHTS_CONNECTION_STRING", "AUTHWATCH_APP_CLIENT_ID"):
        assert name in found, name
    assert {"AUTHWATCH_SCHEDULE", "AUTHWATCH_GRAPH_URL", "AzureWebJobsStorage__accountName"} <= bicep_app_settings()


def test_every_setting_the_code_reads_is_set_by_the_bicep():
    set_in_bicep = bicep_app_settings()
    missing = {name: where for name, where in settings_read_by_code().items()
               if name not in set_in_bicep and name not in NOT_ON_AZURE}
    assert not missing, ("read by the code but not set in infra/main.bicep (var appSettings) — add it there, or to "
                         f"NOT_ON_AZURE in this test with the reason: {missing}")


def test_local_only_settings_stay_off_azure():
    assert not set(NOT_ON_AZURE) & bicep_app_settings()


def test_platform_settings_are_identity_based_and_flex_compatible():
    settings = bicep_app_settings()
    assert set(PLATFORM) <= settings
    assert not set(REFUSED_ON_FLEX) & settings
    text = FUNCTION_APP.read_text(encoding="utf-8")
    assert "AzureWebJobsStorage__credential: 'managedidentity'" in text
    assert "Authorization=AAD" in text


def test_no_key_or_secret_anywhere_in_infra():
    for path in INFRA.rglob("*.bicep"):
        text = path.read_text(encoding="utf-8")
        for forbidden in ("listKeys(", "AccountKey=", "SharedAccessSignature", "InstrumentationKey=", "listSecrets("):
            assert forbidden not in text, f"{path.name}: {forbidden}"
    storage = (INFRA / "modules" / "storage.bicep").read_text(encoding="utf-8")
    assert "allowSharedKeyAccess: false" in storage and "allowBlobPublicAccess: false" in storage
    monitoring = (INFRA / "modules" / "monitoring.bicep").read_text(encoding="utf-8")
    assert "DisableLocalAuth: true" in monitoring


def test_the_app_is_flex_consumption_python_311_as_the_managed_identity():
    text = FUNCTION_APP.read_text(encoding="utf-8")
    assert "name: 'FC1'" in text and "tier: 'FlexConsumption'" in text
    assert re.search(r"runtime: \{\s*name: 'python'\s*version: '3\.11'", text)
    assert "type: 'UserAssigned'" in text and "type: 'UserAssignedIdentity'" in text
    assert "'azd-service-name': 'api'" in text


def test_the_identity_gets_exactly_the_data_plane_roles_it_needs():
    rbac = (INFRA / "modules" / "rbac.bicep").read_text(encoding="utf-8")
    roles = set(re.findall(r"^\s*(\w+): '([0-9a-f-]{36})'", rbac, re.M))
    assert roles == {("storageBlobDataOwner", "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"),
                     ("storageQueueDataContributor", "974c5e8b-45b9-4653-ba55-5f855dd0fb88"),
                     ("storageTableDataContributor", "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"),
                     ("monitoringMetricsPublisher", "3913510d-42f4-4e42-8a64-420c390055eb")}
    vault = (INFRA / "modules" / "keyvault.bicep").read_text(encoding="utf-8")
    assert re.findall(r"'([0-9a-f-]{36})'", vault) == ["4633458b-17de-408a-b874-0445c86b69e6"]  # Secrets User only
    assert "enableRbacAuthorization: true" in vault


@pytest.mark.parametrize("path", sorted(INFRA.rglob("*.bicep")), ids=lambda path: path.name)
def test_every_checkov_suppression_is_justified_inline(path):
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if "checkov:skip" in line:
            match = re.search(r"checkov:skip=(CKV2?_[A-Z]+_\d+):\s*(.+)$", line)
            assert match and len(match.group(2)) >= 40, f"{path.name}:{number}: suppression without a reason"


def test_modules_referenced_by_main_exist():
    for module in re.findall(r"module \w+ '([^']+)'", MAIN.read_text(encoding="utf-8")):
        assert (INFRA / module).is_file(), module


def test_azd_parameters_match_main_bicep():
    params = set(re.findall(r"^param (\w+) ", MAIN.read_text(encoding="utf-8"), re.M))
    document = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))
    assert set(document["parameters"]) <= params
    assert {"environmentName", "location", "appClientId"} <= set(document["parameters"])


def test_azure_yaml_deploys_the_repository_root_as_a_python_function_app():
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert re.search(r"^services:\n  api:\n(    .*\n)*?    language: python", text, re.M)
    assert "    host: function" in text and "    project: ." in text
    assert "  path: infra" in text
    hook = re.search(r"run: (\./infra/scripts/[\w.-]+)", text).group(1)
    assert (ROOT / hook).is_file()


def test_default_schedules_are_six_field_ncrontab():
    text = MAIN.read_text(encoding="utf-8")
    for name in ("schedule", "digestSchedule"):
        default = re.search(rf"^param {name} string = '([^']+)'", text, re.M).group(1)
        assert len(default.split()) == 6, (name, default)
