"""Credentials in endpoint URLs: redaction, token variables, and what the clients send and say."""

import base64
import traceback

import pytest
from stub_server import Raw, json_answer, serve

from ray_adlf.data.records import Turn
from ray_adlf.debate.critics import (
    CriticBackendError,
    CriticSpec,
    HTTPCriticBackend,
    make_critic,
)
from ray_adlf.debate.protocol import JudgeRequest
from ray_adlf.http_json import HTTPJSONError, parse_endpoint
from ray_adlf.rewards.plugins import HTTPRewardClient, RewardPluginError
from ray_adlf.secrets import (
    CRITIC_URL_TOKEN,
    REWARD_URL_TOKEN,
    SecretError,
    endpoint_token,
    is_secret_key,
    redact_url,
)

PASSWORD, TOKEN = "hunter2", "sekrit"
CONTEXTS, RESPONSES = [(Turn("user", "Hi"),)], ["Hello"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pw@host/x", "http://***@host/x"),
        ("https://user@host:8443/v1", "https://***@host:8443/v1"),
        ("http://u:p%40ss@[::1]:8080/p?q=1", "http://***@[::1]:8080/p?q=1"),
        ("http://a:b@c@host/", "http://***@host/"),
        ("http://h/r?token=abc&x=1", "http://h/r?token=***&x=1"),
        ("http://h/r?API_KEY=abc", "http://h/r?API_KEY=***"),
        ("http://h/r?apikey=a&Password=b&auth=c", "http://h/r?apikey=***&Password=***&auth=***"),
        (
            "http://h/r?X-Amz-Signature=abc&X-Amz-Date=1",
            "http://h/r?X-Amz-Signature=***&X-Amz-Date=1",
        ),
        ("http://h/r?client_secret=s;sig=t", "http://h/r?client_secret=***;sig=***"),
        ("http://h/r?accessToken=a&my%5Fkey=b", "http://h/r?accessToken=***&my%5Fkey=***"),
        ("http://h/r?access_token=", "http://h/r?access_token=***"),
        ("http://h/r#access_token=abc&state=1", "http://h/r#access_token=***&state=1"),
        ("http://user:pw@h:notaport/", "http://***"),
        ("http://[::1/", "http://***"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/reward",
        "https://[2001:db8::1]:8443/v1/completions?model=m&author=me&keyboard=1",
        "http://h/r#section-2",
        "http://h/r?a=b%20c&d",
        "",
    ],
)
def test_urls_without_secrets_are_unchanged(url):
    assert redact_url(url) == url


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("token", True),
        ("Refresh_Token", True),
        ("x-goog-signature", True),
        ("oauth", True),
        ("key_id", True),
        ("model", False),
        ("author", False),
        ("keyboard", False),
        ("design", False),
    ],
)
def test_is_secret_key(key, secret):
    assert is_secret_key(key) is secret


def test_endpoint_token_from_the_variable_or_its_file(tmp_path):
    file = tmp_path / "token"
    file.write_text(f"  {TOKEN}\n")
    assert endpoint_token("T", {}) is None
    assert endpoint_token("T", {"T": ""}) is None
    assert endpoint_token("T", {"T": f" {TOKEN} "}) == TOKEN
    assert endpoint_token("T", {"T_FILE": str(file)}) == TOKEN


def test_unusable_tokens_are_clear_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(SecretError, match="set T or T_FILE, not both"):
        endpoint_token("T", {"T": "a", "T_FILE": str(empty)})
    with pytest.raises(SecretError, match="the file is empty"):
        endpoint_token("T", {"T_FILE": str(empty)})
    with pytest.raises(SecretError, match="cannot read the token"):
        endpoint_token("T", {"T_FILE": str(tmp_path / "missing")})


def secret_url(url: str) -> str:
    return url.replace("http://", f"http://alice:{PASSWORD}@") + f"/r?token={TOKEN}"


def assert_no_secret(text: str) -> None:
    assert PASSWORD not in text and TOKEN not in text
    assert "***@127.0.0.1" in text and "token=***" in text


@pytest.mark.parametrize(
    "answer",
    [
        json_answer({"detail": "boom"}, status=500),
        json_answer({"detail": "no"}, status=401),
        (200, b"not json", 0.0),
        json_answer({"score": 1}),
        json_answer({"rewards": [None]}),
        (200, b"[" * 50_000, 0.0),
        (200, b"1" * 5000, 0.0),
        (200, b"x" * 5000, 0.0),  # over the cap below
        json_answer({"rewards": [1]}, delay=1.0),  # time-out
        Raw([]),  # closed without an answer
    ],
)
def test_reward_client_errors_never_show_the_credentials(answer):
    with serve(lambda path, body: answer) as (url, _):
        client = HTTPRewardClient(secret_url(url), 0.3, 1, 0.01, max_response_bytes=4096)
        with pytest.raises(RewardPluginError) as info:
            client(CONTEXTS, RESPONSES)
    assert_no_secret("".join(traceback.format_exception(info.value)))


def test_unreachable_and_refused_urls_never_show_the_credentials():
    with serve(lambda path, body: json_answer({})) as (url, _):
        dead = secret_url(url)
    with pytest.raises(RewardPluginError) as info:
        HTTPRewardClient(dead, 1, 0, 0.01)(CONTEXTS, RESPONSES)
    assert_no_secret("".join(traceback.format_exception(info.value)))
    with pytest.raises(RewardPluginError, match="must start with http") as info:
        HTTPRewardClient(dead.replace("http://", "ftp://"), 1, 0)
    assert PASSWORD not in str(info.value) and TOKEN not in str(info.value)


def test_critic_failures_never_show_the_credentials():
    with serve(lambda path, body: json_answer({"error": "boom"}, status=503)) as (url, _):
        spec = CriticSpec("http", "m", 0, url=secret_url(url), timeout=1, retries=0)
        (verdict,) = make_critic(spec).judge([JudgeRequest(CONTEXTS[0], RESPONSES[0], 1)])
    assert verdict.source == "failed" and "HTTP 503" in verdict.error
    assert_no_secret(verdict.error)
    assert PASSWORD not in repr(spec) and TOKEN not in repr(spec)


def test_endpoint_repr_hides_the_credentials():
    basic = parse_endpoint(f"http://alice:{PASSWORD}@h/r?token={TOKEN}")
    bearer = parse_endpoint("http://h/r", "bearer-token")
    assert PASSWORD not in repr(basic) and TOKEN not in repr(basic)
    assert "bearer-token" not in repr(bearer)


def test_the_reward_token_is_sent_as_a_bearer_header(monkeypatch):
    monkeypatch.setenv(REWARD_URL_TOKEN, TOKEN)
    with serve(lambda path, body: json_answer({"rewards": [1.0]})) as (url, requests):
        HTTPRewardClient(url, 5, 0)(CONTEXTS, RESPONSES)
    assert requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_the_critic_token_file_is_sent_as_a_bearer_header(monkeypatch, tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    monkeypatch.setenv(f"{CRITIC_URL_TOKEN}_FILE", str(tmp_path / "token"))
    with serve(lambda path, body: json_answer({"choices": [{"text": "ok"}]})) as (url, requests):
        assert HTTPCriticBackend(url, "m", 5, 0).complete(["p"], 4, 0.0, 0) == ["ok"]
    assert requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_url_credentials_are_sent_as_basic_auth():
    with serve(lambda path, body: json_answer({"rewards": [1.0]})) as (url, requests):
        HTTPRewardClient(secret_url(url), 5, 0)(CONTEXTS, RESPONSES)
    expected = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert requests[0].headers["Authorization"] == f"Basic {expected}"
    assert requests[0].path == f"/r?token={TOKEN}"


def test_conflicting_or_malformed_credentials_are_refused(monkeypatch):
    with pytest.raises(HTTPJSONError, match="not both"):
        parse_endpoint("http://a:b@h/", "token")
    with pytest.raises(HTTPJSONError, match="printable ASCII without spaces"):
        parse_endpoint("http://h/", "two words")
    monkeypatch.setenv(CRITIC_URL_TOKEN, "t")
    monkeypatch.setenv(f"{CRITIC_URL_TOKEN}_FILE", "/nowhere")
    with pytest.raises(CriticBackendError, match="not both"):
        HTTPCriticBackend("http://h/v1", "m", 5, 0)
