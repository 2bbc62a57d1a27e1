"""Routing rules and channel configuration are validated when loaded: every error names the setting, the rule or
channel, and the field; nothing quotes a setting's value."""

from __future__ import annotations

import json

import pytest

from shared.alerts import AlertConfigError, AlertSettings, TenantInfo, channel_types, parse_routing, register_channel
from shared.alerts.channels import Channel, build_channel

TENANT = "8c1d0f4e-1a2b-4c3d-8e9f-00000000abcd"
OTHER = "2f0e5a1b-0000-4000-8000-000000000002"
CHANNELS = ("soc", "ops", "siem")


def event(kind="control.failed", severity="high", **extra):
    return {"id": "e1", "type": kind, "severity": severity, "tenantId": TENANT, "at": "2026-11-23T08:00:00Z",
            "control": "exo_smtp_auth_disabled", **extra}


def routing(data):
    return parse_routing(data, channels=CHANNELS)[0]


GOLD = TenantInfo(TENANT, "Contoso", tags=("Gold", "emea"))
PLAIN = TenantInfo(OTHER, "Fabrikam")


# --- matching -----------------------------------------------------------------------------------------------------------

def test_routes_match_by_tenant_tag_severity_and_event_type_and_the_default_catches_the_rest():
    rules = routing({"routes": [
        {"name": "gold", "tags": ["gold"], "minSeverity": "medium", "channels": ["soc"]},
        {"name": "contoso", "tenants": [TENANT.upper()], "events": ["enforcement.gap"], "channels": ["siem"]},
    ], "default": {"channels": ["ops"], "minSeverity": "high"}})
    assert rules.channels_for(event(), GOLD) == ("soc",)
    assert rules.channels_for(event("enforcement.gap"), GOLD) == ("soc", "siem")
    assert rules.channels_for(event(severity="low"), GOLD) == ()  # no route, and the default wants high
    assert rules.channels_for(event(), PLAIN) == ("ops",)
    assert rules.channels_for(event(severity="medium"), PLAIN) == ()


def test_informational_events_only_when_a_route_opts_in():
    rules = routing({"routes": [{"name": "siem", "channels": ["siem"], "informational": True},
                                {"name": "windows", "events": ["enforcement.window_started"], "channels": ["soc"]}],
                     "default": {"channels": ["ops"]}})
    for kind in ("enforcement.window_started", "enforcement.confirmed", "drift.strengthened"):
        expected = ("siem", "soc") if kind == "enforcement.window_started" else ("siem",)
        assert rules.channels_for(event(kind, "low"), PLAIN) == expected
    quiet = routing({"default": {"channels": ["ops"]}})
    assert quiet.channels_for(event("enforcement.confirmed", "low"), PLAIN) == ()
    assert quiet.channels_for(event("drift.strengthened", "low"), PLAIN) == ()
    assert quiet.channels_for(event("drift.weakened", "medium"), PLAIN) == ("ops",)


def test_resolutions_pass_the_severity_filter():
    rules = routing({"default": {"channels": ["ops"], "minSeverity": "high"}})
    assert rules.channels_for(event("tenant.recovered", "low"), PLAIN) == ("ops",)
    assert rules.channels_for(event("control.recovered", "low"), PLAIN) == ("ops",)
    assert rules.channels_for(event("control.unknown", "low"), PLAIN) == ()


def test_digest_channels_respect_the_digest_flag():
    rules = routing({"routes": [{"name": "a", "channels": ["soc"]},
                                {"name": "b", "channels": ["siem"], "digest": False}]})
    assert rules.channels_for(event(), PLAIN) == ("soc", "siem")
    assert rules.digest_channels(event(), PLAIN) == ("soc",)


def test_without_routes_every_channel_gets_every_non_informational_event():
    settings = AlertSettings.from_env({"AUTHWATCH_ALERT_CHANNELS": json.dumps({
        "a": {"type": "webhook", "url": "https://a.example.com/x"},
        "b": {"type": "webhook", "url": "https://b.example.com/x"}})})
    assert settings.routing.channels_for(event(severity="low"), PLAIN) == ("a", "b")
    assert settings.routing.channels_for(event("enforcement.window_started", "low"), PLAIN) == ()


def test_a_tenant_routing_replaces_or_inherits():
    settings = AlertSettings.from_env({
        "AUTHWATCH_ALERT_CHANNELS": json.dumps({name: {"type": "webhook", "url": f"https://{name}.example.com/x"}
                                                for name in CHANNELS}),
        "AUTHWATCH_ALERT_ROUTES": json.dumps({"routes": [{"name": "g", "channels": ["soc"]}],
                                              "default": {"channels": ["ops"]}})})
    replaced = TenantInfo(TENANT, "C", routing={"default": {"channels": ["siem"]}})
    inherited = TenantInfo(TENANT, "C", routing={"inherit": True, "routes": [{"name": "t", "channels": ["siem"]}]})
    assert settings.routing_for(replaced).channels_for(event(), replaced) == ("siem",)
    assert settings.routing_for(inherited).channels_for(event(), inherited) == ("siem", "soc")
    broken = TenantInfo(TENANT, "C", routing={"routes": [{"name": "t"}]})
    assert settings.routing_for(broken).channels_for(event(), broken) == ("soc",)  # falls back, logged


# --- validation: routes -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "message"), [
    ([], "AUTHWATCH_ALERT_ROUTES: expected an object"),
    ({"rules": []}, "AUTHWATCH_ALERT_ROUTES: rules: unknown field (allowed: routes, default)"),
    ({"routes": {}}, "routes: expected a list"),
    ({"routes": ["x"]}, "routes[0]: expected an object"),
    ({"routes": [{"channels": ["soc"]}]}, "routes[0]: name: required"),
    ({"routes": [{"name": "a", "channels": ["soc"]}, {"name": "a", "channels": ["ops"]}]},
     "routes[1] 'a': name: another route has the same name"),
    ({"routes": [{"name": "a"}]}, "routes[0] 'a': channels: required"),
    ({"routes": [{"name": "a", "channels": []}]}, "routes[0] 'a': channels: required"),
    ({"routes": [{"name": "a", "channels": ["soc", "teamz"]}]},
     "routes[0] 'a': channels[1]: unknown channel \"teamz\" (configured: ops, siem, soc)"),
    ({"routes": [{"name": "a", "channels": ["soc"], "minSeverity": "critical"}]},
     "routes[0] 'a': minSeverity: expected one of low, medium, high, got \"critical\""),
    ({"routes": [{"name": "a", "channels": ["soc"], "events": ["control.broken"]}]},
     "routes[0] 'a': events[0]: expected event types"),
    ({"routes": [{"name": "a", "channels": ["soc"], "events": []}]}, "routes[0] 'a': events: expected a non-empty"),
    ({"routes": [{"name": "a", "channels": ["soc"], "tenants": ["contoso"]}]},
     "routes[0] 'a': tenants[0]: expected tenant ids (GUIDs)"),
    ({"routes": [{"name": "a", "channels": ["soc"], "tags": "gold"}]}, "routes[0] 'a': tags: expected a non-empty"),
    ({"routes": [{"name": "a", "channels": ["soc"], "informational": "yes"}]},
     "routes[0] 'a': informational: expected true or false"),
    ({"routes": [{"name": "a", "channels": ["soc"], "severity": "high"}]},
     "routes[0] 'a': severity: unknown field (allowed: name, tenants, tags, minSeverity, events, channels"),
    ({"default": {"channels": ["soc"], "tenants": [TENANT]}}, "default: tenants: unknown field"),
    ({"default": ["soc"]}, "default: expected an object"),
    ({"default": {"channels": ["nope"]}}, "default: channels[0]: unknown channel \"nope\""),
    ({"inherit": True}, "inherit: unknown field"),
])
def test_invalid_routes_are_refused_with_the_rule_and_field_named(data, message):
    with pytest.raises(AlertConfigError) as caught:
        parse_routing(data, channels=CHANNELS)
    assert message in str(caught.value)


def test_routes_in_the_settings_name_the_setting_and_bad_json_is_located_not_quoted():
    channels = json.dumps({"soc": {"type": "webhook", "url": "https://soc.example.com/x"}})
    with pytest.raises(AlertConfigError, match=r"^AUTHWATCH_ALERT_ROUTES: routes\[0\] 'x': channels\[0\]"):
        AlertSettings.from_env({"AUTHWATCH_ALERT_CHANNELS": channels,
                                "AUTHWATCH_ALERT_ROUTES": '{"routes": [{"name": "x", "channels": ["ops"]}]}'})
    with pytest.raises(AlertConfigError) as caught:
        AlertSettings.from_env({"AUTHWATCH_ALERT_CHANNELS": '{"soc": {"type": "slack", "url": "https://hooks/SECRET"'})
    assert "AUTHWATCH_ALERT_CHANNELS: not valid JSON (line 1, column" in str(caught.value)
    assert "SECRET" not in str(caught.value)


def test_a_tenant_routing_error_names_the_tenant():
    settings = AlertSettings.from_env({"AUTHWATCH_ALERT_CHANNELS": json.dumps(
        {"soc": {"type": "webhook", "url": "https://soc.example.com/x"}})})
    with pytest.raises(AlertConfigError, match=rf"^tenant {TENANT} routing: routes\[0\] 'r': minSeverity"):
        settings.tenant_routing({"routes": [{"name": "r", "channels": ["soc"], "minSeverity": "urgent"}]}, TENANT)


# --- validation: channels -------------------------------------------------------------------------------------------------

ENV = {"TEAMS_URL": "https://prod-1.westeurope.logic.azure.com/workflows/x/invoke?sig=TEAMSSECRET",
       "SLACK_URL": "https://hooks.slack.com/services/T/B/SLACKSECRET", "HOOK_SECRET": "0123456789abcdef-SECRET",
       "SHORT": "short", "MAIL_SECRET": "mail-secret", "VAULT": "@Microsoft.KeyVault(SecretUri=https://v/secrets/x/)"}


def load(channels):
    return AlertSettings.from_env({**ENV, "AUTHWATCH_ALERT_CHANNELS": json.dumps(channels)})


def test_valid_channels_of_every_type_load():
    settings = load({
        "soc": {"type": "teams", "urlSetting": "TEAMS_URL"},
        "ops": {"type": "slack", "urlSetting": "SLACK_URL"},
        "siem": {"type": "webhook", "url": "https://siem.example.com/authwatch", "secretSetting": "HOOK_SECRET"},
        "mail": {"type": "email", "tenantId": TENANT, "from": "authwatch@contoso.example", "to": ["soc@c.example"],
                 "credential": {"mode": "secret", "clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50",
                                "secretSetting": "MAIL_SECRET"}}})
    assert {name: channel.type for name, channel in settings.channels.items()} == \
        {"soc": "teams", "ops": "slack", "siem": "webhook", "mail": "email"}
    text = repr(settings.channels)
    assert "SECRET" not in text and "hooks.slack.com" not in text
    assert any("SLACKSECRET" in secret for secret in settings.secrets())
    assert ENV["HOOK_SECRET"] in settings.secrets()


@pytest.mark.parametrize(("channels", "message"), [
    ({"soc": "teams"}, "channel 'soc': expected an object with a \"type\""),
    ({"soc": {"type": "pager"}}, "channel 'soc': type: expected one of email, slack, teams, webhook"),
    ({"Bad Name": {"type": "teams"}}, "channel name 'Bad Name': expected lower-case"),
    ({"soc": {"type": "teams"}}, "channel 'soc': urlSetting: required"),
    ({"soc": {"type": "teams", "urlSetting": "MISSING"}}, "channel 'soc': urlSetting: app setting MISSING is not set"),
    ({"soc": {"type": "teams", "urlSetting": "VAULT"}}, "app setting VAULT holds an unresolved Key Vault reference"),
    ({"soc": {"type": "teams", "url": "https://x.logic.azure.com/x"}}, "channel 'soc': url: not allowed for teams"),
    ({"ops": {"type": "slack", "url": "https://hooks.slack.com/x"}}, "channel 'ops': url: not allowed for slack"),
    ({"soc": {"type": "teams", "urlSetting": "TEAMS_URL", "colour": "red"}},
     "channel 'soc': colour: unknown field for a channel of type 'teams' (allowed: type, urlSetting)"),
    ({"siem": {"type": "webhook"}}, "channel 'siem': urlSetting: required"),
    ({"siem": {"type": "webhook", "url": "https://a.example.com", "urlSetting": "TEAMS_URL"}},
     "channel 'siem': url: give either url or urlSetting, not both"),
    ({"siem": {"type": "webhook", "url": "http://a.example.com/x"}}, "channel 'siem': url: url: a.example.com: "
                                                                     "webhooks must use https://"),
    ({"siem": {"type": "webhook", "url": "https://a.example.com", "secretSetting": "SHORT"}},
     "channel 'siem': secretSetting: app setting SHORT holds a secret shorter than 16 characters"),
    ({"siem": {"type": "webhook", "url": "https://a.example.com", "secretSetting": "not a setting!"}},
     "channel 'siem': secretSetting: expected the NAME of an app setting"),
    ({"mail": {"type": "email"}}, "channel 'mail': tenantId: required"),
    ({"mail": {"type": "email", "tenantId": "contoso"}}, "channel 'mail': tenantId: expected the operator tenant"),
    ({"mail": {"type": "email", "tenantId": TENANT}}, "channel 'mail': credential: required"),
    ({"mail": {"type": "email", "tenantId": TENANT, "credential": {"mode": "password"}}},
     "channel 'mail': credential: mode: expected one of federated, secret, certificate"),
    ({"mail": {"type": "email", "tenantId": TENANT, "credential": {
        "mode": "secret", "clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50", "secretSetting": "NOPE"}}},
     "channel 'mail': credential: app setting NOPE is not set"),
    ({"mail": {"type": "email", "tenantId": TENANT, "from": "nobody", "credential": {
        "mode": "secret", "clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50", "secretSetting": "MAIL_SECRET"}}},
     "channel 'mail': from: expected the sending mailbox"),
    ({"mail": {"type": "email", "tenantId": TENANT, "from": "a@b.example", "to": ["x@y.example", "oops"],
               "credential": {"mode": "secret", "clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50",
                              "secretSetting": "MAIL_SECRET"}}}, "channel 'mail': to[1]: expected an e-mail address"),
])
def test_invalid_channels_are_refused_with_the_channel_and_field_named(channels, message):
    with pytest.raises(AlertConfigError) as caught:
        load(channels)
    assert message in str(caught.value)
    assert str(caught.value).startswith("AUTHWATCH_ALERT_CHANNELS: ")
    for secret in ("TEAMSSECRET", "SLACKSECRET", "0123456789abcdef-SECRET", "mail-secret"):
        assert secret not in str(caught.value)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("AUTHWATCH_ALERT_RETRIES", "many", "AUTHWATCH_ALERT_RETRIES: expected a whole number from 0 to 10"),
    ("AUTHWATCH_ALERT_BACKOFF_SECONDS", "-1", "AUTHWATCH_ALERT_BACKOFF_SECONDS: expected a number"),
    ("AUTHWATCH_ALERT_MAX_DEQUEUE", "0", "AUTHWATCH_ALERT_MAX_DEQUEUE: expected a whole number from 1"),
    ("AUTHWATCH_DIGEST_MIN_SEVERITY", "urgent", "AUTHWATCH_DIGEST_MIN_SEVERITY: expected one of"),
    ("AUTHWATCH_DASHBOARD_URL", "dashboard.example", "AUTHWATCH_DASHBOARD_URL: expected an http(s):// URL"),
    ("AUTHWATCH_ALERT_CHANNELS", "[]", "AUTHWATCH_ALERT_CHANNELS: expected an object"),
])
def test_other_alert_settings_are_validated(name, value, message):
    with pytest.raises(AlertConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AlertSettings.from_env({name: value})


def test_defaults():
    settings = AlertSettings.from_env({})
    assert settings.channels == {} and not settings.configured
    assert (settings.policy.retries, settings.policy.backoff_s, settings.max_dequeue) == (3, 0.5, 5)
    assert [settings.policy.delay(i) for i in range(3)] == [0.5, 1.0, 2.0]
    assert settings.digest_min_severity == "high" and settings.dashboard_link(TENANT) is None


# --- the plug-in registry -----------------------------------------------------------------------------------------------

def test_channel_types_are_registered_plugins_and_a_new_one_plugs_in():
    assert set(channel_types()) >= {"teams", "slack", "webhook", "email"}

    @register_channel("unit-test-pager")
    class Pager(Channel):
        fields = ("service",)

        @classmethod
        def from_config(cls, config):
            config.text("service")
            return cls(config.name)

        def render_alert(self, group):
            return {}

        def render_digest(self, digest):
            return {}

        async def send_once(self, payload, *, message_id, context):
            return None

    assert build_channel("pager", {"type": "unit-test-pager", "service": "x"}, {}, allow_loopback=False).type == \
        "unit-test-pager"
    with pytest.raises(AlertConfigError, match="channel 'pager': service: required"):
        build_channel("pager", {"type": "unit-test-pager"}, {}, allow_loopback=False)
    with pytest.raises(ValueError, match="already registered"):
        register_channel("teams")(Pager)
    with pytest.raises(TypeError):
        register_channel("not-a-channel")(dict)


def test_dashboard_links_follow_the_dashboard_route_and_never_carry_a_key():
    plain = AlertSettings.from_env({"AUTHWATCH_DASHBOARD_URL": "https://app.example/api/dashboard"})
    assert plain.dashboard_link(TENANT) == f"https://app.example/api/dashboard#/tenants/{TENANT}"
    templated = AlertSettings.from_env({"AUTHWATCH_DASHBOARD_URL": "https://portal.example/t/{tenantId}/alerts"})
    assert templated.dashboard_link(TENANT) == f"https://portal.example/t/{TENANT}/alerts"
    with pytest.raises(AlertConfigError, match="must not carry a key"):
        AlertSettings.from_env({"AUTHWATCH_DASHBOARD_URL": "https://app.example/api/dashboard?code=abc"})


def test_the_api_can_refuse_a_tenant_routing_before_it_is_stored():
    from shared.alerts import validate_tenant_routing

    env = {"AUTHWATCH_ALERT_CHANNELS": json.dumps({"soc": {"type": "teams", "urlSetting": "UNSET_BUT_NAMED"}})}
    validate_tenant_routing(None, TENANT, env)
    validate_tenant_routing({"inherit": True, "routes": [{"name": "r", "channels": ["soc"]}]}, TENANT, env)
    with pytest.raises(AlertConfigError, match=r"^routing: routes\[0\] 'r': channels\[0\]: unknown channel \"ops\""):
        validate_tenant_routing({"routes": [{"name": "r", "channels": ["ops"]}]}, TENANT, env)
    with pytest.raises(AlertConfigError, match=r"^routing: teams: unknown field"):
        validate_tenant_routing({"teams": {"webhookSetting": "AUTHWATCH_TEAMS"}}, TENANT, env)
