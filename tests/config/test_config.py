"""config.yaml: the shop, its time zone, the database and the channels.

Every mistake is reported with file, line, key and the fix, all at once; relative
paths are relative to the config file, wherever the engine is started from."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent
from zoneinfo import ZoneInfo

import pytest

from engine.app import build_channels
from engine.config.loader import load_config
from engine.errors import ConfigError
from tests.conftest import ROOT

DURATION_HINT = "write a number and a unit: 30s, 30m, 2h, 3d, 1w (or combined, like 1d12h)"


@pytest.fixture
def write(tmp_path):
    def write(text: str) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(dedent(text), encoding="utf-8")
        return path

    return write


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(p).replace(str(path), "config.yaml") for p in caught.value.problems]


BROKEN = [
    pytest.param(
        """\
        timezone: Asia/Shanghai
        chanels:
          sms: {type: log}
        """,
        ["config.yaml:2: chanels: unknown key 'chanels'; did you mean 'channels'?"],
        id="unknown-top-level-key"),
    pytest.param(
        "timezone: Asia/Shangai\n",
        ["config.yaml:1: timezone: unknown time zone 'Asia/Shangai'; write an IANA name such as Asia/Shanghai"],
        id="bad-timezone"),
    pytest.param(
        "timezone: 8\n",
        ["config.yaml:1: timezone: unknown time zone 8; write an IANA name such as Asia/Shanghai"],
        id="timezone-as-offset"),
    pytest.param(
        """\
        channels:
          sms:
            type: tencent_sms
        """,
        ["config.yaml:3: channels.sms.type: unknown channel type 'tencent_sms'; known: aliyun_sms, file, log, "
         "recording, smtp, webhook"],
        id="unknown-channel-type-lists-types"),
    pytest.param(
        """\
        channels:
          sms:
            type: aliyun_sms
            sign_name: 山野户外
        """,
        ["config.yaml:2: channels.sms.template_code: channel type aliyun_sms needs 'template_code': the approved "
         "template, such as SMS_15305xxxx, whose text is ${content}",
         "config.yaml:2: channels.sms.access_key_id_env: channel type aliyun_sms needs 'access_key_id_env': the NAME "
         "of the environment variable holding the AccessKey ID",
         "config.yaml:2: channels.sms.access_key_secret_env: channel type aliyun_sms needs 'access_key_secret_env': "
         "the NAME of the environment variable holding the AccessKey secret"],
        id="aliyun-sms-missing-settings"),
    pytest.param(
        """\
        channels:
          sms:
            type: fille
            path: var/outbox/sms.jsonl
        """,
        ["config.yaml:3: channels.sms.type: unknown channel type 'fille'; known: aliyun_sms, file, log, recording, "
         "smtp, webhook; did you mean 'file'?"],
        id="channel-type-typo"),
    pytest.param(
        """\
        channels:
          sms:
            path: var/outbox/sms.jsonl
        """,
        ["config.yaml:2: channels.sms: needs a type; known types: aliyun_sms, file, log, recording, smtp, webhook"],
        id="channel-without-type"),
    pytest.param(
        """\
        channels:
          sms:
            type: file
            contact: phone
        """,
        ["config.yaml:2: channels.sms.path: channel type file needs 'path': file to append JSON lines to, "
         "relative to config.yaml"],
        id="file-channel-without-path"),
    pytest.param(
        """\
        channels:
          sms:
            type: file
            path: var/outbox/sms.jsonl
            contct: phone
        """,
        ["config.yaml:5: channels.sms.contct: unknown option 'contct' for a file channel; options: contact, sms, path"],
        id="unknown-channel-option"),
    pytest.param(
        """\
        channels:
          wechat:
            type: file
            path: var/outbox/wechat.jsonl
            contact: openid
        """,
        ["config.yaml:5: channels.wechat.contact: contact must be one of phone, email, not 'openid'"],
        id="unknown-contact-field"),
    pytest.param(
        "channels: [sms, email]\n",
        ["config.yaml:1: channels: must map channel names to settings, such as "
         "sms: {type: file, path: outbox/sms.jsonl}"],
        id="channels-as-a-list"),
    pytest.param(
        """\
        dispatch:
          tick: 1 second
        """,
        [f"config.yaml:2: dispatch.tick: bad duration '1 second'; {DURATION_HINT}"],
        id="tick-in-words"),
    pytest.param(
        """\
        dispatch:
          lease: 5
          batch_size: 0
          tik: 1s
        """,
        [f"config.yaml:2: dispatch.lease: bad duration 5: a unit is missing; {DURATION_HINT}",
         "config.yaml:3: dispatch.batch_size: must be a whole number of messages, such as 500",
         "config.yaml:4: dispatch.tik: unknown key 'tik'; did you mean 'tick'?"],
        id="dispatch-all-wrong"),
    pytest.param(
        "database: 5432\n",
        ["config.yaml:1: database: must be a database URL such as sqlite:///var/engine.db "
         "or postgresql+psycopg://user@host/db"],
        id="database-not-a-url"),
    pytest.param(
        "shop: 山野户外旗舰店\n",
        ["config.yaml:1: shop: must be a mapping, such as {name: 小明户外}"],
        id="shop-as-text"),
    pytest.param(
        "- timezone: Asia/Shanghai\n",
        ["config.yaml:1: config.yaml must be a mapping of keys such as timezone, database, channels"],
        id="a-list"),
    pytest.param(
        "timezone: Asia/Shanghai\n  database: sqlite:///var/engine.db\n",
        ["config.yaml:2: YAML syntax error: mapping values are not allowed here; "
         "check indentation and quote values containing ': ' or '#'"],
        id="yaml-syntax-error"),
    pytest.param(
        "timezone: Asia/Shanghai\ntimezone: UTC\n",
        ["config.yaml:2: timezone: key 'timezone' is written twice in this block; keep one"],
        id="same-key-twice"),
    pytest.param(
        'http:\n  listen: "localhost"\n  token_env: my-token\n  max_body: lots\n  lisen: x\n',
        ["config.yaml:2: http.listen: bad address 'localhost'; write HOST:PORT, such as 127.0.0.1:8787 "
         "(0.0.0.0:8787 listens on every interface)",
         "config.yaml:3: http.token_env: must be the NAME of an environment variable, such as ENGINE_TOKEN "
         "(the secret itself never goes in config.yaml)",
         "config.yaml:4: http.max_body: bad size 'lots'; write bytes or a size such as 512KB or 5MB",
         "config.yaml:5: http.lisen: unknown key 'lisen'; did you mean 'listen'?"],
        id="http-section"),
    pytest.param(
        "dispatch:\n  retry:\n    attempts: 0\n    backoff: soon\n    tries: 3\n",
        ["config.yaml:3: dispatch.retry.attempts: must be a whole number of attempts, 1 or more (1: never retry)",
         f"config.yaml:4: dispatch.retry.backoff: bad duration 'soon'; {DURATION_HINT}",
         "config.yaml:5: dispatch.retry.tries: unknown key 'tries'"],
        id="dispatch-retry"),
    pytest.param(
        "log:\n  json: yes please\n  rotaton: 100 MB\n",
        ["config.yaml:2: log.json: must be true or false",
         "config.yaml:3: log.rotaton: unknown key 'rotaton'; did you mean 'rotation'?"],
        id="log-options"),
    pytest.param(
        "http: [127.0.0.1]\n",
        ["config.yaml:1: http: must be a mapping such as {listen: \"127.0.0.1:8787\"}, "
         "or false to run without the HTTP API"],
        id="http-not-a-mapping"),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_config_error_names_file_line_key_and_fix(write, text, expected):
    assert problems(write(text)) == expected


def test_every_config_error_is_reported_at_once(write):
    path = write("""\
        timezone: Asia/Shangai
        channels:
          sms:
            type: file
        dispatch:
          tick: soon
        """)

    assert problems(path) == [
        "config.yaml:1: timezone: unknown time zone 'Asia/Shangai'; write an IANA name such as Asia/Shanghai",
        "config.yaml:3: channels.sms.path: channel type file needs 'path': file to append JSON lines to, "
        "relative to config.yaml",
        f"config.yaml:6: dispatch.tick: bad duration 'soon'; {DURATION_HINT}",
    ]


def test_log_that_is_not_a_mapping_is_a_config_error(write):
    with pytest.raises(ConfigError, match=r"config\.yaml:1: log: "):
        load_config(write("log: verbose\n"))


def test_an_unknown_log_level_is_a_config_error(write):
    with pytest.raises(ConfigError, match=r"config\.yaml:2: log\.level: "):
        load_config(write("log:\n  level: verbose\n"))


def test_a_boolean_key_in_config_gets_no_rules_hint(write):
    [message] = problems(write("on: true\n"))

    assert message.startswith("config.yaml:1: on: YAML reads the key 'on' as a boolean")
    assert "when" not in message


def test_the_shipped_config_loads():
    config = load_config(ROOT / "config.yaml")

    assert config.timezone == ZoneInfo("Asia/Shanghai")
    assert sorted(config.channels) == ["email", "sms", "staff"]
    assert (config.channels["sms"].type, config.channels["staff"].type) == ("file", "log")
    assert config.shop["signature"] == "【山野户外】"


def test_an_empty_config_means_shanghai_sqlite_and_a_log_channel(write, tmp_path):
    config = load_config(write("# nothing yet\n"))

    assert config.tz_name == "Asia/Shanghai"
    assert config.database == f"sqlite:///{tmp_path / 'var' / 'engine.db'}"
    assert {name: c.type for name, c in config.channels.items()} == {"log": "log"}
    assert (config.dispatch.batch_size, config.dispatch.tick.total_seconds()) == (500, 1.0)


@pytest.mark.parametrize(("written", "resolved"), [
    ("sqlite:///var/engine.db", "sqlite:///{here}/var/engine.db"),
    ("sqlite:///engine.db", "sqlite:///{here}/engine.db"),
    ("sqlite:///../shared/engine.db", "sqlite:///{parent}/shared/engine.db"),
    ("sqlite:////srv/engine/engine.db", "sqlite:////srv/engine/engine.db"),
    ("'sqlite:///:memory:'", "sqlite:///:memory:"),
    ("postgresql+psycopg://engine@127.0.0.1:5432/engine", "postgresql+psycopg://engine@127.0.0.1:5432/engine"),
], ids=["relative", "beside-config", "up-a-folder", "absolute", "in-memory", "postgresql"])
def test_relative_sqlite_paths_resolve_next_to_config_yaml(tmp_path, monkeypatch, written, resolved):
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "config.yaml").write_text(f"database: {written}\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    config = load_config(Path("..") / "shop" / "config.yaml")

    assert config.database == resolved.format(here=folder.resolve(), parent=tmp_path.resolve())
    assert config.base_dir == folder.resolve()


def test_file_channel_paths_resolve_next_to_config_yaml(tmp_path, monkeypatch):
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "config.yaml").write_text(dedent("""\
        channels:
          sms:
            type: file
            path: var/outbox/sms.jsonl
            contact: phone
        """), encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    channels = build_channels(load_config(Path("shop/config.yaml")))

    assert channels["sms"].path == folder.resolve() / "var" / "outbox" / "sms.jsonl"
    assert channels["sms"].contact == "phone"


def test_shop_settings_reach_templates_as_given(write):
    config = load_config(write("shop:\n  name: 小明户外\n  currency_symbol: HK$\n"))

    assert config.shop == {"name": "小明户外", "currency_symbol": "HK$"}


def test_the_http_api_listens_on_loopback_by_default_and_can_be_moved_or_switched_off(write):
    default = load_config(write("timezone: Asia/Shanghai\n")).http
    assert (default.enabled, default.listen, default.token_env, default.hmac_env, default.max_body) == (
        True, "127.0.0.1:8787", "ENGINE_TOKEN", "ENGINE_HMAC_SECRET", 5 * 1024 * 1024)

    moved = load_config(write('http:\n  listen: "0.0.0.0:9000"\n  max_body: 512KB\n  hmac_env: SHOP_SECRET\n')).http
    assert (moved.host, moved.port, moved.max_body, moved.hmac_env) == ("0.0.0.0", 9000, 512 * 1024, "SHOP_SECRET")

    assert load_config(write("http: false\n")).http.enabled is False
