"""`smtp`: email over SMTP (the standard library's smtplib), with STARTTLS, implicit TLS
or none; one connection per dispatch batch.

The subject is the rendered text's first line when it starts with `Subject:` (or
`主题：`), else the channel's `subject`. Every attempt of one message has the same
Message-ID (built from its idempotency key) and an `X-Idempotency-Key` header. The
password comes from the environment variable named by `password_env`."""

from __future__ import annotations

import os
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any

from engine.channels.base import Channel, Outbound, SendError
from engine.durations import parse_duration

TLS_MODES = ("starttls", "ssl", "none")
_SUBJECT = re.compile(r"^(?:Subject:|主题[:：])\s*(.+)$")


class SmtpChannel(Channel):
    type_name = "smtp"
    sends_sms = False
    options_help = {
        **Channel.options_help,
        "host": "the SMTP server",
        "port": "its port (default 587 with starttls, 465 with ssl, 25 without TLS)",
        "tls": "starttls (default), ssl (implicit TLS) or none",
        "ca_file": "a CA bundle to trust instead of the system's (a private mail relay)",
        "username_env": "the NAME of the environment variable holding the login (none: no login)",
        "password_env": "the NAME of the environment variable holding the password",
        "from": "the sender, such as '山野户外 <service@shop.example>'",
        "subject": "the subject when the text has no 'Subject:' first line",
        "timeout": "how long to wait for the server, such as 10s (default)",
    }
    required = ("host", "from")

    def __init__(self, name, options, base_dir):
        super().__init__(name, options, base_dir)
        if self.contact is None:
            self.contact = "email"
        self.tls = options.get("tls", "starttls")
        self.port = int(options.get("port") or {"starttls": 587, "ssl": 465, "none": 25}[self.tls])
        self.timeout = parse_duration(options.get("timeout", "10s")).total_seconds()
        self.sender = options["from"]
        self._smtp: smtplib.SMTP | None = None

    @classmethod
    def option_problems(cls, options: dict[str, Any]) -> list[tuple[str, str]]:
        out = super().option_problems(options)
        if options.get("tls", "starttls") not in TLS_MODES:
            out.append(("tls", f"must be one of {', '.join(TLS_MODES)}, not {options.get('tls')!r}"))
        sender = options.get("from")
        if sender is not None and "@" not in parseaddr(str(sender))[1]:
            out.append(("from", f"must be an email address, such as '山野户外 <service@shop.example>', not {sender!r}"))
        if ("username_env" in options) != ("password_env" in options):
            out.append(("password_env", "username_env and password_env go together"))
        try:
            parse_duration(options.get("timeout", "10s"))
        except ValueError as exc:
            out.append(("timeout", str(exc)))
        return out

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.options.get("ca_file"))

    def _connect(self) -> smtplib.SMTP:
        host = self.options["host"]
        if self.tls == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, self.port, timeout=self.timeout, context=self._context())
        else:
            smtp = smtplib.SMTP(host, self.port, timeout=self.timeout)
        try:
            if self.tls == "starttls":
                smtp.starttls(context=self._context())
            self._login(smtp)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _login(self, smtp: smtplib.SMTP) -> None:
        if "username_env" in self.options:
            user, password = (os.environ.get(self.options[k]) for k in ("username_env", "password_env"))
            if not user or not password:  # the operator's to fix: the messages wait, the channel pauses
                missing = [self.options[k] for k, v in (("username_env", user), ("password_env", password)) if not v]
                raise SendError(f"{', '.join(missing)} not set in the environment")
            try:
                smtp.login(user, password)
            except smtplib.SMTPServerDisconnected:  # some servers hang up on a wrong login instead of answering
                raise SendError("SMTP login refused (the server closed the connection)") from None

    def build(self, message: Outbound) -> EmailMessage:
        lines = message.body.splitlines()
        match = _SUBJECT.match(lines[0]) if lines else None
        subject = match.group(1).strip() if match else self.options.get("subject", "")
        text = "\n".join(lines[1:]).lstrip("\n") if match else message.body
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.to
        mail["Subject"] = subject
        mail["Date"] = formatdate(message.time.timestamp(), localtime=False)
        domain = parseaddr(self.sender)[1].rpartition("@")[2] or "localhost"
        mail["Message-ID"] = f"<{message.idempotency_key}@{domain}>"
        mail["X-Idempotency-Key"] = message.idempotency_key
        mail.set_content(text, charset="utf-8")
        return mail

    def send(self, message: Outbound) -> None:
        try:
            mail = self.build(message)
        except (ValueError, TypeError) as exc:  # an address with a line break, say
            raise SendError(f"cannot build the email: {exc}", permanent=True, scope="message") from None
        for attempt in (1, 2):  # a connection the server closed meanwhile is opened again once
            try:
                if self._smtp is None:
                    self._smtp = self._connect()
                self._smtp.send_message(mail)
                return
            except smtplib.SMTPServerDisconnected:
                self._drop()
                if attempt == 2:
                    raise SendError("the SMTP server closed the connection") from None
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
                raise SendError(f"SMTP {code}: {_text(text)}", permanent=code >= 500, scope="message") from None
            except smtplib.SMTPAuthenticationError as exc:  # the account: messages wait, the channel pauses
                self._drop()
                raise SendError(f"SMTP login refused ({exc.smtp_code})") from None
            except smtplib.SMTPResponseException as exc:
                self._drop()
                raise SendError(f"SMTP {exc.smtp_code}: {_text(exc.smtp_error)}", permanent=exc.smtp_code >= 500) \
                    from None
            except (OSError, smtplib.SMTPException) as exc:
                self._drop()
                raise SendError(f"SMTP connection failed ({type(exc).__name__})") from None

    def _drop(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.close()
            finally:
                self._smtp = None

    def flush(self) -> None:
        """After each batch: leave the server be until the next one."""
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._smtp = None

    def close(self) -> None:
        self.flush()


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
