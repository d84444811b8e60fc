"""CEL `when` conditions on rules, through the real Envoy (issue 16): a
condition over the request and the groups, one over a JWT claim, and one
whose evaluation fails for a missing header (a 403 that is logged, never
an allow). Tokens are minted with jwcrypto; the rules are in
harness/configs.py (`cel-*`)."""

from __future__ import annotations

from harness import expect
from harness.metrics import scrape
from harness.procs import wait_until

BOB = {"sub": "bob-sub", "preferred_username": "bob", "email": "bob@example.com",
       "groups": ["readers"]}
REASON = "the rule's condition does not hold"


def test_reading_is_open_and_writing_needs_the_admins_group(client, mint):
    alice, bob = mint.token(), mint.token(identity=BOB)
    expect.allowed(client.get("/cel/x", token=bob))
    expect.allowed(client.request("POST", "/cel/x", token=alice))
    body = expect.denial(client.request("POST", "/cel/x", token=bob), 403, "access_denied")
    assert body["error_description"] == REASON
    # The condition comes after authentication: no token is still a 401.
    expect.no_credential(client.request("POST", "/cel/x"))


def test_a_condition_reads_the_tokens_claims(client, mint):
    expect.allowed(client.get("/cel-claims/x", token=mint.token()))
    expect.denial(client.get("/cel-claims/x", token=mint.token(identity=BOB)), 403,
                  "access_denied")


def test_an_evaluation_error_denies_and_is_logged(client, mint, gatehouse):
    token = mint.token()
    expect.allowed(client.get("/cel-header/x", token=token, headers={"X-Tier": "gold"}))
    expect.denial(client.get("/cel-header/x", token=token, headers={"X-Tier": "silver"}), 403,
                  "access_denied")
    def failures() -> list[str]:
        return [line for line in gatehouse.log().splitlines() if "could not be evaluated" in line]

    before = len(failures())
    body = expect.denial(client.get("/cel-header/x", token=token), 403, "access_denied")
    assert body["error_description"] == REASON
    wait_until("the failed evaluation to be logged", lambda: len(failures()) == before + 1,
               timeout=5)
    assert "cel-header" in failures()[-1] and "x-tier" in failures()[-1], failures()[-1]


# --- shadow rules -------------------------------------------------------------------


def test_a_shadow_rule_changes_no_answer_and_counts_its_disagreements(client, mint, gatehouse):
    """`shadow-strict-anon` (mode: shadow) would demand admin:all under
    /anon/strict/, where the enforcing `anonymous` rule lets anyone in."""
    name = "gatehouse_shadow_disagreements_total"

    def disagreements(change: str) -> float:
        return scrape(gatehouse.http_url).count(name, rule="shadow-strict-anon", change=change)

    before = disagreements("allow_to_deny")
    expect.allowed(client.get("/anon/strict/x"))  # shadow: 401, no credential
    expect.allowed(client.get("/anon/strict/y", token=mint.token(identity=BOB)))  # shadow: 403
    wait_until("two disagreements counted", lambda: disagreements("allow_to_deny") == before + 2,
               timeout=5)
    # Where the shadow rule does not match, nothing more is counted.
    expect.allowed(client.get("/anon/other"))
    assert disagreements("allow_to_deny") == before + 2
    assert "shadow rule disagrees with the enforced decision" in gatehouse.log()
