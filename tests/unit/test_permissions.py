"""The permissions manifest covers everything the collectors call, every control's needs, and nothing that writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.cli import main
from shared.collect.exchange import EXCHANGE_SOURCES
from shared.collect.graph import GRAPH_SOURCES
from shared.controls import controls
from shared.tenants import permissions as manifest

ROOT = Path(__file__).resolve().parents[2]
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# The roles authwatch may ever ask for in a customer tenant: read-only ones.
READ_ONLY_ROLES = {"Global Reader", "View-Only Configuration", "View-Only Recipients"}
# Which built-in Exchange role holds which cmdlet (Microsoft365DSC's read roles; see shared/tenants/permissions.py).
CMDLET_ROLE = {"Get-OrganizationConfig": "View-Only Configuration", "Get-TransportConfig": "View-Only Configuration",
               "Get-AuthenticationPolicy": "View-Only Configuration", "Get-CASMailboxPlan": "View-Only Configuration",
               "Get-CASMailbox": "View-Only Recipients", "Get-User": "View-Only Recipients"}


def sdk_path(source) -> str:
    """The URL path the collector's msgraph-sdk request builder really calls, relative to /v1.0."""
    from kiota_abstractions.authentication import AnonymousAuthenticationProvider
    from msgraph import GraphServiceClient
    from msgraph.graph_request_adapter import GraphRequestAdapter

    client = GraphServiceClient(request_adapter=GraphRequestAdapter(AnonymousAuthenticationProvider()))
    template = source.builder(client).url_template
    assert template.startswith("{+baseurl}"), template
    return template.removeprefix("{+baseurl}").split("{", 1)[0]


@pytest.mark.parametrize("source", GRAPH_SOURCES, ids=lambda source: source.name)
def test_every_graph_source_the_collector_reads_is_in_the_manifest(source):
    """Inspected from the collector itself: the request builder's path (and the $batch URL) match the entry."""
    endpoint = manifest.BY_SOURCE.get(f"graph.{source.name}")
    assert endpoint is not None, f"graph.{source.name} is collected but missing from shared/tenants/permissions.py"
    assert (endpoint.method, endpoint.path) == ("GET", sdk_path(source))
    if source.batch_url:
        assert source.batch_url.split("?", 1)[0] == endpoint.path
    assert endpoint.permissions and endpoint.where == "customer"


@pytest.mark.parametrize("source", EXCHANGE_SOURCES, ids=lambda source: source.name)
def test_every_exchange_cmdlet_the_collector_runs_is_in_the_manifest_and_read_only(source):
    endpoint = manifest.BY_SOURCE.get(f"exchange.{source.name}")
    assert endpoint is not None, f"exchange.{source.name} is collected but missing from shared/tenants/permissions.py"
    assert endpoint.cmdlet == source.cmdlet
    assert source.cmdlet.startswith("Get-"), f"{source.cmdlet} is not a read"
    # Least privilege: the View-Only Exchange role that holds the cmdlet, not a directory-wide Entra role.
    assert set(endpoint.permissions) == {"Exchange.ManageAsApp", f"Exchange role: {CMDLET_ROLE[source.cmdlet]}"}


def test_global_reader_is_only_the_documented_fallback_for_the_exchange_roles():
    assert manifest.GLOBAL_READER.fallback_for == tuple(role.label for role in manifest.EXCHANGE_ROLES)
    assert all(manifest.GLOBAL_READER.label not in endpoint.permissions for endpoint in manifest.ENDPOINTS)
    needed = {label for endpoint in manifest.ENDPOINTS for label in endpoint.permissions}
    assert needed >= {role.label for role in manifest.EXCHANGE_ROLES}


def test_the_audit_log_asks_for_what_its_page_documents_and_no_licence():
    """List directoryAudits: "AuditLog.Read.All and Directory.Read.All" for applications; in every Entra edition."""
    audits = manifest.BY_SOURCE["graph.directoryAudits"]
    assert set(audits.permissions) == {"AuditLog.Read.All", "Directory.Read.All"} and audits.licence is None
    assert manifest.BY_SOURCE["graph.signIns"].licence == manifest.SIGNIN_LICENCE


def test_the_manifest_lists_no_endpoint_the_code_does_not_call():
    collected = {f"graph.{s.name}" for s in GRAPH_SOURCES} | {f"exchange.{s.name}" for s in EXCHANGE_SOURCES}
    attribution = {"attribution.auditLogQueries", "attribution.auditLogRecords"}
    assert set(manifest.BY_SOURCE) == collected | attribution | {"alerts.email"}
    # ... and the audit log query client calls exactly the paths listed for it.
    from shared.collect.audit_query import AuditQueryClient

    client = AuditQueryClient(None, "https://graph.microsoft.com/v1.0", None)  # type: ignore[arg-type]
    assert client.queries_url == "https://graph.microsoft.com/v1.0" + manifest.BY_SOURCE[
        "attribution.auditLogQueries"].path


@pytest.mark.parametrize("control", controls(), ids=lambda control: control.id)
def test_every_control_needs_only_manifest_permissions_and_declares_all_it_needs(control):
    declared = set(control.metadata.permissions)
    assert declared <= set(manifest.BY_LABEL), f"{control.id}: {declared - set(manifest.BY_LABEL)} not in manifest"
    for source in control.metadata.sources:
        assert source in manifest.BY_SOURCE, f"{control.id} reads {source}, which no manifest endpoint provides"
    derived = set(manifest.permissions_for(control.metadata.sources))
    assert derived <= declared, f"{control.id} reads sources that need {derived - declared} too"
    assert manifest.control_permissions()[control.id]["permissions"] == list(manifest.permissions_for(
        control.metadata.sources))


def test_nothing_in_a_customer_tenant_can_write():
    """Graph: *.Read.All app roles only; Exchange: Exchange.ManageAsApp, whose rights come from a read-only role."""
    for permission in manifest.customer_permissions():
        assert "write" not in permission.name.lower() and ".Send" not in permission.name, permission.name
        if permission.resource_app_id == manifest.GRAPH_APP_ID:
            assert permission.name.endswith(".Read.All"), permission.name
        elif permission.resource_app_id == manifest.EXCHANGE_APP_ID:
            assert permission.name == "Exchange.ManageAsApp"
        else:
            assert permission.kind in ("directoryRole", "exchangeRole") and permission.name in READ_ONLY_ROLES, \
                permission.name
    for endpoint in manifest.ENDPOINTS:
        if endpoint.where == "customer":
            searches = endpoint.path == "/security/auditLog/queries"  # a POST that creates a search, reads only
            assert endpoint.method == "GET" or searches or (endpoint.cmdlet or "").startswith("Get-"), \
                endpoint.request


def test_mail_send_belongs_to_the_operator_and_never_to_the_customer_consent():
    """Alert e-mail: Exchange RBAC for Applications scoped to the sender, never an Entra consent (which would be an
    unscoped grant: the two are a union)."""
    assert manifest.MAIL_SEND.where == "operator" and manifest.MAIL_SEND.kind == "exchangeApplicationRole"
    assert manifest.MAIL_SEND.resource_app_id is None and "Mail.Send" not in manifest.BY_LABEL
    assert manifest.BY_SOURCE["alerts.email"].where == "operator"
    consented = {access["id"] for resource in manifest.required_resource_access()
                 for access in resource["resourceAccess"]}
    assert manifest.MAIL_SEND.id not in consented
    assert consented == {p.id for p in manifest.customer_permissions() if p.kind == "application"}


def test_ids_are_the_well_known_guids():
    assert manifest.GRAPH_APP_ID == "00000003-0000-0000-c000-000000000000"
    assert manifest.EXCHANGE_APP_ID == "00000002-0000-0ff1-ce00-000000000000"
    assert manifest.EXCHANGE_MANAGE_AS_APP.id == "dc50a0fb-09a3-484d-be87-e023b12c6440"
    ids = [permission.id for permission in manifest.PERMISSIONS if permission.kind in ("application", "directoryRole")]
    assert all(GUID.match(value) for value in ids) and len(set(ids)) == len(ids)
    assert manifest.DIRECTORY_READ.id == "7ab1d382-f21e-4acd-a863-ba3e13f7da61"
    # Exchange's roles are known by name in each tenant; they have no well-known id.
    assert all(permission.id is None for permission in manifest.PERMISSIONS if permission.kind.startswith("exchange"))
    assert len(manifest.BY_LABEL) == len(manifest.PERMISSIONS)


def test_the_simulator_gates_each_graph_source_on_the_manifest_permission():
    """The local Microsoft cloud and the manifest agree on which permission opens which Graph endpoint."""
    from simulator.graph import ROUTES

    for endpoint in manifest.ENDPOINTS:
        if endpoint.source.startswith("graph."):
            for route in (route for route in ROUTES if route.key == endpoint.source):
                assert set(endpoint.permissions) & set(route.permissions), endpoint.source
                assert {permission for permission, _ in route.also} <= set(endpoint.permissions), endpoint.source


def test_the_app_registration_file_for_azd_matches_the_manifest():
    """infra/app-registration.json (used by the azd hook) is `authwatch permissions --format app-registration`."""
    on_disk = json.loads((ROOT / "infra" / "app-registration.json").read_text(encoding="utf-8"))
    assert on_disk == manifest.required_resource_access()


def test_cli_json_is_the_manifest(capsys):
    assert main(["permissions", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document == json.loads(json.dumps(manifest.manifest()))
    assert document["resources"]["Microsoft Graph"] == manifest.GRAPH_APP_ID
    assert {p["name"] for p in document["permissions"]} >= {"Policy.Read.All", "AuditLog.Read.All",
                                                             "SharePointTenantSettings.Read.All",
                                                             "Directory.Read.All",
                                                             "Exchange.ManageAsApp", "View-Only Configuration",
                                                             "View-Only Recipients", "Global Reader",
                                                             "Application Mail.Send"}
    assert set(document["controls"]) == {control.id for control in controls()}


def test_cli_table_shows_every_permission_with_its_ids(capsys):
    assert main(["permissions"]) == 0
    out = capsys.readouterr().out
    for permission in manifest.PERMISSIONS:
        assert permission.name in out and (permission.id or "(by name)") in out
    assert "no Entra Mail.Send consent" in out
    assert manifest.GRAPH_APP_ID in out and manifest.EXCHANGE_APP_ID in out
    for control in controls():
        assert control.id in out
