"""Channel adapters: how a rendered delivery reaches a person, one module per channel (email over
SMTP, SMS over a Twilio-style API, social DMs over X and the Messenger Send API). See base.py for
what they share and services.campaigns.sending for how the channel workers use them."""

from __future__ import annotations

from collections.abc import Mapping

from services.campaigns.channels.base import ChannelAdapter, SandboxedProvider


def adapters(env: Mapping[str, str] | None = None) -> dict[str, ChannelAdapter]:
    """One adapter per channel, configured from the environment (a channel whose settings are
    missing fails its deliveries with `not_configured` rather than stopping the worker)."""
    from services.campaigns.channels.email import EmailAdapter, SmtpConfig
    from services.campaigns.channels.sms import SmsAdapter, SmsConfig
    from services.campaigns.channels.social_dm import SocialDmAdapter, SocialDmConfig

    return {
        "email": EmailAdapter(SmtpConfig.from_env(env)),
        "sms": SmsAdapter(SmsConfig.from_env(env)),
        "social_dm": SocialDmAdapter(SocialDmConfig.from_env(env)),
    }


def sandboxed_providers() -> list[SandboxedProvider]:
    """The HTTP providers `make run` points at the sandbox when the operator left them unset."""
    from services.campaigns.channels import sms, social_dm

    return [sms.SANDBOXED, *social_dm.SANDBOXED]
