"""The email channel against a real SMTP server (aiosmtpd) started by the tests: plain,
STARTTLS and implicit TLS (a throwaway CA from trustme), with a login, checking the
subject, the UTF-8 body and the headers that arrive."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
from datetime import datetime, timezone

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from engine.channels import Outbound, SendError
from engine.channels.smtp import SmtpChannel

USER, PASSWORD = "shop@mail.test", "smtp-pass-7c1"


class Inbox:
    def __init__(self):
        self.messages: list[tuple[str, list[str], email.message.EmailMessage]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's names
        if address.startswith("nobody@"):
            return "550 5.1.1 mailbox unavailable"
        if address.startswith("busy@"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login.decode(), auth_data.password.decode()) == (
        USER, PASSWORD)
    return AuthResult(success=ok)


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(params=["none", "starttls", "ssl"])
def server(request, ca, tmp_path):
    inbox = Inbox()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    kw = {"authenticator": authenticator, "auth_require_tls": False}
    if request.param == "starttls":
        kw.update(tls_context=context, require_starttls=True)
    elif request.param == "ssl":
        kw.update(ssl_context=context)
    with socket.socket() as probe:  # aiosmtpd needs a port number, not 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **kw)
    controller.start()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    yield request.param, controller.port, inbox, ca_file
    controller.stop()


@pytest.fixture
def channel(server, tmp_path, monkeypatch):
    tls, port, _, ca_file = server
    monkeypatch.setenv("SMTP_USER", USER)
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    options = {"host": "127.0.0.1", "port": port, "tls": tls, "ca_file": str(ca_file), "from": "山野户外 <shop@mail.test>",
               "subject": "山野户外的消息", "username_env": "SMTP_USER", "password_env": "SMTP_PASSWORD",
               "timeout": "3s"}
    assert SmtpChannel.option_problems(options) == []
    ch = SmtpChannel("email", options, tmp_path)
    yield ch
    ch.close()


def outbound(to: str, body: str, mid: int = 3) -> Outbound:
    return Outbound(mid, f"msg-{mid}", "email", "winback-60d", "marketing", "c-1", None, to, body,
                    datetime(2026, 11, 11, 2, 0, tzinfo=timezone.utc))


def test_a_message_arrives_with_its_subject_utf8_body_and_headers(channel, server):
    _, _, inbox, _ = server

    channel.send(outbound("wang@mail.test", "Subject: 好久不见，王小明\n\n您的专属券已到账：满200减30。\n回T退订"))
    channel.send(outbound("li@mail.test", "李娜，您的订单已发货。", mid=4))
    channel.flush()

    (sender, rcpts, first), (_, _, second) = inbox.messages
    assert (sender, rcpts) == ("shop@mail.test", ["wang@mail.test"])
    assert first["Subject"] == "好久不见，王小明"
    assert first.get_content().replace("\r\n", "\n") == "您的专属券已到账：满200减30。\n回T退订\n"  # CRLF on the wire
    assert first.get_content_charset() == "utf-8"
    assert (first["Message-ID"], first["X-Idempotency-Key"]) == ("<msg-3@mail.test>", "msg-3")
    assert first["From"] == "山野户外 <shop@mail.test>"
    assert second["Subject"] == "山野户外的消息"  # the channel's subject when the text has none
    assert second.get_content().replace("\r\n", "\n") == "李娜，您的订单已发货。\n"


def test_a_refused_mailbox_is_permanent_and_a_busy_one_transient(channel):
    with pytest.raises(SendError) as refused:
        channel.send(outbound("nobody@mail.test", "hello"))
    with pytest.raises(SendError) as busy:
        channel.send(outbound("busy@mail.test", "hello"))

    assert (refused.value.permanent, refused.value.reason) == (True, "SMTP 550: 5.1.1 mailbox unavailable")
    assert (busy.value.permanent, busy.value.reason) == (False, "SMTP 451: 4.3.0 try again later")
    assert refused.value.scope == busy.value.scope == "message"  # that mailbox only: no pause of the channel


def test_a_wrong_password_pauses_the_channel_and_is_not_shown(channel, monkeypatch):
    monkeypatch.setenv("SMTP_PASSWORD", "wrong-password-1")

    with pytest.raises(SendError) as caught:
        channel.send(outbound("wang@mail.test", "hello"))

    # every message would fail alike until the password is fixed: they wait, not fail
    assert (caught.value.permanent, caught.value.scope) == (False, "channel")
    assert caught.value.reason.startswith("SMTP login refused")
    assert "wrong-password-1" not in caught.value.reason


def test_a_server_that_is_down_is_a_transient_failure(tmp_path):
    ch = SmtpChannel("email", {"host": "127.0.0.1", "port": 1, "tls": "none", "from": "shop@mail.test"}, tmp_path)

    with pytest.raises(SendError) as caught:
        ch.send(outbound("wang@mail.test", "hello"))

    assert not caught.value.permanent
