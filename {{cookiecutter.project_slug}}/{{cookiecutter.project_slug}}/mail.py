"""The stage install's e-mail backend: SMTP, but only to ADMINS and STAGE_EMAIL_ALLOWED.

A stage install often runs on a copy of pro's data, with real users' addresses in it: a
password reset or a notification sent from staging must not reach them. Every other
recipient is dropped (and logged); a message left with none is not sent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from email.utils import parseaddr

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.smtp import EmailBackend

logger = logging.getLogger(__name__)


def allowed() -> set[str]:
    admins = {address.lower() for _name, address in settings.ADMINS}
    return admins | {address.lower() for address in getattr(settings, "STAGE_EMAIL_ALLOWED", [])}


class StageEmailBackend(EmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        keep, kept = allowed(), []
        for message in email_messages:
            dropped = []
            for field in ("to", "cc", "bcc"):
                recipients = getattr(message, field)
                setattr(message, field, [a for a in recipients if parseaddr(a)[1].lower() in keep])
                dropped += [a for a in recipients if parseaddr(a)[1].lower() not in keep]
            if dropped:
                logger.warning(
                    "stage: not mailing %s (%r): not in ADMINS or STAGE_EMAIL_ALLOWED", dropped, message.subject
                )
            if message.recipients():
                kept.append(message)
        return super().send_messages(kept) if kept else 0
