"""One email attempt over SMTP (aiosmtplib), as the outbox worker's delivery of kind email."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formataddr, formatdate
from urllib.parse import unquote, urlsplit

import aiosmtplib
import orjson

from app.core.config import Settings
from app.outbox.models import Delivery
from app.outbox.service import Outcome

SMTP_TIMEOUT_SECONDS = 30.0


def build(delivery: Delivery, settings: Settings) -> EmailMessage:
    data = orjson.loads(delivery.payload)
    message = EmailMessage()
    message["From"] = formataddr((settings.site_name, settings.mail_from))
    message["To"] = data["to"]
    message["Subject"] = data["subject"]
    message["Date"] = formatdate(localtime=False, usegmt=True)
    # Stable across retries, so a server that got it twice can tell.
    domain = settings.mail_from.rpartition("@")[2] or "localhost"
    message["Message-ID"] = f"<{delivery.id}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
    for name, value in data["headers"].items():
        message[name] = value
    message.set_content(data["text"])
    return message


async def deliver(delivery: Delivery, settings: Settings) -> Outcome:
    if settings.smtp_url is None:
        return Outcome.retry("SMTP_URL is not set.")
    url = urlsplit(settings.smtp_url.get_secret_value())
    try:
        await aiosmtplib.send(
            build(delivery, settings),
            hostname=url.hostname,
            port=url.port,
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            use_tls=url.scheme == "smtps",
            # smtp://: STARTTLS whenever the server offers it.
            start_tls=False if url.scheme == "smtps" else None,
            timeout=SMTP_TIMEOUT_SECONDS,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        first = codes[0] if codes else None
        if codes and all(code >= 500 for code in codes):
            return Outcome.final(f"The recipient was refused ({first}).", first)
        return Outcome.retry(f"The recipient was refused for now ({first}).", first)
    except aiosmtplib.SMTPResponseException as exc:
        return Outcome.retry(f"{type(exc).__name__} {exc.code}.", exc.code)
    except (aiosmtplib.SMTPException, OSError) as exc:
        return Outcome.retry(f"{type(exc).__name__}: {exc}")
    return Outcome.ok()
