"""The simulator's documented throttling limits and latency (scenario ``limits`` / ``latencyMs``), over real HTTPS."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Iterator

import httpx
import pytest

from simulator import Simulator, load_scenario
from simulator.limits import Limiter, normalize_limits

pytestmark = pytest.mark.integration

APP = "11111111-1111-1111-1111-111111111111"
SECRET = "s3cret"
APP2 = "99999999-0000-0000-0000-000000000009"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
EXO_SCOPE = "https://outlook.office365.com/.default"
SIGNINS = "/auditLogs/signIns"
AUDITS = "/auditLogs/directoryAudits"
CA = "/identity/conditionalAccess/policies"


def tid(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-000000000000"


def scenario(n: int = 3, limits: Any = True, **top: Any) -> dict[str, Any]:
    tenants: list[dict[str, Any]] = [{"tenantId": tid(i), "displayName": f"Tenant {i}"} for i in range(n)]
    tenants.append({"tenantId": tid(999), "displayName": "Other app", "app": {"clientId": APP2, "clientSecret": "x2"}})
    return {"app": {"clientId": APP, "clientSecret": SECRET}, "tenants": tenants, "limits": limits,
            "latencyMs": 0, **top}


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(scenario()) as s:
        yield s


@pytest.fixture
def http(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(verify=sim.ssl_context(), timeout=10) as c:
        yield c


def token(http: httpx.Client, sim: Simulator, tenant: str, scope: str = GRAPH_SCOPE, client_id: str = APP,
          secret: str = SECRET) -> dict[str, str]:
    r = http.post(f"{sim.url}/{tenant}/oauth2/v2.0/token",
                  data={"client_id": client_id, "client_secret": secret, "grant_type": "client_credentials",
                        "scope": scope})
    assert r.status_code == 200, r.text
    return {"Authorization": "Bearer " + r.json()["access_token"]}


def exo(http: httpx.Client, sim: Simulator, tenant: str, auth: dict[str, str]) -> httpx.Response:
    return http.post(f"{sim.url}/adminapi/beta/{tenant}/InvokeCommand", headers=auth,
                     json={"CmdletInput": {"CmdletName": "Get-TransportConfig", "Parameters": {}}})


def assert_throttled(r: httpx.Response, retry_after: bool) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "TooManyRequests"
    assert ("Retry-After" in r.headers) is retry_after


# -- Conditional Access: 1 request per second per tenant, 429 without Retry-After ----------------------------
def test_conditional_access_one_request_per_second_per_tenant(sim: Simulator, http: httpx.Client) -> None:
    auth = token(http, sim, tid(0))
    assert http.get(f"{sim.graph_url}{CA}", headers=auth).status_code == 200
    second = http.get(f"{sim.graph_url}{CA}", headers=auth)
    assert_throttled(second, retry_after=False)  # Microsoft documents no Retry-After for CA
    # another tenant has its own budget; other Graph resources are not limited by the CA budget
    assert http.get(f"{sim.graph_url}{CA}", headers=token(http, sim, tid(1))).status_code == 200
    assert http.get(f"{sim.graph_url}/organization", headers=auth).status_code == 200
    time.sleep(1.05)
    assert http.get(f"{sim.graph_url}{CA}", headers=auth).status_code == 200
    assert sim.throttled_counts == {"graph.conditionalAccessPolicies": 1}
    assert sim.request_counts["graph.conditionalAccessPolicies"] == 4  # every request is still counted


# -- reports: 5 per 10 s per app per tenant, 122 per 10 s per app across tenants ---------------------------------
def test_reports_sixth_request_in_ten_seconds_is_throttled_with_retry_after(sim: Simulator,
                                                                             http: httpx.Client) -> None:
    auth = token(http, sim, tid(0))
    for path in (SIGNINS, AUDITS, SIGNINS, AUDITS, SIGNINS):  # signIns and directoryAudits share the budget
        assert http.get(f"{sim.graph_url}{path}", headers=auth).status_code == 200
    sixth = http.get(f"{sim.graph_url}{AUDITS}", headers=auth)
    assert_throttled(sixth, retry_after=True)
    assert 1 <= int(sixth.headers["Retry-After"]) <= 10
    # the per-tenant budget is per tenant: the next tenant is served
    assert http.get(f"{sim.graph_url}{SIGNINS}", headers=token(http, sim, tid(1))).status_code == 200
    assert sim.throttled_counts == {"graph.directoryAudits": 1}
    log = [e for e in sim.requests_log if e["endpoint"].startswith("graph.")]
    assert [e["throttled"] for e in log] == [False] * 5 + [True, False]
    assert log[5]["status"] == 429 and log[5]["tenant"] == tid(0)


def test_reports_122_per_app_across_tenants() -> None:
    with Simulator(scenario(n=26)) as sim, httpx.Client(verify=sim.ssl_context(), timeout=10) as http:
        auths = [token(http, sim, tid(i)) for i in range(26)]
        statuses = [http.get(f"{sim.graph_url}{SIGNINS}", headers=auths[i // 5]).status_code for i in range(122)]
        assert statuses == [200] * 122  # 24 tenants x 5 + 2 from the 25th: no per-tenant limit reached
        r = http.get(f"{sim.graph_url}{SIGNINS}", headers=auths[25])  # a fresh tenant, but the app is spent
        assert_throttled(r, retry_after=True)
        assert 1 <= int(r.headers["Retry-After"]) <= 10
        # the budget is per app: another app is served
        other = token(http, sim, tid(999), client_id=APP2, secret="x2")
        assert http.get(f"{sim.graph_url}{SIGNINS}", headers=other).status_code == 200
        assert sim.throttled_counts == {"graph.signIns": 1}


def test_short_windows_free_up() -> None:
    sc = scenario(limits={"reports": {"perAppPerTenant": 2, "windowSeconds": 0.5}})
    with Simulator(sc) as sim, httpx.Client(verify=sim.ssl_context(), timeout=10) as c:
        auth = token(c, sim, tid(0))
        assert [c.get(f"{sim.graph_url}{SIGNINS}", headers=auth).status_code for _ in range(3)] == [200, 200, 429]
        time.sleep(0.6)
        assert c.get(f"{sim.graph_url}{SIGNINS}", headers=auth).status_code == 200


# -- $batch: every item is throttled on its own; the batch answers 200 -----------------------------------------
def test_batch_items_are_throttled_individually(sim: Simulator, http: httpx.Client) -> None:
    auth = token(http, sim, tid(0))
    items = [{"id": "ca1", "method": "GET", "url": CA}, {"id": "ca2", "method": "GET", "url": CA},
             {"id": "org", "method": "GET", "url": "/organization"}]
    items += [{"id": f"s{i}", "method": "GET", "url": SIGNINS} for i in range(6)]
    r = http.post(f"{sim.graph_url}/$batch", headers=auth, json={"requests": items})
    assert r.status_code == 200
    by_id = {x["id"]: x for x in r.json()["responses"]}
    assert by_id["ca1"]["status"] == 200 and by_id["org"]["status"] == 200
    assert by_id["ca2"]["status"] == 429 and "Retry-After" not in by_id["ca2"]["headers"]
    assert by_id["ca2"]["body"]["error"]["code"] == "TooManyRequests"
    assert [by_id[f"s{i}"]["status"] for i in range(6)] == [200] * 5 + [429]
    assert 1 <= int(by_id["s5"]["headers"]["Retry-After"]) <= 10
    assert sim.throttled_counts == {"graph.conditionalAccessPolicies": 1, "graph.signIns": 1}
    counts = sim.request_counts
    assert counts["graph.batch"] == 1 and counts["graph.signIns"] == 6
    assert counts["graph.conditionalAccessPolicies"] == 2
    batch_entry = next(e for e in sim.requests_log if e["endpoint"] == "graph.batch")
    assert batch_entry["status"] == 200 and batch_entry["throttled"] is False


# -- injected faults are not limits --------------------------------------------------------------------------------
def test_injected_429_is_not_counted_as_throttled(sim: Simulator, http: httpx.Client) -> None:
    sim.update_tenant(tid(0), lambda t: t["faults"].update({"graph.organization": {"status": 429, "times": 1}}))
    auth = token(http, sim, tid(0))
    assert http.get(f"{sim.graph_url}/organization", headers=auth).status_code == 429
    assert sim.throttled_counts == {}
    assert sim.requests_log[-1]["throttled"] is False


# -- Exchange: optional per-tenant limit -----------------------------------------------------------------------------
@pytest.mark.parametrize("retry_after", [False, True])
def test_exchange_per_tenant_limit(retry_after: bool) -> None:
    sc = scenario(limits={"exchange": {"perTenant": 2, "windowSeconds": 5, "retryAfter": retry_after}})
    with Simulator(sc) as sim, httpx.Client(verify=sim.ssl_context(), timeout=10) as http:
        auth = token(http, sim, tid(0), scope=EXO_SCOPE)
        assert [exo(http, sim, tid(0), auth).status_code for _ in range(2)] == [200, 200]
        r = exo(http, sim, tid(0), auth)
        assert_throttled(r, retry_after=retry_after)
        assert exo(http, sim, tid(1), token(http, sim, tid(1), scope=EXO_SCOPE)).status_code == 200
        assert sim.throttled_counts == {"exchange.Get-TransportConfig": 1}


def test_exchange_is_not_limited_by_default(sim: Simulator, http: httpx.Client) -> None:
    auth = token(http, sim, tid(0), scope=EXO_SCOPE)
    assert {exo(http, sim, tid(0), auth).status_code for _ in range(8)} == {200}


# -- latency ---------------------------------------------------------------------------------------------------------
def test_latency_is_honoured_and_concurrent() -> None:
    with Simulator(scenario(limits=None, latencyMs=200)) as sim:
        async def run() -> tuple[float, float]:
            async with httpx.AsyncClient(verify=sim.ssl_context(), timeout=10) as c:
                r = await c.post(f"{sim.url}/{tid(0)}/oauth2/v2.0/token",
                                 data={"client_id": APP, "client_secret": SECRET, "grant_type": "client_credentials",
                                       "scope": GRAPH_SCOPE})
                auth = {"Authorization": "Bearer " + r.json()["access_token"]}
                await c.get(f"{sim.graph_url}/organization", headers=auth)  # connection set up
                t0 = time.perf_counter()
                assert (await c.get(f"{sim.graph_url}/organization", headers=auth)).status_code == 200
                single = time.perf_counter() - t0
                t0 = time.perf_counter()
                rs = await asyncio.gather(*(c.get(f"{sim.graph_url}/organization", headers=auth) for _ in range(10)))
                assert {x.status_code for x in rs} == {200}
                return single, time.perf_counter() - t0
        single, ten = asyncio.run(run())
    assert single >= 0.2
    assert ten < 1.0  # 10 x 200 ms overlap (asyncio.sleep), they are not served one after another


def test_latency_defaults() -> None:
    assert load_scenario({"app": {"clientId": APP, "clientSecret": "x"}})["latencyMs"] == 0
    assert load_scenario({"app": {"clientId": APP, "clientSecret": "x"}})["limits"] is None
    with_limits = load_scenario({"app": {"clientId": APP, "clientSecret": "x"}, "limits": {}})
    assert with_limits["latencyMs"] == 50  # the default, only for scenarios that opt into limits
    assert with_limits["limits"]["reports"] == {"perAppPerTenant": 5, "perApp": 122, "windowSeconds": 10}
    assert with_limits["limits"]["conditionalAccess"] == {"perTenant": 1, "windowSeconds": 1}
    assert load_scenario({**with_limits})["limits"] == with_limits["limits"]  # normalised form re-loads as is
    assert load_scenario({"app": {"clientId": APP, "clientSecret": "x"}, "limits": True, "latencyMs": 0})[
        "latencyMs"] == 0
    enabled = load_scenario({"app": {"clientId": APP, "clientSecret": "x"}, "limits": {"enabled": True}})
    assert enabled["limits"] == with_limits["limits"] and enabled["latencyMs"] == 50
    disabled = load_scenario({"app": {"clientId": APP, "clientSecret": "x"},
                              "limits": {"enabled": False, "reports": {"perApp": 10}}})
    assert disabled["limits"] is None and disabled["latencyMs"] == 0


@pytest.mark.parametrize("limits, field", [
    ({"reports": {"perApp": 0}}, "limits.reports.perApp"),
    ({"reports": {"perTenant": 3}}, "limits.reports.perTenant"),
    ({"conditionalAccess": {"windowSeconds": -1}}, "limits.conditionalAccess.windowSeconds"),
    ({"exchange": {"retryAfter": "yes"}}, "limits.exchange.retryAfter"),
    ({"reportz": {}}, "limits.reportz"),
    ("on", "limits"),
    ({"enabled": "yes"}, "limits.enabled"),
])
def test_bad_limits_name_the_field(limits: Any, field: str) -> None:
    with pytest.raises(ValueError, match=f"scenario: {field}:"):
        load_scenario({"app": {"clientId": APP, "clientSecret": "x"}, "limits": limits})
    with pytest.raises(ValueError, match="latencyMs"):
        load_scenario({"app": {"clientId": APP, "clientSecret": "x"}, "latencyMs": -5})


def test_reset_limits_and_stats(sim: Simulator, http: httpx.Client) -> None:
    auth = token(http, sim, tid(0))
    assert [http.get(f"{sim.graph_url}{CA}", headers=auth).status_code for _ in range(2)] == [200, 429]
    sim.reset_stats()
    assert sim.throttled_counts == {} and sim.request_counts == {}
    assert http.get(f"{sim.graph_url}{CA}", headers=auth).status_code == 429  # windows survive reset_stats
    sim.reset_limits()
    assert http.get(f"{sim.graph_url}{CA}", headers=auth).status_code == 200


# -- the sliding window itself (fake clock) --------------------------------------------------------------------------
def test_limiter_sliding_window_and_retry_after() -> None:
    now = [100.0]
    limits = normalize_limits({"reports": {"perAppPerTenant": 5, "perApp": 6}}, lambda w, m: pytest.fail(m))
    assert limits is not None
    lim = Limiter(limits, clock=lambda: now[0])
    for i in range(5):
        assert lim.check("reports", "t1", "app") == (True, None)
        now[0] += 1  # requests at 100..104
    assert lim.check("reports", "t1", "app") == (False, 5)  # at 105; the one of t=100 leaves at 110
    now[0] = 110.0
    assert lim.check("reports", "t1", "app") == (True, None)  # sliding: exactly one slot freed
    assert lim.check("reports", "t1", "app") == (False, 1)  # the one of t=101 leaves at 111
    assert lim.check("reports", "t2", "app") == (True, None)  # the app's 6th in the window (100 has left)
    assert lim.check("reports", "t3", "app") == (False, 1)  # perApp spent (t=101 frees one at 111)
    assert lim.check("reports", "t3", "other-app") == (True, None)
    assert lim.check("conditionalAccess", "t1", "app") == (True, None)
    assert lim.check("conditionalAccess", "t1", "other-app") == (False, None)  # per tenant across apps, no header
    assert lim.check("graph", "t1", "app") == (True, None)  # generous by default
